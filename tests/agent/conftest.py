"""Real agent-run services: a gRPC server on 127.0.0.1:0 serving AgentRunService with the
real shell executor plugin, and a real grpc.aio client per node."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Node
from support import BIN_DIR, installed_script

from core.agent.service import AgentRunService
from core.plugins.runtime import PluginRuntime, RuntimeSettings


def _settings(tmp_path: Path) -> RuntimeSettings:
    return RuntimeSettings(plugin_dir=tmp_path / "plugins", load_entry_points=False, eager=False)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[PluginRuntime]:
    """A started plugin runtime that finds the installed shell executor."""
    installed_script("dkron-executor-shell")
    async with PluginRuntime(_settings(tmp_path), search_path=[BIN_DIR]) as started:
        yield started


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start nodes (``make_node(**service_kwargs)``); all are stopped after the test."""
    installed_script("dkron-executor-shell")
    nodes: list[Node] = []

    async def make(name: str = "agent1", **service_kwargs: Any) -> Node:
        runtime = PluginRuntime(_settings(tmp_path), search_path=[BIN_DIR])
        await runtime.start()
        service = AgentRunService(runtime, name, **service_kwargs)
        node = Node(name, runtime, service)
        nodes.append(node)
        await node.start()
        return node

    yield make
    for node in reversed(nodes):
        await node.stop()
