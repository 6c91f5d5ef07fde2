"""``dkronctl plugins``: what operators run after dropping a binary into plugins.d."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.config import SETTINGS_BY_NAME
from core.plugins.discovery import DEFAULT_PLUGIN_DIR, default_search_path, discover

if TYPE_CHECKING:
    from core.plugins.probe import ProbeResult

__all__ = ["app"]

app = typer.Typer(help="Inspect and run executor/processor plugins.", no_args_is_help=True)

# The agent's setting, read from its flag or variable (not the agent's config file).
_PLUGIN_DIR = SETTINGS_BY_NAME["plugin_dir"]
PluginDir = Annotated[
    Path, typer.Option(_PLUGIN_DIR.option, envvar=_PLUGIN_DIR.env, help=_PLUGIN_DIR.help)
]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


@app.command("list")
def list_plugins(
    plugin_dir: PluginDir = Path(DEFAULT_PLUGIN_DIR),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    no_probe: Annotated[
        bool, typer.Option("--no-probe", help="Do not start the plugins to check them.")
    ] = False,
    start_timeout: Annotated[float, typer.Option(help="Seconds to wait for a handshake.")] = 10.0,
) -> None:
    """List discovered plugins and probe each one live (handshake, protocol, services)."""
    search_path = default_search_path(plugin_dir)
    found = discover(search_path)
    binaries = list(found.plugins.values())

    from core.plugins.probe import probe  # starts gRPC: only for this command

    async def probe_all() -> list[ProbeResult | None]:
        if no_probe:
            return [None] * len(binaries)
        return list(await asyncio.gather(*(probe(b, start_timeout) for b in binaries)))

    results = asyncio.run(probe_all())
    records = []
    for binary, result in zip(binaries, results, strict=True):
        record: dict[str, object] = {
            "kind": binary.kind,
            "name": binary.name,
            "path": str(binary.path),
            "directory": str(binary.directory),
        }
        if result is not None:
            record["probe"] = asdict(result)
        records.append(record)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "search_path": [str(p) for p in search_path],
                    "plugins": records,
                    "skipped": [{"path": str(p), "reason": r} for p, r in found.skipped],
                    "shadowed": [
                        {"name": old.name, "path": str(old.path), "by": str(new.path)}
                        for old, new in found.shadowed
                    ],
                },
                indent=2,
            )
        )
    else:
        rows = []
        for binary, result in zip(binaries, results, strict=True):
            if result is None:
                status, protocol, services = "-", "-", "-"
            elif result.ok:
                status = f"ok ({result.start_ms:g} ms)"
                protocol = f"{result.protocol}/{result.network} v{result.app_version}"
                services = ",".join(s for s in result.services if not _infrastructure(s)) or "?"
            else:
                status, protocol, services = "FAILED", "-", "-"
            rows.append([binary.kind, binary.name, status, protocol, services, str(binary.path)])
        header = ["KIND", "NAME", "HANDSHAKE", "PROTOCOL", "SERVICES", "PATH"]
        typer.echo(_table(rows, header) if rows else "no plugins found")
        for binary, result in zip(binaries, results, strict=True):
            if result is not None and not result.ok:
                typer.echo(f"{binary.kind} {binary.name!r} failed: {result.error}", err=True)
        for path, reason in found.skipped:
            typer.echo(f"skipped {path}: {reason}", err=True)
        typer.echo("searched: " + ", ".join(str(p) for p in search_path), err=True)
    if any(r is not None and not r.ok for r in results):
        raise typer.Exit(1)


def _infrastructure(service: str) -> bool:
    return service.startswith(("plugin.", "grpc."))


def _parse_config(pairs: list[str]) -> dict[str, str]:
    config: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--config")
        config[key] = value
    return config


@app.command("exec")
def exec_plugin(
    name: Annotated[
        str, typer.Argument(help="Executor name, e.g. shell for dkron-executor-shell.")
    ],
    config: Annotated[
        list[str] | None,
        typer.Option("--config", "-c", help="executor_config entry key=value (repeatable)."),
    ] = None,
    job: Annotated[str, typer.Option("--job", help="Job name passed to the plugin.")] = "manual",
    timeout: Annotated[
        float | None, typer.Option(help="Seconds before the execution is failed.")
    ] = None,
    plugin_dir: PluginDir = Path(DEFAULT_PLUGIN_DIR),
) -> None:
    """Run one execution through the real plugin; output streams as it arrives."""
    from core.plugins.runtime import PluginRuntime, RuntimeSettings  # gRPC: this command only

    settings = RuntimeSettings(plugin_dir=plugin_dir, eager=False, load_entry_points=False)
    executor_config = _parse_config(config or [])
    streamed = bytearray()  # what the status helper showed on stdout as it came

    def show(chunk: bytes, is_error: bool) -> None:
        target = sys.stderr.buffer if is_error else sys.stdout.buffer
        if not is_error:
            streamed.extend(chunk)
        target.write(chunk)
        target.flush()

    def show_final(output: bytes) -> None:
        # A plugin may stream updates and also return its output (a Go plugin's final
        # output differs from its updates): show what the stream did not already show.
        if output.startswith(streamed):
            rest = output[len(streamed) :]
        else:
            rest = (b"" if not streamed or streamed.endswith(b"\n") else b"\n") + output
        sys.stdout.buffer.write(rest)
        sys.stdout.flush()

    async def run() -> bool:
        async with PluginRuntime(settings) as runtime:
            outcome = await runtime.execute(
                name, job, executor_config, on_output=show, timeout=timeout
            )
        if outcome.success:
            show_final(outcome.output)
            return True
        # The outcome leads with "<error>\n" unless the output cap cut it off.
        head = outcome.error.encode() + b"\n"
        output = outcome.output
        show_final(output[len(head) :] if output.startswith(head) else output)
        typer.echo(f"dkronctl: execution failed: {outcome.error}", err=True)
        return False

    logging.getLogger("dkron").setLevel(logging.ERROR)
    if not asyncio.run(run()):
        raise typer.Exit(1)
