"""The in-memory store: the same state machine as Raft's, its events, its leadership."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from core.jobs.model import Execution, Job
from core.store import (
    ExecutionFinished,
    ExecutionStarted,
    JobChanged,
    JobDeleted,
    LeadershipChanged,
    MemoryStore,
    NotFound,
    ReplicationError,
    Store,
)
from core.store.commands import DeleteJob, FinishExecution, SetJob, StartExecution
from core.store.raft import RaftConfig, RaftStore
from core.store.state import StartResult

T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


def job(name: str = "j") -> Job:
    return Job(name=name, executor="shell", executor_config={"command": "true"})


def test_both_stores_are_stores() -> None:
    stores: list[Store] = [MemoryStore(), RaftStore(RaftConfig(bind="127.0.0.1:1"))]
    assert all(store.state is not None for store in stores)


async def test_commands_go_through_the_state_machine_as_copies() -> None:
    store = MemoryStore()
    with pytest.raises(ReplicationError):
        await store.apply(SetJob(job()))  # not started: no leader
    await store.start()
    mine = job()
    stored = await store.apply(SetJob(mine))
    assert stored == store.state.jobs["j"] and stored is not store.state.jobs["j"]
    assert store.state.jobs["j"] is not mine  # decoded from the encoded command
    with pytest.raises(NotFound):
        await store.apply(DeleteJob("missing"))
    assert store.applied_index == 2


async def test_events_follow_the_log_in_order() -> None:
    store = MemoryStore()
    seen: list[object] = []
    for kind in (
        JobChanged,
        JobDeleted,
        ExecutionStarted,
        ExecutionFinished,
        LeadershipChanged,
    ):
        store.subscribe(kind, seen.append)
    unsubscribe = store.subscribe(JobChanged, lambda event: seen.append("second handler"))
    await store.start()
    await store.apply(SetJob(job()))
    unsubscribe()
    run = Execution(job_name="j", node_name="n", group=1, attempt=1, started_at=T0)
    started: StartResult = await store.apply(StartExecution(run))
    assert started.accepted
    done = dataclasses.replace(run, finished_at=T0, success=True)
    await store.apply(FinishExecution(done))
    await store.apply(DeleteJob("j"))
    await store.close()

    kinds = [type(e).__name__ if not isinstance(e, str) else e for e in seen]
    assert kinds == [
        "LeadershipChanged",
        "JobChanged",
        "second handler",
        "ExecutionStarted",
        "ExecutionFinished",
        "JobDeleted",
        "LeadershipChanged",
    ]
    assert seen[0] == LeadershipChanged(True, 1) and seen[-1] == LeadershipChanged(False, 1)
    finished = seen[4]
    assert isinstance(finished, ExecutionFinished)
    assert finished.job.success_count == 1 and finished.execution.success
    with pytest.raises(AttributeError):
        finished.job = job()  # type: ignore[misc]  # events are frozen


async def test_regaining_leadership_is_a_new_term() -> None:
    store = MemoryStore()
    terms: list[LeadershipChanged] = []
    store.subscribe(LeadershipChanged, terms.append)
    await store.start()
    store.regain()
    assert terms == [LeadershipChanged(True, 1), LeadershipChanged(True, 2)]
    assert store.is_leader and store.term == 2
