"""The OpenAPI 3.1 description of the API served by :mod:`core.api.app`.

The paths are kept by hand next to the routes (a test checks that every registered route
is described); the Job and Execution schemas and the sort keys come from the field tables
in :mod:`core.jobs.model`.
"""

from __future__ import annotations

import copy
from typing import Any

from core.jobs.model import EXECUTION_FIELDS, JOB_FIELDS

__all__ = ["openapi_document"]

_MEMBER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "Name": {"type": "string"},
        "Addr": {"type": "string"},
        "Port": {"type": "integer"},
        "Tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "Status": {"type": "integer"},
        "ProtocolMin": {"type": "integer"},
        "ProtocolMax": {"type": "integer"},
        "ProtocolCur": {"type": "integer"},
        "DelegateMin": {"type": "integer"},
        "DelegateMax": {"type": "integer"},
        "DelegateCur": {"type": "integer"},
        "id": {"type": "string"},
        "statusText": {"type": "string"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, *, total: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if total:
        response["headers"] = {"X-Total-Count": {"$ref": "#/components/headers/X-Total-Count"}}
    return response


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_JOB_PARAM = {"name": "job", "in": "path", "required": True, "schema": {"type": "string"}}
_EXECUTION_PARAM = {
    "name": "execution",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "Execution id, <started_at UnixNano>-<node_name>.",
}
_PRETTY = _query("pretty", "Present (any value): indented JSON.")
_UNAVAILABLE = _text("No Raft leader: the write could not be committed.")
_JOB_NOT_FOUND = _text("Job not found.")


def _op(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": op_id, "summary": summary}
    operation.update(extra)
    operation["responses"] = responses
    return operation


_UPSERT = _op(
    "createOrUpdateJob",
    "Create a job or replace it entirely (PATCH and PUT too: not a merge).",
    {
        "201": {
            **_json(_ref("Job"), "The request job as parsed (not the stored one)."),
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        "400": _text("Unable to parse payload: <msg>. / Job validation failed: <msg>."),
        "404": _text("specified parent job not found"),
        "503": _text("New job submissions are currently paused (or no Raft leader)."),
    },
    parameters=[
        _query("runoncreate", "Present (any value): start a run right away, without waiting."),
        _PRETTY,
    ],
    requestBody={"required": True, "content": {"application/json": {"schema": _ref("Job")}}},
)

_LIST_JOBS = _op(
    "listJobs",
    "List jobs with filters, sorting and slicing.",
    {
        "200": _json({"type": "array", "items": _ref("Job")}, "Jobs.", total=True),
        "400": _text("Bad _sort, _start, _end or disabled."),
    },
    parameters=[
        {
            "name": "metadata",
            "in": "query",
            "style": "deepObject",
            "explode": True,
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            "description": "metadata[key]=value, every pair must match.",
        },
        _query("q", "Substring of name or displayname."),
        _query("status", "success, failed, partially_failed or untriggered."),
        _query("disabled", "true or false.", {"type": "string", "enum": ["true", "false"]}),
        _query(
            "_sort",
            "Sort field (default id = name).",
            {"type": "string", "enum": ["id", *JOB_FIELDS.sortable]},
        ),
        _query("_order", "DESC for descending; anything else ascends."),
        _query("_start", "First index (default 0).", {"type": "integer", "minimum": 0}),
        _query("_end", "End index, exclusive (default all).", {"type": "integer", "minimum": 0}),
        _PRETTY,
    ],
)

_LIST_EXECUTIONS = _op(
    "listExecutions",
    "Executions of a job; times in the job's timezone; no pagination.",
    {
        "200": _json({"type": "array", "items": _ref("Execution")}, "Executions.", total=True),
        "400": _text("Bad _sort or output_size_limit."),
        "404": _JOB_NOT_FOUND,
    },
    parameters=[
        _JOB_PARAM,
        _query(
            "_sort",
            "Default: key order (by start).",
            {"type": "string", "enum": ["id", *EXECUTION_FIELDS.sortable]},
        ),
        _query("_order", "Default DESC (newest first)."),
        _query(
            "output_size_limit",
            "Keep the last N bytes of output and set output_truncated.",
            {"type": "integer", "minimum": 0},
        ),
        _PRETTY,
    ],
)

_DELETE_EXECUTIONS = _op(
    "deleteExecutions",
    "Delete a job's executions and reset its counters.",
    {"200": _json(_ref("Job"), "The updated job."), "404": _JOB_NOT_FOUND, "503": _UNAVAILABLE},
    parameters=[_JOB_PARAM, _PRETTY],
)

_RUN = _op(
    "runJob",
    "Start a manual run; answers at once (Dkron waits for the run to end).",
    {
        "200": {
            **_json(_ref("Job"), "The job as loaded before the run."),
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        "404": _text("Unknown or disabled job."),
    },
    parameters=[_JOB_PARAM, _PRETTY],
)

_INDEX = _op(
    "agentInfo",
    "This node: agent name and version, serf statistics, tags.",
    {
        "200": _json(
            {
                "type": "object",
                "properties": {
                    "agent": {"type": "object"},
                    "serf": {"type": "object", "additionalProperties": {"type": "string"}},
                    "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "Node information.",
        )
    },
    parameters=[_PRETTY],
)

_PAUSED = _json(
    {"type": "object", "properties": {"paused": {"type": "boolean"}}}, "The pause flag."
)


def _slash_variant(operation: dict[str, Any]) -> dict[str, Any]:
    variant = copy.deepcopy(operation)
    variant["operationId"] += "Slash"
    return variant


def _paths() -> dict[str, dict[str, Any]]:
    upsert_slash = _slash_variant(_UPSERT)
    return {
        "/health": {
            "get": _op(
                "health",
                "Liveness (no X-Whom, no CORS).",
                {"200": _json({"type": "object"}, '{"status":"healthy"}')},
            )
        },
        "/debug/vars": {
            "get": _op(
                "debugVars",
                "expvar-style process and scheduler variables.",
                {"200": _json({"type": "object"}, "Variables.")},
            )
        },
        "/": {
            "get": _op(
                "root",
                "Redirect to the web UI unless Accept excludes text/html.",
                {"303": {"description": "To /ui/."}, "404": _text("HTML not acceptable.")},
            )
        },
        "/v1": {"get": _INDEX},
        "/v1/": {"get": _slash_variant(_INDEX)},
        "/v1/openapi.json": {
            "get": _op(
                "openapi",
                "This document.",
                {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
            )
        },
        "/v1/members": {
            "get": _op(
                "listMembers",
                "Cluster members.",
                {"200": _json({"type": "array", "items": _ref("Member")}, "Members.", total=True)},
                parameters=[_PRETTY],
            )
        },
        "/v1/leader": {
            "get": _op(
                "getLeader",
                "The Raft leader.",
                {
                    "200": _json(_ref("Member"), "The leader (without id/statusText)."),
                    "500": _json({"type": "null"}, "No leader: body is null."),
                },
                parameters=[_PRETTY],
            )
        },
        "/v1/isleader": {
            "get": _op(
                "isLeader",
                "Whether this node leads.",
                {
                    "200": _json({"type": "string", "const": "I am a leader"}, "Leader."),
                    "404": _json({"type": "string", "const": "I am a follower"}, "Follower."),
                },
            )
        },
        "/v1/leave": {
            "post": _op(
                "leave",
                "Stop this node after answering with its peers map.",
                {"200": _json({"type": "object"}, "Region -> server parts.")},
            )
        },
        "/v1/restore": {
            "post": _op(
                "restore",
                "Create or replace jobs from a backup (GET /v1/jobs output), parents first.",
                {
                    "200": _json(
                        {"type": "string"},
                        'A JSON string holding a JSON array, e.g. "[\\"success create a\\"]".',
                    ),
                    "400": _text("Bad JSON, an invalid job, or a missing parent."),
                    "404": _text("No multipart field named file."),
                },
                requestBody={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {"file": {"type": "string", "format": "binary"}},
                                "required": ["file"],
                            }
                        }
                    },
                },
            )
        },
        "/v1/busy": {
            "get": _op(
                "busy",
                "Executions running now, oldest first (UTC, with partial output).",
                {
                    "200": _json(
                        {"type": "array", "items": _ref("Execution")}, "Running.", total=True
                    )
                },
                parameters=[_PRETTY],
            )
        },
        "/v1/jobs/{job}/next": {
            "get": _op(
                "nextFires",
                "The job's next fire times in its time zone (extension; none when disabled, "
                "a child job or @manually).",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "next": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "date-time"},
                                }
                            },
                        },
                        "Oldest first.",
                    ),
                    "400": _text("n is not 1-100."),
                    "404": _JOB_NOT_FOUND,
                },
                parameters=[
                    _JOB_PARAM,
                    _query("n", "How many (1-100, default 5).", {"type": "integer"}),
                    _PRETTY,
                ],
            )
        },
        "/v1/stats": {
            "get": _op(
                "executionStats",
                "Executions finished per UTC day, oldest first (Dkron 4.1).",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "stats": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "date": {"type": "string", "format": "date-time"},
                                            "success_count": {"type": "integer"},
                                            "failed_count": {"type": "integer"},
                                        },
                                    },
                                }
                            },
                        },
                        "One entry per day, zeros included.",
                    )
                },
                parameters=[
                    _query(
                        "days",
                        "Days to report, 1-365 (30 when missing or not a positive number).",
                        {"type": "integer"},
                    ),
                    _PRETTY,
                ],
            )
        },
        "/v1/pause": {
            "get": _op("pauseStatus", "Whether this node refuses job writes.", {"200": _PAUSED}),
            "post": _op("pause", "Refuse job creates/updates on this node.", {"200": _PAUSED}),
        },
        "/v1/unpause": {
            "post": _op("unpause", "Accept job creates/updates again.", {"200": _PAUSED})
        },
        "/v1/jobs": {"get": _LIST_JOBS, "post": _UPSERT, "patch": _patch(_UPSERT)},
        "/v1/jobs/": {
            "get": _slash_variant(_LIST_JOBS),
            "post": upsert_slash,
            "patch": _patch(upsert_slash),
        },
        "/v1/jobs/{job}": {
            "get": _op(
                "getJob",
                "One job.",
                {"200": _json(_ref("Job"), "The job."), "404": _JOB_NOT_FOUND},
                parameters=[_JOB_PARAM, _PRETTY],
            ),
            "put": _put(_UPSERT),
            "post": _RUN,
            "delete": _op(
                "deleteJob",
                "Delete a job and its executions.",
                {
                    "200": _json(_ref("Job"), "The deleted job."),
                    "404": _text("Unknown job, or it still has dependent jobs."),
                    "503": _UNAVAILABLE,
                },
                parameters=[_JOB_PARAM, _PRETTY],
            ),
        },
        "/v1/jobs/{job}/run": {"post": {**copy.deepcopy(_RUN), "operationId": "runJobRun"}},
        "/v1/jobs/{job}/toggle": {
            "post": _op(
                "toggleJob",
                "Flip disabled.",
                {
                    "200": {
                        **_json(_ref("Job"), "The updated job."),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "404": _JOB_NOT_FOUND,
                    "422": _text("The store refused the change."),
                },
                parameters=[_JOB_PARAM, _PRETTY],
            )
        },
        "/v1/jobs/{job}/executions": {"get": _LIST_EXECUTIONS, "delete": _DELETE_EXECUTIONS},
        "/v1/jobs/{job}/executions/": {
            "get": _slash_variant(_LIST_EXECUTIONS),
            "delete": _slash_variant(_DELETE_EXECUTIONS),
        },
        "/v1/jobs/{job}/executions/{execution}": {
            "get": _op(
                "getExecution",
                "One execution: full output (partial while running), UTC times.",
                {"200": _json(_ref("Execution"), "The execution."), "404": _text("Not found.")},
                parameters=[_JOB_PARAM, _EXECUTION_PARAM, _PRETTY],
            )
        },
        "/v1/jobs/{job}/executions/{execution}/stream": {
            "get": _op(
                "streamExecution",
                'Server-Sent Events: `data: {"output": ...}` per output chunk, then '
                "`event: done` whose data is the finished execution.",
                {
                    "200": {
                        "description": "An event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "404": _text("Not found."),
                },
                parameters=[_JOB_PARAM, _EXECUTION_PARAM],
            )
        },
    }


_NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_ACCESSOR_PARAM = {"name": "accessor", "in": "path", "required": True, "schema": {"type": "string"}}
_DENIED = {
    "401": _text("ACLs are on and the request has no valid token."),
    "403": _text("The token is not allowed this (management token needed)."),
}
_NOT_ENABLED = _text("ACLs are not enabled, or the body is malformed.")


def _acl_paths() -> dict[str, dict[str, Any]]:
    """``/v1/acl``: Dkron Pro's policy routes, plus tokens and bootstrap (ours)."""
    token = _ref("AclToken")
    policy = _ref("AclPolicy")
    return {
        "/v1/acl/bootstrap": {
            "post": _op(
                "aclBootstrap",
                "Create the first management token (once per cluster); its secret is "
                "only shown here.",
                {
                    "201": _json(token, "The token, with its secret."),
                    "400": _NOT_ENABLED,
                    "409": _text("Already bootstrapped."),
                },
            )
        },
        "/v1/acl/policies": {
            "get": _op(
                "aclListPolicies",
                "Every policy (management token).",
                {"200": _json({"type": "array", "items": policy}, "Policies."), **_DENIED},
            )
        },
        "/v1/acl/policies/{name}": {
            "get": _op(
                "aclGetPolicy",
                "One policy.",
                {"200": _json(policy, "The policy."), "404": _text("Not found."), **_DENIED},
                parameters=[_NAME_PARAM],
            ),
            "post": _op(
                "aclApplyPolicy",
                "Create or replace a policy; the body is its rules document.",
                {"200": _json(policy, "The policy as stored."), "400": _NOT_ENABLED, **_DENIED},
                parameters=[_NAME_PARAM],
            ),
            "delete": _op(
                "aclDeletePolicy",
                "Delete a policy.",
                {"204": {"description": "Deleted."}, "404": _text("Not found."), **_DENIED},
                parameters=[_NAME_PARAM],
            ),
        },
        "/v1/acl/tokens": {
            "get": _op(
                "aclListTokens",
                "Every token, without secrets.",
                {"200": _json({"type": "array", "items": token}, "Tokens."), **_DENIED},
            ),
            "post": _op(
                "aclCreateToken",
                'Create a token from {"name", "type": client|management, "policies"}.',
                {
                    "201": _json(token, "The token, with its secret."),
                    "400": _NOT_ENABLED,
                    **_DENIED,
                },
            ),
        },
        "/v1/acl/token/self": {
            "get": _op(
                "aclOwnToken",
                "The token the request carries (any valid token).",
                {"200": _json(token, "The token."), **_DENIED},
            )
        },
        "/v1/acl/tokens/{accessor}": {
            "get": _op(
                "aclGetToken",
                "One token, without its secret.",
                {"200": _json(token, "The token."), "404": _text("Not found."), **_DENIED},
                parameters=[_ACCESSOR_PARAM],
            ),
            "delete": _op(
                "aclDeleteToken",
                "Revoke a token, on every server.",
                {"204": {"description": "Revoked."}, "404": _text("Not found."), **_DENIED},
                parameters=[_ACCESSOR_PARAM],
            ),
        },
    }


_ACL_TOKEN = {
    "type": "object",
    "properties": {
        "accessor_id": {"type": "string"},
        "secret": {"type": "string", "description": "Only when the token is created."},
        "name": {"type": "string"},
        "type": {"type": "string", "enum": ["client", "management"]},
        "policies": {"type": "array", "items": {"type": "string"}},
        "create_time": {"type": "string", "format": "date-time"},
    },
}
_ACL_POLICY = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "rules": {
            "type": "object",
            "description": '{"path": {"<glob>": {"capabilities": [create, read, update, '
            "delete, list]}}}",
        },
    },
}


def _patch(operation: dict[str, Any]) -> dict[str, Any]:
    variant = copy.deepcopy(operation)
    variant["operationId"] += "Patch"
    return variant


def _put(operation: dict[str, Any]) -> dict[str, Any]:
    variant = copy.deepcopy(operation)
    variant["operationId"] = "putJob"
    variant["summary"] = "Create or replace; the path's job name is ignored (the body's is used)."
    variant["parameters"] = [_JOB_PARAM, *variant["parameters"]]
    return variant


def openapi_document(version: str) -> dict[str, Any]:
    """A fresh copy of the document (callers may modify it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dkron-py REST API",
            "version": version,
            "description": (
                "Dkron v4 REST API v1. Every response except /health carries X-Whom "
                "(the answering node). Error bodies are plain text. `pretty` indents JSON. "
                "With ACLs on, every route but /health and /v1/acl/bootstrap needs "
                "`Authorization: Bearer <secret>` (401 without a valid token, 403 when its "
                "policies do not allow the request)."
            ),
        },
        "paths": {**_paths(), **_acl_paths()},
        "components": {
            "schemas": {
                "Job": JOB_FIELDS.openapi(),
                "Execution": EXECUTION_FIELDS.openapi(),
                "Member": copy.deepcopy(_MEMBER),
                "AclToken": copy.deepcopy(_ACL_TOKEN),
                "AclPolicy": copy.deepcopy(_ACL_POLICY),
            },
            "headers": {
                "X-Total-Count": {
                    "description": "Total number of items (before slicing).",
                    "schema": {"type": "integer"},
                }
            },
        },
    }
