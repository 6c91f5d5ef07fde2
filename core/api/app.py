"""Dkron's REST API v1 on aiohttp: same routes, status codes, headers and JSON bodies.

Deliberate differences (docs/compatibility.md, "REST API"): bad list parameters get a 400
with a message instead of a 500 or a panic; error responses that Dkron sends empty carry a
plain-text reason; manual runs and ``runoncreate`` never hold the request open; and there
are two additions, ``/v1/jobs/:job/executions/:id/stream`` (Server-Sent Events) and
``/v1/openapi.json``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import difflib
import inspect
import logging
import re
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from core import VERSION
from core.acl import AclService
from core.api.acl import ACL, ACL_ROUTES, refusal, refused
from core.jobs.codec import (
    JobDecodeError,
    decode_job,
    execution_to_json,
    go_json_dumps,
    job_keys,
    job_to_json,
    jobs_from_json,
)
from core.jobs.model import Execution, Job
from core.jobs.validation import JobValidationError, validate_job
from core.security.redact import redact_argv
from core.store.base import DiskFullError, ReplicationError
from core.store.state import STATS_DAYS, JobQuery, NotFound, QueryError, StoreError

__all__ = ["ROUTES", "ApiBackend", "ApiSettings", "OnLeave", "api_port", "build_app", "serve_api"]

log = logging.getLogger("dkron.api")

OnLeave = Callable[[], Awaitable[None] | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiSettings(Protocol):
    """The node's settings the API reads (core.node.ServerConfig has them)."""

    @property
    def node_name(self) -> str: ...
    @property
    def encrypt(self) -> str | None: ...
    @property
    def strict_job_fields(self) -> bool: ...
    @property
    def region(self) -> str: ...
    @property
    def datacenter(self) -> str: ...
    @property
    def bootstrap_expect(self) -> int: ...


class ApiBackend(Protocol):
    """What the routes call on their node (core.node.DkronServer is one)."""

    paused: bool  # node-local, like Dkron's

    @property
    def config(self) -> ApiSettings: ...
    @property
    def acl(self) -> AclService: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def rpc_address(self) -> str: ...
    @property
    def is_scheduling(self) -> bool:
        """Whether this node's scheduler runs (it does while it leads)."""
        ...

    def issues(self) -> list[str]: ...
    def scheduled_jobs(self) -> dict[str, Job]: ...
    def tags(self) -> dict[str, str]: ...
    def members(self) -> list[dict[str, Any]]: ...
    def leader_member(self) -> dict[str, Any] | None: ...
    async def executor_refusal(self, executor: str) -> str | None: ...
    async def set_job(self, job: Job, *, merge: bool = True) -> Job: ...
    async def delete_job(self, name: str) -> Job: ...
    async def toggle_job(self, name: str) -> Job: ...
    async def run_job(self, name: str) -> Job: ...
    async def delete_executions(self, name: str) -> Job: ...
    async def restore(self, jobs: list[Job]) -> list[str]: ...
    def get_job(self, name: str) -> Job | None: ...
    def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]: ...
    def executions(self, job_name: str) -> list[Execution]: ...
    def get_execution(self, job_name: str, execution_id: str) -> Execution | None: ...
    def busy(self) -> list[Execution]: ...
    def execution_stats(self, days: int) -> list[tuple[int, int, int]]: ...
    def partial_output(self, execution_id: str) -> bytes | None: ...
    def follow(self, execution_id: str) -> AsyncIterator[bytes]: ...


SERVER: web.AppKey[ApiBackend] = web.AppKey("server")


@dataclass
class _Local:
    on_leave: OnLeave
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    # Open event streams: cancelled at shutdown, or they would hold it until their runs end.
    streams: set[asyncio.Task[Any]] = field(default_factory=set)


_LOCAL: web.AppKey[_Local] = web.AppKey("local")

PAUSED_MESSAGE = "New job submissions are currently paused"
# Backups and job bodies can be large; gin reads multipart forms of any size.
MAX_BODY = 64 * 1024 * 1024
# Go's net/http reads request lines and headers of up to 1 MB (aiohttp: 8,190 bytes), so a
# long `q` or many `metadata[...]` filters work as they do against Dkron.
MAX_REQUEST_LINE = 1 << 20
HANDLER_ARGS = {"max_line_size": MAX_REQUEST_LINE, "max_field_size": MAX_REQUEST_LINE}
# `_sort` value -> Execution field ("" = Dkron's raw key order); `id` is an alias.
_EXECUTION_SORTS = {
    "": "",
    "id": "started_at",
    "started_at": "started_at",
    "finished_at": "finished_at",
    "attempt": "attempt",
}
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
# Streams longer than this stop being tracked for the final remainder (see the SSE route).
_RESEND_LIMIT = 1024 * 1024


class BadRequest(Exception):
    """A query parameter is malformed; answered with 400 and this text."""


# -- responses --------------------------------------------------------------------------------


def _json(
    request: web.Request,
    value: object,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    # gin: c.JSON, or c.IndentedJSON when `pretty` is present with any value (even empty).
    body = go_json_dumps(value, pretty="pretty" in request.query)
    return web.Response(
        body=body,
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def _text(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message, headers=headers)


def _server(request: web.Request) -> ApiBackend:
    return request.app[SERVER]


def _total(count: int) -> dict[str, str]:
    return {"X-Total-Count": str(count)}


# -- middleware -------------------------------------------------------------------------------


async def _meta_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Dkron's root-group middleware: ``X-Whom`` and CORS on everything but /health."""
    if request.path == "/health":
        return
    response.headers["X-Whom"] = request.app[SERVER].config.node_name
    if "Origin" in request.headers:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = "*"


def _toggle_slash(path: str) -> str:
    return path[:-1] if path.endswith("/") and len(path) > 1 else path + "/"


def _slash_redirect(request: web.Request) -> str | None:
    """Where gin's RedirectTrailingSlash would send an unmatched path, if anywhere."""
    other = _toggle_slash(request.path)
    for resource in request.app.router.resources():
        info = resource.get_info()
        pattern = info.get("pattern")
        if info.get("path") == other or (
            isinstance(pattern, re.Pattern) and pattern.fullmatch(other)
        ):
            location = _toggle_slash(request.rel_url.raw_path)
            query = request.rel_url.raw_query_string
            return f"{location}?{query}" if query else location
    return None


@web.middleware
async def _dkron_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS" and request.path != "/health":
        # CORS preflight, answered for any path like gin-contrib/cors does.
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "*",
                "Access-Control-Allow-Headers": "*",
            },
        )
    if isinstance(request.match_info.http_exception, web.HTTPNotFound):
        # gin's RedirectTrailingSlash: 301 for GET, 307 (method kept) otherwise.
        location = _slash_redirect(request)
        if location is not None:
            status = 301 if request.method == "GET" else 307
            return web.Response(status=status, headers={"Location": location})
    denied = refusal(request.app[ACL], request)
    if denied is not None:
        return refused(denied)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return web.Response(status=exc.status, text=exc.text, headers=exc.headers)
    except BadRequest as exc:
        return _text(400, str(exc))
    except DiskFullError as exc:
        return _text(507, str(exc))
    except ReplicationError as exc:
        return _text(503, f"cluster unavailable: {exc}")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return _text(500, f"internal error: {type(exc).__name__}: {exc}")


# -- node routes ------------------------------------------------------------------------------


async def health(request: web.Request) -> web.StreamResponse:
    # Dkron 4.1: unhealthy (503) with the issues, e.g. a plugin that does not start; a
    # server also says whether it leads. Open even with ACLs on.
    server = _server(request)
    issues = server.issues()
    if issues:
        body = {"status": "unhealthy", "issues": issues, "leader": server.is_leader}
        return _json(request, body, status=503)
    return _json(request, {"status": "healthy", "leader": server.is_leader})


async def debug_vars(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    entries = {name: job_to_json(job) for name, job in server.scheduled_jobs().items()}
    memstats: dict[str, int] = {}
    with contextlib.suppress(ImportError):
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        memstats["MaxRSS"] = usage.ru_maxrss * 1024  # KiB on Linux
    return _json(
        request,
        {
            "cmdline": redact_argv(sys.argv),
            "cron_entries": entries,
            "memstats": memstats,
            "node": server.config.node_name,
            "scheduler_started": 1 if server.is_scheduling else 0,
        },
    )


async def index(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    members = server.members()
    serf = {
        "coordinate_resets": "0",
        "encrypted": "true" if server.config.encrypt else "false",
        "event_queue": "0",
        "event_time": "1",
        "failed": str(sum(1 for m in members if m["Status"] == 4)),
        "health_score": "0",
        "intent_queue": "0",
        "left": str(sum(1 for m in members if m["Status"] == 3)),
        "member_time": "1",
        "members": str(len(members)),
        "query_queue": "0",
        "query_time": "1",
    }
    return _json(
        request,
        {
            "agent": {"name": server.config.node_name, "version": VERSION},
            "serf": serf,
            "tags": dict(sorted(server.tags().items())),
        },
    )


async def members(request: web.Request) -> web.StreamResponse:
    found = _server(request).members()
    return _json(request, found, headers=_total(len(found)))


async def leader(request: web.Request) -> web.StreamResponse:
    member = _server(request).leader_member()
    if member is None:
        # Dkron writes 500 and then renders its nil member: the body is `null`.
        return _json(request, None, status=500)
    return _json(request, member)


async def is_leader(request: web.Request) -> web.StreamResponse:
    if _server(request).is_leader:
        return _json(request, "I am a leader")
    return _json(request, "I am a follower", status=404)


def _peers(server: ApiBackend) -> dict[str, list[dict[str, object]]]:
    """Dkron's ``peers`` map: region -> ServerParts (Go struct, no JSON tags)."""
    config = server.config
    host, _, port = server.rpc_address.rpartition(":")
    part: dict[str, object] = {
        "Name": config.node_name,
        "ID": config.node_name,
        "Region": config.region,
        "Datacenter": config.datacenter,
        "Port": int(port),
        "Bootstrap": config.bootstrap_expect == 1,
        "Expect": config.bootstrap_expect,
        "RaftVersion": 3,
        "BuildVersion": {},
        "Version": 1,
        "RPCAddr": {"IP": host, "Port": int(port), "Zone": ""},
        "Status": 1,
    }
    return {config.region: [part]}


async def leave(request: web.Request) -> web.StreamResponse:
    response = _json(request, _peers(_server(request)))
    # Answer first, then leave: the caller's stop may tear this very server down.
    await response.prepare(request)
    await response.write_eof()
    callback = request.app[_LOCAL].on_leave

    async def run() -> None:
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("leaving the cluster failed")

    _background(request.app, run())
    return response


def _background(app: web.Application, work: Awaitable[Any]) -> None:
    task = asyncio.ensure_future(work)
    tasks = app[_LOCAL].background
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def busy(request: web.Request) -> web.StreamResponse:
    running = _server(request).busy()
    body = [execution_to_json(e, list_item=False) for e in running]
    return _json(request, body, headers=_total(len(body)))


# Dkron 4.1's GET /v1/stats: ?days= 1..365, anything else (or nothing) means 30, and
# more than 365 means 365.
_STATS_DEFAULT_DAYS = 30


async def execution_stats(request: web.Request) -> web.StreamResponse:
    try:
        days = int(request.query.get("days", _STATS_DEFAULT_DAYS))
    except ValueError:
        days = _STATS_DEFAULT_DAYS
    if days <= 0:
        days = _STATS_DEFAULT_DAYS
    days = min(days, STATS_DAYS)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    stats = [
        {
            "date": (epoch + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "success_count": succeeded,
            "failed_count": failed,
        }
        for day, succeeded, failed in _server(request).execution_stats(days)
    ]
    return _json(request, {"stats": stats})


async def pause_status(request: web.Request) -> web.StreamResponse:
    return _json(request, {"paused": _server(request).paused})


async def pause(request: web.Request) -> web.StreamResponse:
    _server(request).paused = True
    return _json(request, {"paused": True})


async def unpause(request: web.Request) -> web.StreamResponse:
    _server(request).paused = False
    return _json(request, {"paused": False})


async def restore(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    try:
        form = await request.post()
    except (ValueError, HttpProcessingError) as exc:  # not a multipart body gin could read
        reason = getattr(exc, "message", None) or str(exc)
        return _text(404, f'no "file" field in the request: malformed multipart body: {reason}')
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return _text(404, 'no "file" field in the request: send the backup as multipart "file"')
    try:
        jobs = jobs_from_json(await asyncio.to_thread(upload.file.read))
    except JobDecodeError as exc:
        return _text(400, f"Unable to parse backup file: {exc}.")
    names = {job.name for job in jobs}
    for job in jobs:
        try:
            validate_job(job)
        except JobValidationError as exc:
            return _text(400, f"Job validation failed for {job.name!r}: {exc}.")
        if job.parent_job and job.parent_job not in names and not server.get_job(job.parent_job):
            missing = job.parent_job
            return _text(400, f"job {job.name!r}: parent job {missing!r} is not in the file")
    results = await server.restore(jobs)
    # Dkron renders the already-encoded array as a JSON string: double encoded.
    return _json(request, go_json_dumps(results).decode("utf-8"))


# -- jobs -------------------------------------------------------------------------------------


def _unknown_keys(keys: list[str]) -> str:
    """``unknown key 'schedul' (did you mean 'schedule'?)``, for each one."""
    known = job_keys()
    said = []
    for key in keys:
        close = difflib.get_close_matches(key.rpartition(".")[2], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        said.append(f"unknown key {key!r}{hint}")
    return "; ".join(said)


async def create_or_update(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    if server.paused:
        return _text(503, PAUSED_MESSAGE)
    try:
        job, unknown = decode_job(await request.read())
    except JobDecodeError as exc:
        return _text(400, f"Unable to parse payload: {exc}.")
    job.id = None  # Dkron 4.1 (#2002): a job's id is its name, in the echo too
    ignored = _unknown_keys(unknown)
    if ignored and server.config.strict_job_fields:
        return _text(400, f"Job validation failed: {ignored}.")
    try:
        validate_job(job)
    except JobValidationError as exc:
        # A misspelt key is the likeliest cause of a missing field: say so.
        extra = f"; {ignored}, ignored" if ignored else ""
        return _text(400, f"Job validation failed: {exc}{extra}.")
    refusal = await server.executor_refusal(job.executor)
    if refusal is not None:
        return _text(400, f"Job validation failed: {refusal}.")
    try:
        await server.set_job(job)
    except NotFound as exc:
        return _text(404, str(exc))
    except StoreError as exc:
        return _text(500, str(exc))
    if "runoncreate" in request.query:
        try:
            await server.run_job(job.name)
        except StoreError as exc:
            log.warning("runoncreate of %r did not start: %s", job.name, exc)
    # The echo is the request as parsed (id = name), not the stored job (Dkron's behaviour).
    headers = {"Location": f"{request.raw_path}/{job.name}"}
    if ignored:
        # RFC 7234's Warning: 299 is "miscellaneous persistent warning".
        headers["Warning"] = f'299 dkron-py "{ignored}, ignored"'
    return _json(request, job_to_json(job), status=201, headers=headers)


def _metadata_filter(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    # gin's QueryMap("metadata"): keys shaped `metadata[<k>]`, first value of each key.
    found: dict[str, str] = {}
    for key, value in items:
        if not key.startswith("metadata["):
            continue
        inner = key[len("metadata[") :]
        close = inner.find("]")
        if close >= 1:
            found.setdefault(inner[:close], value)
    return found


def _whole_number(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name, "")
    if raw == "":
        return None
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise BadRequest(f"{name} must be a whole number, got {raw!r}")
    value = int(raw)
    if value < 0:
        raise BadRequest(f"{name} must not be negative, got {value}")
    return value


def _job_query(request: web.Request) -> JobQuery:
    query = request.query
    disabled = query.get("disabled", "")
    if disabled not in ("", "true", "false"):
        raise BadRequest(f'disabled must be "true" or "false", got {disabled!r}')
    start = _whole_number(query, "_start")
    end = _whole_number(query, "_end")
    if start is not None and end is not None and start > end:
        raise BadRequest(f"_start ({start}) is greater than _end ({end})")
    sort = query.get("_sort", "id")
    return JobQuery(
        metadata=_metadata_filter(query.items()),
        q=query.get("q", ""),
        status=query.get("status") or None,
        disabled=disabled or None,
        sort="name" if sort == "id" else sort,
        descending=query.get("_order", "ASC") == "DESC",
        start=start or 0,
        end=end,
    )


async def list_jobs(request: web.Request) -> web.StreamResponse:
    try:
        page, total = _server(request).list_jobs(_job_query(request))
    except QueryError as exc:
        return _text(400, str(exc))
    return _json(request, [job_to_json(job) for job in page], headers=_total(total))


def _job_or_404(request: web.Request) -> Job:
    name = request.match_info["job"]
    job = _server(request).get_job(name)
    if job is None:
        raise web.HTTPNotFound(text=f"job {name!r} not found")
    return job


async def get_job(request: web.Request) -> web.StreamResponse:
    return _json(request, job_to_json(_job_or_404(request)))


# GET /v1/jobs/{job}/next?n=N (an extension): the next fire times, as the scheduler
# computes them, in the job's time zone. At most this many.
_NEXT_DEFAULT = 5
_NEXT_MAX = 100


async def next_fires(request: web.Request) -> web.StreamResponse:
    from core.cron import ScheduleError, parse_schedule
    from core.scheduler.scheduler import next_fire
    from plugin_sdk.gocompat.gotime import format_go_time_in, load_location

    job = _job_or_404(request)
    text = request.query.get("n", str(_NEXT_DEFAULT))
    if not text.isdigit() or not 1 <= int(text) <= _NEXT_MAX:
        return _text(400, f"n must be a whole number from 1 to {_NEXT_MAX}, not {text!r}")
    moments: list[datetime] = []
    # A disabled job, a child (run after its parent) or @manually has no next fire.
    if not job.disabled and not job.parent_job and job.schedule:
        try:
            schedule = parse_schedule(job.schedule, timezone=job.timezone, job_name=job.name)
        except ScheduleError as exc:
            return _text(400, str(exc))
        after = datetime.now(UTC)
        while len(moments) < int(text):
            moment = next_fire(schedule, job, after)
            if moment is None:
                break
            moments.append(moment)
            after = moment
    zone = load_location(job.timezone)
    return _json(request, {"next": [format_go_time_in(m, zone) for m in moments]})


async def delete_job(request: web.Request) -> web.StreamResponse:
    name = request.match_info["job"]
    try:
        job = await _server(request).delete_job(name)
    except NotFound:
        return _text(404, f"job {name!r} not found")
    except StoreError as exc:
        # Dkron answers 404 for every store error, children included.
        return _text(404, str(exc))
    return _json(request, job_to_json(job))


async def run_job(request: web.Request) -> web.StreamResponse:
    server = _server(request)
    job = _job_or_404(request)
    if job.disabled and not job.parent_job:
        # Dkron's scheduler has no entry for a disabled job, so its manual run is a 404.
        return _text(404, f"job {job.name!r} is disabled; enable it before running it")
    try:
        job = await server.run_job(job.name)
    except NotFound:
        return _text(404, f"job {job.name!r} not found")
    except StoreError as exc:
        return _text(500, str(exc))
    # Dkron sets 202 but gin sends 200; clients see 200, so this does too.
    return _json(request, job_to_json(job), headers={"Location": request.raw_path})


async def toggle_job(request: web.Request) -> web.StreamResponse:
    name = request.match_info["job"]
    try:
        job = await _server(request).toggle_job(name)
    except NotFound:
        return _text(404, f"job {name!r} not found")
    except StoreError as exc:
        return _text(422, str(exc))
    return _json(request, job_to_json(job), headers={"Location": request.raw_path})


# -- executions -------------------------------------------------------------------------------


def _output_limit(request: web.Request) -> int | None:
    raw = request.query.get("output_size_limit", "")
    if raw == "":
        return None
    if not _WHOLE_NUMBER.fullmatch(raw) or int(raw) < 0:
        raise BadRequest(f"output_size_limit must be a non-negative whole number, got {raw!r}")
    return int(raw)


def _sorted_executions(request: web.Request, executions: list[Execution]) -> list[Execution]:
    sort = request.query.get("_sort", "")
    if sort not in _EXECUTION_SORTS:
        raise BadRequest(
            f"cannot sort executions by {sort!r}; use one of: id, started_at, finished_at, attempt"
        )
    key_field = _EXECUTION_SORTS[sort]
    descending = request.query.get("_order", "DESC") == "DESC"
    if key_field == "":
        # Dkron's raw key order: `<started_at UnixNano>-<node>`, compared as text.
        ordered = sorted(executions, key=lambda e: e.id)
    elif key_field == "attempt":
        ordered = sorted(executions, key=lambda e: e.attempt)
    else:
        # A running execution's zero finished_at sorts first, as Go's zero time does.
        ordered = sorted(
            executions,
            key=lambda e: (getattr(e, key_field) is not None, getattr(e, key_field) or 0),
        )
    if descending:
        ordered.reverse()
    return ordered


async def list_executions(request: web.Request) -> web.StreamResponse:
    job = _job_or_404(request)
    limit = _output_limit(request)
    ordered = _sorted_executions(request, _server(request).executions(job.name))
    body = [
        execution_to_json(e, timezone=job.timezone, output_size_limit=limit, list_item=True)
        for e in ordered
    ]
    return _json(request, body, headers=_total(len(body)))


def _execution_or_404(request: web.Request) -> Execution:
    job = _job_or_404(request)
    execution_id = request.match_info["execution"]
    execution = _server(request).get_execution(job.name, execution_id)
    if execution is None:
        raise web.HTTPNotFound(text=f"execution {execution_id!r} of job {job.name!r} not found")
    return execution


async def get_execution(request: web.Request) -> web.StreamResponse:
    return _json(request, execution_to_json(_execution_or_404(request), list_item=False))


async def delete_executions(request: web.Request) -> web.StreamResponse:
    name = request.match_info["job"]
    try:
        job = await _server(request).delete_executions(name)
    except NotFound:
        return _text(404, f"job {name!r} not found")
    return _json(request, job_to_json(job))


def _sse(event: str | None, data: object) -> bytes:
    head = f"event: {event}\n" if event else ""
    return head.encode() + b"data: " + go_json_dumps(data) + b"\n\n"


async def stream_execution(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``data: {"output": ...}`` per chunk, then ``event: done``."""
    server = _server(request)
    execution = _execution_or_404(request)
    job_name, execution_id = execution.job_name, execution.id
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # What was streamed, to send only the remainder of the stored output at the end.
    sent: bytearray | None = bytearray()
    me = asyncio.current_task()
    if me is not None:
        request.app[_LOCAL].streams.add(me)
    try:
        while execution.finished_at is None:
            if server.partial_output(execution_id) is not None:
                chunks = server.follow(execution_id)
                try:
                    async for chunk in chunks:
                        if sent is not None:
                            sent += chunk
                            if len(sent) > _RESEND_LIMIT:
                                sent = None
                        text = decoder.decode(chunk)
                        if text:
                            await response.write(_sse(None, {"output": text}))
                finally:
                    # Unregisters the follower even when the client went away mid-stream.
                    close = getattr(chunks, "aclose", None)
                    if close is not None:
                        await close()
            # Between the end of the live output and the stored result (processors run in
            # between), or before the live buffer exists, the record is still "running".
            await asyncio.sleep(0.05)
            latest = server.get_execution(job_name, execution_id)
            if latest is None:  # history trimmed or executions deleted meanwhile
                break
            execution = latest
        # The stored output usually extends what was streamed (or is all of it for a run
        # that had already finished); when processors rewrote it, `done` carries it.
        rest = b""
        if sent is not None and execution.output.startswith(sent):
            rest = execution.output[len(sent) :]
        tail = decoder.decode(rest, final=True)
        if tail:
            await response.write(_sse(None, {"output": tail}))
        await response.write(_sse("done", execution_to_json(execution, list_item=False)))
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    finally:
        if me is not None:
            request.app[_LOCAL].streams.discard(me)
    return response


# -- UI and docs ------------------------------------------------------------------------------


def _accepts_html(accept: str) -> bool:
    if not accept.strip():
        return True
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("text/html", "text/*", "*/*", "*"):
            return True
    return False


async def root(request: web.Request) -> web.StreamResponse:
    if not _accepts_html(request.headers.get("Accept", "")):
        return _text(404, "the UI is served as text/html at /ui/")
    return web.Response(status=303, headers={"Location": "/ui/"})


async def openapi(request: web.Request) -> web.StreamResponse:
    from core.api.openapi import openapi_document

    return _json(request, openapi_document(VERSION))


# -- application ------------------------------------------------------------------------------

# (method, path, handler): the single list the router and the OpenAPI test both read.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/health", health),
    ("GET", "/debug/vars", debug_vars),
    ("GET", "/", root),
    ("GET", "/v1", index),
    ("GET", "/v1/", index),
    ("GET", "/v1/openapi.json", openapi),
    ("GET", "/v1/members", members),
    ("GET", "/v1/leader", leader),
    ("GET", "/v1/isleader", is_leader),
    ("POST", "/v1/leave", leave),
    ("POST", "/v1/restore", restore),
    ("GET", "/v1/busy", busy),
    ("GET", "/v1/stats", execution_stats),
    ("GET", "/v1/pause", pause_status),
    ("POST", "/v1/pause", pause),
    ("POST", "/v1/unpause", unpause),
    ("GET", "/v1/jobs", list_jobs),
    ("GET", "/v1/jobs/", list_jobs),
    ("POST", "/v1/jobs", create_or_update),
    ("POST", "/v1/jobs/", create_or_update),
    ("PATCH", "/v1/jobs", create_or_update),
    ("PATCH", "/v1/jobs/", create_or_update),
    ("GET", "/v1/jobs/{job}", get_job),
    ("PUT", "/v1/jobs/{job}", create_or_update),
    ("POST", "/v1/jobs/{job}", run_job),
    ("DELETE", "/v1/jobs/{job}", delete_job),
    ("POST", "/v1/jobs/{job}/run", run_job),
    ("POST", "/v1/jobs/{job}/toggle", toggle_job),
    ("GET", "/v1/jobs/{job}/next", next_fires),
    ("GET", "/v1/jobs/{job}/executions", list_executions),
    ("GET", "/v1/jobs/{job}/executions/", list_executions),
    ("DELETE", "/v1/jobs/{job}/executions", delete_executions),
    ("DELETE", "/v1/jobs/{job}/executions/", delete_executions),
    ("GET", "/v1/jobs/{job}/executions/{execution}", get_execution),
    ("GET", "/v1/jobs/{job}/executions/{execution}/stream", stream_execution),
    *ACL_ROUTES,
)


async def _end_streams(app: web.Application) -> None:
    for task in list(app[_LOCAL].streams):
        task.cancel()


def _no_op() -> None:
    return None


def build_app(server: ApiBackend, *, on_leave: OnLeave | None = None) -> web.Application:
    """The API for ``server``; ``on_leave`` runs after ``POST /v1/leave`` has answered."""
    app = web.Application(
        middlewares=[_dkron_middleware], client_max_size=MAX_BODY, handler_args=HANDLER_ARGS
    )
    app[SERVER] = server
    app[ACL] = server.acl
    app[_LOCAL] = _Local(on_leave if on_leave is not None else _no_op)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.on_response_prepare.append(_meta_headers)
    app.on_shutdown.append(_end_streams)
    return app


async def serve_api(
    server: ApiBackend,
    host: str,
    port: int,
    *,
    on_leave: OnLeave | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Bind the API on ``host:port`` (0 picks a free port; see :func:`api_port`), over
    HTTPS when given an ``ssl_context``."""
    runner = web.AppRunner(build_app(server, on_leave=on_leave), shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def api_port(runner: web.AppRunner) -> int:
    """The TCP port a runner from :func:`serve_api` is bound to."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the API runner is not bound to a TCP port")
