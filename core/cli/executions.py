"""``dkronctl executions``: a job's execution history."""

from __future__ import annotations

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

__all__ = ["app"]

app = typer.Typer(help="Inspect a job's executions.", no_args_is_help=True)

_ZERO_TIME = "0001-01-01T00:00:00Z"
_OUTPUT_COLUMN = 50


def _result(execution: dict[str, Any]) -> str:
    if execution.get("finished_at") in (None, "", _ZERO_TIME):
        return "running"
    return "success" if execution.get("success") else "failed"


def _last_line(output: object) -> str:
    lines = [line for line in str(output or "").splitlines() if line.strip()]
    text = lines[-1].strip() if lines else ""
    return text if len(text) <= _OUTPUT_COLUMN else text[: _OUTPUT_COLUMN - 3] + "..."


@app.command("list")
def list_executions(
    job: Annotated[str, typer.Argument(help="Job name.")],
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the N most recent.")
    ] = None,
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """List a job's executions, most recent first."""
    query = [("_sort", "started_at"), ("_order", "DESC")]
    if not as_json:
        query.append(("output_size_limit", "200"))  # the table shows only the last line
    try:
        executions = (
            DkronClient(address, token=token, ca_file=ca_file).get(
                f"/v1/jobs/{job}/executions", f"list executions of {job!r}", query
            )
            or []
        )
    except ApiError as exc:
        fail(str(exc))
    # Sorted here too: Dkron's sort compares stored text, and the limit needs newest first.
    executions.sort(key=lambda e: str(e.get("started_at", "")), reverse=True)
    if limit is not None:
        executions = executions[:limit]
    if as_json:
        echo_json(executions)
        return
    if not executions:
        typer.echo(f"no executions of job {job!r}")
        return
    rows = [
        [
            e.get("id", ""),
            short_time(e.get("started_at")),
            short_time(e.get("finished_at")),
            _result(e),
            e.get("attempt", 1),
            e.get("node_name", ""),
            _last_line(e.get("output")),
        ]
        for e in executions
    ]
    header = ["ID", "STARTED", "FINISHED", "RESULT", "ATTEMPT", "NODE", "OUTPUT (LAST LINE)"]
    typer.echo(table(rows, header))


@app.command("get")
def get_execution(
    job: Annotated[str, typer.Argument(help="Job name.")],
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id.")],
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Show one execution with its full output."""
    try:
        execution = DkronClient(address, token=token, ca_file=ca_file).get(
            f"/v1/jobs/{job}/executions/{execution_id}", f"get execution {execution_id}"
        )
    except ApiError as exc:
        fail(str(exc))
    if as_json:
        echo_json(execution)
        return
    fields = [
        ("id", execution.get("id", "")),
        ("job", execution.get("job_name", job)),
        ("result", _result(execution)),
        ("started", short_time(execution.get("started_at"))),
        ("finished", short_time(execution.get("finished_at"))),
        ("node", execution.get("node_name", "")),
        ("attempt", execution.get("attempt", 1)),
        ("group", execution.get("group", "")),
    ]
    for key, value in fields:
        typer.echo(f"{key.ljust(8)}  {value}")
    typer.echo("output:")
    output = str(execution.get("output") or "")
    typer.echo(output, nl=not output.endswith("\n"))
