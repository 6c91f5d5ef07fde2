"""Fixtures: real clusters that are always killed and reaped, and their logs on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cluster_harness import LIVE_CLUSTERS, Cluster


@pytest.fixture(scope="module")
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """A module's clusters (starting one costs seconds), started and formed on creation."""
    made: list[Cluster] = []

    def make(**kwargs: Any) -> Cluster:
        cluster = Cluster(tmp_path_factory.mktemp("cluster"), **kwargs)
        made.append(cluster)
        cluster.start()
        cluster.wait_formed()
        return cluster

    yield make
    for cluster in made:
        cluster.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for cluster in LIVE_CLUSTERS:
            report.sections.append((f"node logs ({cluster.workdir})", cluster.tails(60)))
