"""Fixtures: real ``dkronctl agent --server`` processes, always killed and reaped.

``api`` is one agent per test module (starting one costs over a second); ``fresh_agent``
makes agents for the tests that kill or restart them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# cli_helpers lives beside the CLI tests; without packages its directory is only on the
# path when pytest collected from there, so put it there for `pytest tests/e2e` too.
_CLI_TESTS = str(Path(__file__).resolve().parent.parent / "cli")
if _CLI_TESTS not in sys.path:
    sys.path.insert(0, _CLI_TESTS)

from cli_helpers import Agent  # noqa: E402
from e2e_helpers import Api  # noqa: E402


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
