"""Fixtures: agents that are always killed and reaped, whatever the test does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_process import Agent


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def make(name: str = "agent") -> Agent:
        workdir = tmp_path / name
        workdir.mkdir()
        agent = Agent(workdir)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.kill9()


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One agent for the client-command tests of a module (starting one costs seconds)."""
    agent = Agent(tmp_path_factory.mktemp("shared-agent"))
    try:
        agent.start()
        yield agent
    finally:
        agent.kill9()
