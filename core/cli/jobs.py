"""``dkronctl jobs``: list, inspect, apply, run, toggle and delete jobs over the REST API."""

from __future__ import annotations

import json
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from core.cli.client import (
    DEFAULT_ADDRESS,
    Address,
    ApiError,
    AsJson,
    CaFile,
    DkronClient,
    Token,
    echo_json,
    fail,
    short_time,
    table,
)

__all__ = ["app", "load_job_documents"]

app = typer.Typer(help="Manage jobs on a running dkron server.", no_args_is_help=True)

# Fields Dkron types map[string]string (processors: map of those); YAML reads
# `shell: true` or `timeout: 30` as a bool or an int, which Go's decoder would refuse.
_STRING_MAPS = ("executor_config", "tags", "metadata")
_FIND_EXECUTION_TIMEOUT = 30.0
_POLL_INTERVAL = 0.1


class JobFileError(ValueError):
    pass


def _scalar_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _plain(value: object) -> object:
    """YAML timestamps back to RFC 3339 text; everything else unchanged."""
    if isinstance(value, datetime):
        text = value.isoformat()
        if value.tzinfo is None:  # YAML without an offset means UTC
            text += "Z"
        return text.replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat() + "T00:00:00Z"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _from_yaml(job: dict[str, Any]) -> dict[str, Any]:
    job = {k: _plain(v) for k, v in job.items()}
    for key in _STRING_MAPS:
        if isinstance(job.get(key), dict):
            job[key] = {k: _scalar_text(v) for k, v in job[key].items()}
    processors = job.get("processors")
    if isinstance(processors, dict):
        job["processors"] = {
            name: {k: _scalar_text(v) for k, v in conf.items()} if isinstance(conf, dict) else conf
            for name, conf in processors.items()
        }
    return job


def load_job_documents(text: str, source: str) -> list[dict[str, Any]]:
    """One job object, a list of them, or (YAML) several documents of either."""
    documents: list[object]
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            documents = [json.loads(text)]
            is_yaml = False
        except json.JSONDecodeError as exc:
            raise JobFileError(
                f"{source} line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    else:
        import yaml  # only `jobs apply` needs it

        try:
            documents = [d for d in yaml.safe_load_all(text) if d is not None]
            is_yaml = True
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise JobFileError(f"{source}{where}: {problem}") from None
    jobs: list[dict[str, Any]] = []
    for document in documents:
        items = document if isinstance(document, list) else [document]
        for item in items:
            if not isinstance(item, dict):
                raise JobFileError(f"{source}: expected a job object or a list of them")
            jobs.append(_from_yaml(item) if is_yaml else item)
    if not jobs:
        raise JobFileError(f"{source}: no jobs found")
    return jobs


def _job_path(name: str) -> str:
    return f"/v1/jobs/{name}"


@app.command("list")
def list_jobs(
    q: Annotated[
        str | None, typer.Option("--q", help="Only jobs whose name or displayname contains this.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only jobs with this status: success, failed, partially_failed, ..."),
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", help="Only jobs with metadata k=v.")
    ] = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """List jobs."""
    query: list[tuple[str, str]] = []
    if q is not None:
        query.append(("q", q))
    if status is not None:
        query.append(("status", status))
    for pair in metadata or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"invalid --metadata {pair!r}: expected key=value", 2)
        query.append((f"metadata[{key}]", value))
    try:
        jobs = (
            DkronClient(address, token=token, ca_file=ca_file).get("/v1/jobs", "list jobs", query)
            or []
        )
    except ApiError as exc:
        fail(str(exc))
    if as_json:
        echo_json(jobs)
        return
    if not jobs:
        typer.echo("no jobs")
        return
    rows = [
        [
            j.get("name", ""),
            j.get("schedule", "") or ("after " + j["parent_job"] if j.get("parent_job") else ""),
            j.get("executor", ""),
            j.get("status") or "untriggered",
            "yes" if j.get("disabled") else "no",
            j.get("success_count", 0),
            j.get("error_count", 0),
            short_time(j.get("next")),
        ]
        for j in jobs
    ]
    header = ["NAME", "SCHEDULE", "EXECUTOR", "STATUS", "DISABLED", "SUCCESS", "ERROR", "NEXT"]
    typer.echo(table(rows, header))


def _show_job(job: dict[str, Any]) -> None:
    lines = [
        ("name", job.get("name", "")),
        ("displayname", job.get("displayname", "")),
        ("schedule", job.get("schedule", "")),
        ("timezone", job.get("timezone", "")),
        ("parent_job", job.get("parent_job", "")),
        ("executor", job.get("executor", "")),
        ("concurrency", job.get("concurrency", "")),
        ("disabled", "yes" if job.get("disabled") else "no"),
        ("status", job.get("status") or "untriggered"),
        ("success_count", job.get("success_count", 0)),
        ("error_count", job.get("error_count", 0)),
        ("last_success", short_time(job.get("last_success"))),
        ("last_error", short_time(job.get("last_error"))),
        ("next", short_time(job.get("next"))),
        ("retries", job.get("retries", 0)),
    ]
    shown = [(k, v) for k, v in lines if v not in ("", None)]
    width = max(len(k) for k, _ in shown)
    for key, value in shown:
        typer.echo(f"{key.ljust(width)}  {value}")
    for section in ("executor_config", "tags", "metadata"):
        values = job.get(section) or {}
        if values:
            typer.echo(f"{section}:")
            for key, value in sorted(values.items()):
                typer.echo(f"  {key}: {value}")
    processors = job.get("processors") or {}
    if processors:
        typer.echo("processors: " + ", ".join(sorted(processors)))
    dependents = job.get("dependent_jobs") or []
    if dependents:
        typer.echo("dependent_jobs: " + ", ".join(dependents))


@app.command("get")
def get_job(
    name: Annotated[str, typer.Argument(help="Job name.")],
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Show one job."""
    try:
        job = DkronClient(address, token=token, ca_file=ca_file).get(
            _job_path(name), f"get job {name!r}"
        )
    except ApiError as exc:
        fail(str(exc))
    if as_json:
        echo_json(job)
    else:
        _show_job(job)


@app.command("apply")
def apply_jobs(
    file: Annotated[str, typer.Option("--file", "-f", help="JSON or YAML job(s); - reads stdin.")],
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
) -> None:
    """Create or update jobs from a file (one job or a list). Stops at the first error."""
    source = "stdin" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror or exc}", 2)
    except UnicodeDecodeError:
        fail(f"cannot read {source}: not UTF-8 text", 2)
    try:
        jobs = load_job_documents(text, source)
    except JobFileError as exc:
        fail(str(exc), 2)
    client = DkronClient(address, token=token, ca_file=ca_file)
    for index, job in enumerate(jobs, 1):
        name = job.get("name")
        label = repr(name) if isinstance(name, str) and name else f"#{index}"
        existed = False
        if isinstance(name, str) and name and "/" not in name:
            try:
                client.get(_job_path(name), f"get job {label}")
                existed = True
            except ApiError as exc:
                if exc.status != 404:
                    fail(str(exc))
        body = json.dumps(job, ensure_ascii=False).encode()
        try:
            client.call("POST", "/v1/jobs", f"apply job {label}", body=body)
        except ApiError as exc:
            fail(str(exc))
        typer.echo(f"job {label} {'updated' if existed else 'created'}")


@app.command("delete")
def delete_job(
    name: Annotated[str, typer.Argument(help="Job name.")],
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Delete a job and its executions."""
    try:
        job = DkronClient(address, token=token, ca_file=ca_file).call(
            "DELETE", _job_path(name), f"delete job {name!r}"
        )
    except ApiError as exc:
        fail(str(exc))
    if as_json:
        echo_json(job)
    else:
        typer.echo(f"job {name!r} deleted")


@app.command("toggle")
def toggle_job(
    name: Annotated[str, typer.Argument(help="Job name.")],
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Enable a disabled job, or disable an enabled one."""
    try:
        job = DkronClient(address, token=token, ca_file=ca_file).call(
            "POST", f"{_job_path(name)}/toggle", f"toggle job {name!r}"
        )
    except ApiError as exc:
        fail(str(exc))
    if as_json:
        echo_json(job)
    else:
        state = "disabled" if job and job.get("disabled") else "enabled"
        typer.echo(f"job {name!r} {state}")


@app.command("run")
def run_job(
    name: Annotated[str, typer.Argument(help="Job name.")],
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Stream the execution's output; exit status = its success."),
    ] = False,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Run a job now."""
    client = DkronClient(address, token=token, ca_file=ca_file)
    executions_path = f"{_job_path(name)}/executions"
    try:
        before: set[str] = set()
        if follow:
            listed = client.get(executions_path, f"list executions of {name!r}") or []
            before = {e.get("id", "") for e in listed}
        job = client.call("POST", f"{_job_path(name)}/run", f"run job {name!r}")
    except ApiError as exc:
        fail(str(exc))
    if not follow:
        if as_json:
            echo_json(job)
        else:
            typer.echo(f"job {name!r} started")
        return
    try:
        execution_id = _wait_for_new_execution(client, executions_path, name, before)
        execution, error = _follow(client, name, execution_id)
    except ApiError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        # Only the watching stops; the execution carries on on the server.
        fail("stopped following; the execution keeps running on the server", 130)
    if as_json:
        echo_json(execution)
    if not execution.get("success"):
        detail = f": {error}" if error else ""
        typer.echo(f"dkronctl: execution {execution_id} of job {name!r} failed{detail}", err=True)
        raise typer.Exit(1)


def _wait_for_new_execution(client: DkronClient, path: str, name: str, before: set[str]) -> str:
    deadline = time.monotonic() + _FIND_EXECUTION_TIMEOUT
    while True:
        listed = client.get(path, f"list executions of {name!r}") or []
        new = [e for e in listed if e.get("id") and e["id"] not in before]
        if new:
            first = min(new, key=lambda e: (e.get("attempt", 1), e.get("started_at", "")))
            return str(first["id"])
        if time.monotonic() > deadline:
            raise ApiError(
                f"run job {name!r} failed: no execution started within "
                f"{_FIND_EXECUTION_TIMEOUT:g}s (is the job forbid and already running?)"
            )
        time.sleep(_POLL_INTERVAL)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _follow(client: DkronClient, name: str, execution_id: str) -> tuple[dict[str, Any], str]:
    """Stream the output live; fall back to polling if the stream is unavailable."""
    path = f"{_job_path(name)}/executions/{execution_id}"
    streamed: list[str] = []
    final: dict[str, Any] | None = None
    try:
        for event, data in client.events(f"{path}/stream", f"follow execution {execution_id}"):
            payload = json.loads(data)
            if not isinstance(payload, dict):
                continue
            if event == "done":
                final = payload
                break
            chunk = str(payload.get("output") or "")
            if chunk:
                streamed.append(chunk)
                _write(chunk)
    except ApiError as exc:
        # A run that finished before we connected may no longer be streamable.
        if exc.status not in (404, 410):
            raise
    except ValueError:
        pass  # a garbled event: the polling below still gets the result
    if final is None:
        final = _poll_until_finished(client, path, execution_id)
    return final, _write_rest(final, "".join(streamed))


def _poll_until_finished(client: DkronClient, path: str, execution_id: str) -> dict[str, Any]:
    while True:
        execution: dict[str, Any] = client.get(path, f"get execution {execution_id}")
        if execution.get("finished_at") not in (None, "", "0001-01-01T00:00:00Z"):
            return execution
        time.sleep(_POLL_INTERVAL * 2)


def _write_rest(execution: dict[str, Any], streamed: str) -> str:
    """Print what the stream did not deliver; return an error line it never showed."""
    output = str(execution.get("output") or "")
    if not streamed:
        _write(output)
    elif output.startswith(streamed):
        _write(output[len(streamed) :])
    elif output.endswith(streamed):
        # A failed execution's stored output leads with "<error>\n".
        return output[: -len(streamed)].strip()
    return ""
