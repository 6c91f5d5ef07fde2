"""The ``dkronctl`` entry point."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from core.cli import acl, agent, cluster, executions, jobs, plugins, raft
from core.config import LOG_LEVELS

__all__ = ["app"]

app = typer.Typer(
    name="dkronctl", help="dkron-py: distributed, fault-tolerant cron.", no_args_is_help=True
)
app.command("agent")(agent.agent)
app.add_typer(jobs.app, name="jobs")
app.add_typer(executions.app, name="executions")
app.command("members")(cluster.members)
app.command("leader")(cluster.leader)
app.command("keygen")(cluster.keygen)
app.add_typer(plugins.app, name="plugins")
app.add_typer(raft.app, name="raft")
app.add_typer(acl.app, name="acl")


def _version() -> str:
    try:
        return version("dkron-py")
    except PackageNotFoundError:
        return "unknown"


@app.callback()
def main(
    log_level: Annotated[
        str, typer.Option("--log-level", envvar="DKRON_LOG_LEVEL", help="debug|info|warn|error")
    ] = "warn",
) -> None:
    level = LOG_LEVELS.get(log_level.strip().lower())
    if level is None:
        typer.echo(
            f"dkronctl: invalid --log-level (DKRON_LOG_LEVEL) {log_level!r}: "
            "expected one of debug, info, warn, error, fatal, panic",
            err=True,
        )
        raise typer.Exit(2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command("version")
def show_version() -> None:
    """Print the version."""
    typer.echo(f"Name: dkron-py\nVersion: {_version()}\nPlugin protocol: go-plugin 1, types.v1")


if __name__ == "__main__":
    app()
