"""Fixtures: real ``dkronctl agent --server`` processes, always killed and reaped.

``api`` is one agent per test module (starting one costs over a second); ``fresh_agent``
makes agents for the tests that kill or restart them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_process import Agent
from e2e_helpers import Api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The REST API of one agent shared by a module's tests."""
    agent = Agent(tmp_path_factory.mktemp("e2e-agent"))
    try:
        agent.start()
        yield Api(agent)
    finally:
        agent.kill9()


@pytest.fixture
def fresh_agent(tmp_path: Path) -> Iterator[Callable[[], Api]]:
    """Agents of a test's own (started by the test, which may signal or restart them)."""
    agents: list[Agent] = []

    def make() -> Api:
        workdir = tmp_path / f"agent{len(agents)}"
        workdir.mkdir()
        agent = Agent(workdir)
        agents.append(agent)
        return Api(agent)

    try:
        yield make
    finally:
        for agent in agents:
            agent.kill9()
