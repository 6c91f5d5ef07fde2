"""Dkron's ``api_test.go`` cases, through HTTP against one real agent process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_helpers import Api, shell_job

UNICODE_NAME = "abcdefghijklmnopqrstuvwxyz0123456789-_ßñëäïüøüáéíóýćàèìòùâêîôûæšłç"
# `seq 1000 1340`: 341 lines of 5 bytes, the 1705-byte output of Dkron's truncate test.
LONG_OUTPUT = "".join(f"{n}\n" for n in range(1000, 1341))


def test_create_then_update_replaces(api: Api) -> None:
    first = shell_job("replaced", "echo one")
    reply = api.create(first)
    assert reply.headers["Location"] == "/v1/jobs/replaced"
    assert reply.json()["executor_config"] == first["executor_config"]
    second = {**first, "executor_config": {"command": "echo two"}, "disabled": True}
    api.create(second)
    stored = api.job("replaced")
    assert stored["executor_config"] == {"command": "echo two"}
    assert stored["disabled"] is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "BAD JOB NAME!"}, "name contains illegal character 'B'"),
        ({"name": ""}, "name cannot be empty"),
        ({"parent_job": "checked"}, "the job can not have itself as parent"),
        (
            {"schedule": "@at badtime"},
            "can't parse job schedule: failed to parse date @at badtime: parsing time "
            "'badtime': expected RFC3339 (2006-01-02T15:04:05Z07:00)",
        ),
        ({"concurrency": "badvalue"}, 'invalid concurrency policy value, use "allow" or "forbid"'),
        ({"timezone": "notatimezone"}, "unknown time zone notatimezone"),
        (
            {"executor_config": {"command": "true", "timeout": "foreverandever"}},
            "Error parsing job timeout value",
        ),
    ],
)
def test_validation_failures_are_400_and_store_nothing(
    api: Api, fields: dict[str, Any], message: str
) -> None:
    job = {**shell_job("checked", "true"), **fields}
    reply = api.post("/v1/jobs", job)
    assert (reply.status, reply.text) == (400, f"Job validation failed: {message}.")
    assert api.get("/v1/jobs/checked").status == 404
    stored = {j["name"] for j in api.get("/v1/jobs").json()}
    assert "checked" not in stored
    assert job["name"] not in stored


def test_valid_unicode_name_is_created(api: Api) -> None:
    reply = api.post("/v1/jobs", shell_job(UNICODE_NAME, "true"))
    assert reply.status == 201, reply.text
    assert api.job(UNICODE_NAME)["name"] == UNICODE_NAME


def test_missing_parent_is_404_and_the_job_is_absent(api: Api) -> None:
    reply = api.post("/v1/jobs", shell_job("orphan", "true", parent_job="does-not-exist"))
    assert (reply.status, reply.text) == (404, "specified parent job not found")
    assert api.get("/v1/jobs/orphan").status == 404


def test_get_non_existent_job_is_404(api: Api) -> None:
    reply = api.get("/v1/jobs/never-created")
    assert (reply.status, reply.text) == (404, "job 'never-created' not found")
    assert api.get("/v1/jobs/never-created/executions").status == 404


def test_pause_blocks_submissions_until_unpaused(api: Api) -> None:
    assert api.get("/v1/pause").json() == {"paused": False}
    try:
        assert api.post("/v1/pause").json() == {"paused": True}
        assert api.get("/v1/pause").json() == {"paused": True}
        reply = api.post("/v1/jobs", shell_job("while-paused", "true"))
        assert (reply.status, reply.text) == (503, "New job submissions are currently paused")
        assert api.get("/v1/jobs/while-paused").status == 404
    finally:
        assert api.post("/v1/unpause").json() == {"paused": False}
    assert api.post("/v1/jobs", shell_job("while-paused", "true")).status == 201


def test_output_truncate(api: Api) -> None:
    api.create(shell_job("long-output", "seq 1000 1340"))
    assert api.executions("long-output") == []
    api.run("long-output")
    api.wait_done("long-output", 1)
    api.run("long-output")
    oldest, newest = api.wait_done("long-output", 2)

    listed = api.executions("long-output")
    assert [e["id"] for e in listed] == [newest["id"], oldest["id"]]  # newest first
    assert all(e["output"] == LONG_OUTPUT and e["output_truncated"] is False for e in listed)

    truncated = api.executions("long-output", "?output_size_limit=200")
    for execution in truncated:
        assert execution["output"] == LONG_OUTPUT[-200:]
        assert len(execution["output"].encode()) == 200
        assert execution["output_truncated"] is True

    single = api.get(f"/v1/jobs/long-output/executions/{newest['id']}").json()
    assert len(single["output"].encode()) == 1705
    assert single["output"] == LONG_OUTPUT
    assert "output_truncated" not in single


def test_restore_parents_first(api: Api) -> None:
    backup = [
        shell_job("r-parent", "echo parent", "@every 1h"),
        shell_job("r-child", "echo child", parent_job="r-parent"),
        shell_job("r-grandchild", "echo grandchild", parent_job="r-child"),
        shell_job("r-alone", "echo alone", timezone="Europe/Paris"),
    ]
    reply = api.restore(backup)
    assert reply.status == 200, reply.text
    # Dkron's double encoding: a JSON string holding a JSON array.
    results = json.loads(json.loads(reply.body))
    assert sorted(results) == sorted(f"success create {job['name']}" for job in backup)
    order = [line.rsplit(" ", 1)[1] for line in results]
    assert order.index("r-parent") < order.index("r-child") < order.index("r-grandchild")
    assert api.job("r-parent")["dependent_jobs"] == ["r-child"]
    assert api.job("r-child")["dependent_jobs"] == ["r-grandchild"]
    assert api.job("r-grandchild")["parent_job"] == "r-child"
    assert api.job("r-alone")["timezone"] == "Europe/Paris"
    assert api.job("r-parent")["next"] != "0001-01-01T00:00:00Z"  # scheduled, not just stored


def test_restore_with_a_missing_parent_stores_nothing(api: Api) -> None:
    backup = [
        shell_job("r-fine", "true"),
        shell_job("r-lost", "true", parent_job="r-not-in-file"),
    ]
    reply = api.restore(backup)
    assert (reply.status, reply.text) == (
        400,
        "job 'r-lost': parent job 'r-not-in-file' is not in the file",
    )
    assert api.get("/v1/jobs/r-fine").status == 404
    assert api.get("/v1/jobs/r-lost").status == 404
