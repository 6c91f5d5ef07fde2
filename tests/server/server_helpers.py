"""Helpers for the server tests (imported by name; conftest modules shadow each other)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.jobs.model import Execution
from core.plugins.runtime import RuntimeSettings
from core.server import DkronServer, ServerConfig

__all__ = ["finished", "free_port", "server_config", "wait_for"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_config(data_dir: Path, raft_port: int, **overrides: Any) -> ServerConfig:
    plugins = RuntimeSettings(plugin_dir=data_dir / "plugins", load_entry_points=False)
    return ServerConfig(
        node_name="node1",
        data_dir=data_dir,
        rpc_port=0,
        raft_port=raft_port,
        plugins=plugins,
        **overrides,
    )


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until it returns something truthy (a deadline, not a sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def finished(server: DkronServer, job: str) -> list[Execution]:
    return [e for e in server.executions(job) if e.finished_at is not None]
