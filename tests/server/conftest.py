"""A real single-node DkronServer (pysyncobj on disk, real plugin processes) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from server_helpers import free_port, server_config

from core.node import DkronServer


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[DkronServer] = []
    raft_port = free_port()

    async def make(**overrides: Any) -> DkronServer:
        server = DkronServer(server_config(tmp_path / "data", raft_port, **overrides))
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop(drain_timeout=5)
