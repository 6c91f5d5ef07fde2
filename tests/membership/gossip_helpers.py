"""Helpers for the membership tests: free ports and quick gossip timings."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from support import REPO_ROOT, wait_for
from support import free_gossip_port as free_port

from core.membership import Gossip, MemberInfo

__all__ = [
    "FAIL_DEADLINE",
    "FAST",
    "MakeNode",
    "free_port",
    "gossip_child",
    "status_of",
    "view",
]

MakeNode = Callable[..., Coroutine[Any, Any, Gossip]]

# Quick timings so failures show within about two seconds.
FAST: dict[str, Any] = {
    "ping_interval": 0.2,
    "ping_timeout": 0.1,
    "suspect_timeout": 1.0,
    "sync_interval": 0.1,
}
# ping_interval*2 + ping and ping-req timeouts + suspect_timeout, plus slack for a
# loaded machine and for random probe order with several members.
FAIL_DEADLINE = 0.2 * 2 + 0.1 * 2 + 1.0 + 2.5


def view(node: Gossip) -> dict[str, MemberInfo]:
    return {m.name: m for m in node.members()}


def status_of(node: Gossip, name: str) -> str | None:
    member = view(node).get(name)
    return None if member is None else member.status


@contextlib.asynccontextmanager
async def gossip_child(
    script: str, seed: str, nodes: list[Gossip]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A Gossip node named "child" in its own process, joined through ``seed`` and seen
    alive by ``nodes``; killed and reaped on the way out."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(free_port()), seed,
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 15)).strip() == b"joined 1"
        await wait_for(lambda: all(status_of(n, "child") == "alive" for n in nodes), timeout=5)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
