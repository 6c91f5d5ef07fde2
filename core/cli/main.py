"""The ``dkronctl`` entry point."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from core.cli import plugins

__all__ = ["app"]

app = typer.Typer(
    name="dkronctl", help="dkron-py: distributed, fault-tolerant cron.", no_args_is_help=True
)
app.add_typer(plugins.app, name="plugins")


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
    level = {"warn": "WARNING"}.get(log_level.lower(), log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command("version")
def show_version() -> None:
    """Print the version."""
    typer.echo(f"Name: dkron-py\nVersion: {_version()}\nPlugin protocol: go-plugin 1, types.v1")


if __name__ == "__main__":
    app()
