"""Above capacity the dispatcher sheds by misfire policy instead of running fires late
without bound (core.dispatch.backlog)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime, timedelta

import pytest
from server_helpers import finished, wait_for

from core.dispatch.backlog import Backlog, BacklogLimits, BacklogStats
from core.jobs.model import MISFIRE_RUN_ONCE, Job


def _at(moment: datetime) -> str:
    return "@at " + moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def shell(name: str, command: str, **fields: object) -> Job:
    config = {"command": command, "shell": "true"}
    return Job(name=name, executor="shell", executor_config=config, **fields)  # type: ignore[arg-type]


async def test_a_fire_that_waits_too_long_is_shed_and_run_once_still_runs(
    make_server, caplog: pytest.LogCaptureFixture
) -> None:
    # One admission slot: "hog" holds it for 2.5 s from t0. Two jobs fire at t0+1 and
    # wait. When the slot frees, the skip-policy one has waited 1.5 s (> 0.5 s) and is
    # dropped; the run_once one runs then, late but once.
    limits = BacklogLimits(slots=1, late_after=timedelta(seconds=0.5), report_every=0.0)
    server = await make_server(dispatch=limits)
    t0 = datetime.fromtimestamp(math.ceil(time.time()) + 2, UTC)
    await server.set_job(shell("hog", "sleep 2.5", schedule=_at(t0)))
    later = _at(t0 + timedelta(seconds=1))
    await server.set_job(shell("skipper", "echo ran", schedule=later))
    await server.set_job(
        shell("keeper", "echo kept", schedule=later, misfire_policy=MISFIRE_RUN_ONCE)
    )

    with caplog.at_level(logging.WARNING, logger="dkron.dispatch"):
        kept = await wait_for(lambda: finished(server, "keeper"), timeout=15)
        await wait_for(lambda: server.dispatcher.backlog.stats().shed_total == 1, timeout=5)

    hog = finished(server, "hog")
    assert len(hog) == 1 and hog[0].finished_at is not None
    assert len(kept) == 1 and kept[0].success and kept[0].output == b"kept\n"
    assert kept[0].started_at is not None and kept[0].started_at >= hog[0].finished_at
    # The shed fire left nothing behind: no execution, no counters, no open launch.
    state = server.store.state
    assert list(state.executions_of("skipper")) == []
    assert server.get_job("skipper").error_count == 0
    await wait_for(
        lambda: not any(launch.job_name == "skipper" for launch in state.launches.values())
    )
    assert "dispatcher over capacity" in caplog.text


def _job(name: str, policy: str = "skip") -> Job:
    return Job(name=name, schedule="@every 1s", executor="shell", misfire_policy=policy)


async def test_run_once_keeps_one_waiting_fire_and_a_full_backlog_sheds_skip_fires() -> None:
    closed: list[str] = []
    backlog = Backlog(BacklogLimits(slots=1, limit=2), lambda ids: closed.extend(ids))
    now = datetime.now(UTC)
    assert await backlog.admit(_job("busy"), "busy@1", now)  # takes the only slot

    once = _job("once", MISFIRE_RUN_ONCE)
    first = asyncio.ensure_future(backlog.admit(once, "once@1", now))
    skip = asyncio.ensure_future(backlog.admit(_job("a"), "a@1", now))
    await asyncio.sleep(0)  # both are waiting now
    assert backlog.stats().waiting == 2
    # A second fire of the run_once job is the same "run once": dropped.
    assert not await backlog.admit(once, "once@2", now)
    # The backlog is full (limit 2): a skip-policy fire is dropped at once.
    assert not await backlog.admit(_job("b"), "b@1", now)
    assert closed == ["once@2", "b@1"]
    assert backlog.stats().shed_total == 2

    backlog.done()
    assert await first
    backlog.done()
    assert await skip
    backlog.done()
    assert backlog.stats() == BacklogStats(waiting=0, running=0, oldest_lag_s=0.0, shed_total=2)
