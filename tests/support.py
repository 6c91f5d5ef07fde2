"""Helpers shared by test modules across directories.

Test modules import from here, never from ``conftest``: every test directory has a
conftest.py and, without packages, they would shadow one another.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "BIN_DIR",
    "FAKES_DIR",
    "REPO_ROOT",
    "finished",
    "free_gossip_port",
    "free_port",
    "installed_script",
    "wait_for",
]

BIN_DIR = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent
FAKES_DIR = Path(__file__).resolve().parent / "fakes"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick; bind it soon)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_gossip_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now, as gossip binds both."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def installed_script(name: str) -> str:
    """Absolute path of a console script installed beside the running interpreter."""
    path = shutil.which(name, path=str(BIN_DIR)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run `pip install -e .[dev]` first")
    return path


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` (sync, or returning an awaitable) until it gives something
    truthy, and return that; fail after ``timeout`` seconds. A deadline, not a sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


def finished(server: Any, job: str) -> list[Any]:
    """A DkronServer's finished executions of ``job``, oldest first."""
    done = [e for e in server.executions(job) if e.finished_at is not None]
    return sorted(done, key=lambda e: e.started_at)
