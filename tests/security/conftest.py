"""Real agents attacked from outside: a keyless one and one with a cluster key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agent_process import Agent
from attacks import CLUSTER_KEY


@pytest.fixture(scope="module")
def keyless_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("keyless"))
    try:
        agent.start()
        yield agent
    finally:
        agent.kill9()


@pytest.fixture(scope="module")
def keyed_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("keyed"))
    try:
        agent.start(env={"DKRON_ENCRYPT": CLUSTER_KEY})
        yield agent
    finally:
        agent.kill9()
