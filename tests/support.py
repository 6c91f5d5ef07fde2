"""Helpers shared by test modules across directories.

Test modules import from here, never from ``conftest``: every test directory has a
conftest.py and, without packages, they would shadow one another.
"""

from __future__ import annotations

import asyncio
import inspect
import random
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


def _ephemeral_range() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


# Ports the tests pick for servers they start. Never from the kernel's ephemeral range:
# a port picked there and bound a moment later can meanwhile be handed to any socket
# bound to port 0 (gRPC servers, clients' outgoing connections), and the server that
# wanted it then fails with "Address already in use". Below that range only other picks
# can collide, and each pick is checked free and random across ~10,000 ports.
_EPHEMERAL = _ephemeral_range()
_PICK_FROM = range(20000, min(_EPHEMERAL.start, 32768)) if _EPHEMERAL.start > 21000 else None
_picker = random.Random()


def _bindable(port: int, kinds: tuple[int, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _pick(kinds: tuple[int, ...]) -> int:
    if _PICK_FROM is None:  # an unusual ephemeral range: take the kernel's pick
        with socket.socket(socket.AF_INET, kinds[0]) as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])
    for _ in range(200):
        port = _picker.choice(_PICK_FROM)
        if _bindable(port, kinds):
            return port
    raise RuntimeError(f"no free port in {_PICK_FROM}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, outside the ephemeral range (see above)."""
    return _pick((socket.SOCK_STREAM,))


def free_gossip_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now, as gossip binds both."""
    return _pick((socket.SOCK_DGRAM, socket.SOCK_STREAM))


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
