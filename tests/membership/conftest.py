"""Real Gossip nodes on loopback, closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from gossip_helpers import FAST, MakeNode, free_port

from core.membership import Gossip


@pytest.fixture
async def make_node() -> AsyncIterator[MakeNode]:
    """Start a Gossip node: make_node("n1", tags={...}, port=..., **Gossip kwargs)."""
    nodes: list[Gossip] = []

    async def make(
        name: str, *, tags: dict[str, str] | None = None, port: int | None = None, **kw: Any
    ) -> Gossip:
        options = {**FAST, **kw}
        node = Gossip(
            node_name=name,
            bind_host="127.0.0.1",
            bind_port=free_port() if port is None else port,
            tags=tags or {},
            **options,
        )
        nodes.append(node)
        await node.start()
        return node

    yield make
    for node in nodes:
        await node.close()
