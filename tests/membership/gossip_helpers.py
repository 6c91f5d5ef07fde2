"""Helpers for the membership tests: free ports and quick gossip timings."""

from __future__ import annotations

import socket
from typing import Any

from core.membership import Gossip, MemberInfo

__all__ = ["FAIL_DEADLINE", "FAST", "free_port", "status_of", "view"]

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


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
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


def view(node: Gossip) -> dict[str, MemberInfo]:
    return {m.name: m for m in node.members()}


def status_of(node: Gossip, name: str) -> str | None:
    member = view(node).get(name)
    return None if member is None else member.status
