"""Execution history as compact records: what comes back is what went in, the state's
rules (trimming, double finishes, group status, launches) hold as they did with one
model per execution, and snapshots of the old layout still load."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from core.jobs.model import STATUS_PARTIALLY_FAILED, STATUS_SUCCESS, Execution, Job
from core.store import history
from core.store.codec import SNAPSHOT_FORMAT, encode_record, read_snapshot, write_snapshot
from core.store.commands import (
    FinishExecution,
    Launch,
    RecordLaunches,
    SetJob,
    StartExecution,
)
from core.store.raft import RaftConfig, RaftStore
from core.store.state import AlreadyFinished, StoreError, StoreState

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    "execution",
    [
        Execution(),  # not started: no times, id ""
        Execution(
            job_name="j", started_at=T0, finished_at=T0 + timedelta(microseconds=1),
            success=True, output=b"\x00\xffbytes", node_name="n\u00e9ud", group=-5,
            attempt=3, scheduled_at=T0, run_id="j@1", processor_errors=["a", "\ud800 bad"],
        ),
        # A fixed zone (as the API received it) comes back as that zone, not UTC.
        Execution(
            job_name="j", started_at=datetime(1960, 1, 1, 3, tzinfo=PLUS_TWO),
            scheduled_at=datetime(2026, 1, 1, tzinfo=PLUS_TWO), node_name="x-y",
            group=2**62,
        ),
    ],
)  # fmt: skip
def test_a_record_gives_back_the_execution_and_its_id(execution: Execution) -> None:
    record = history.encode(execution)
    back = history.decode(record, execution.job_name)
    assert back == execution
    for name in ("started_at", "finished_at", "scheduled_at"):
        moment, original = getattr(back, name), getattr(execution, name)
        assert (moment and moment.utcoffset()) == (original and original.utcoffset())
    assert history.record_id(record) == execution.id
    assert history.is_valid(record) and not history.is_valid(record + b"!")
    others = [history.encode(Execution(started_at=T0, node_name="other")), record]
    assert history.find(others, execution.id) == 1
    assert history.find(others, "123-nobody") == -1


def test_an_execution_costs_under_150_bytes_beside_its_output() -> None:
    executions = [
        Execution(
            job_name="job-1234", started_at=T0 + timedelta(seconds=i),
            finished_at=T0 + timedelta(seconds=i, milliseconds=5), success=True,
            output=b"x" * 32, node_name="node1", group=i, attempt=1, run_id=f"job-1234@{i}",
        )
        for i in range(2000)
    ]  # fmt: skip
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = tuple(history.encode(e) for e in executions)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == 2000
    assert used / 2000 - 32 <= 150  # a stored Execution model (and its key) took ~410


def _run(node: str, second: int, *, group: int = 1, attempt: int = 1) -> Execution:
    return Execution(
        job_name="job", started_at=T0 + timedelta(seconds=second), node_name=node,
        group=group, attempt=attempt, run_id=f"job@{group}",
    )  # fmt: skip


def _done(execution: Execution, success: bool = True, output: bytes = b"") -> Execution:
    finished = (execution.started_at or T0) + timedelta(milliseconds=5)
    return dataclasses.replace(execution, finished_at=finished, success=success, output=output)


def _state(max_history: int = 100, output_limit: int = 256_000) -> StoreState:
    state = StoreState(max_history=max_history, output_limit=output_limit)
    state.apply(SetJob(Job(name="job", schedule="@manually")))
    return state


def test_trimming_keeps_runs_in_progress_and_start_order() -> None:
    state = _state(max_history=3)
    slow = _run("a", 0, group=0)
    assert state.apply(StartExecution(slow, check_forbid=False)).accepted
    for second in range(1, 6):
        run = _run("b", second, group=second)
        state.apply(StartExecution(run, check_forbid=False))
        state.apply(FinishExecution(_done(run)))
    kept = list(state.executions_of("job"))
    assert [e.id for e in kept] == [slow.id, _run("b", 4).id, _run("b", 5).id]
    assert [e.id for e in state.running_executions()] == [slow.id]
    assert state.get_execution("job", slow.id) == slow


def test_a_second_finish_is_refused_and_counted_once() -> None:
    state = _state()
    run = _run("a", 1)
    state.apply(StartExecution(run))
    state.apply(FinishExecution(_done(run, output=b"first")))
    with pytest.raises(AlreadyFinished):
        state.apply(FinishExecution(_done(run, success=False, output=b"second")))
    assert state.jobs["job"].success_count == 1 and state.jobs["job"].error_count == 0
    [stored] = state.executions_of("job")
    assert stored.output == b"first" and stored.success


def test_group_status_counts_each_nodes_latest_attempt() -> None:
    state = _state()
    first, retry, other = _run("a", 1), _run("a", 2, attempt=2), _run("b", 1)
    for run in (first, other):
        state.apply(StartExecution(run, check_forbid=False))
    state.apply(FinishExecution(_done(first, success=False)))
    state.apply(FinishExecution(_done(other, success=True)))
    assert state.jobs["job"].status == STATUS_PARTIALLY_FAILED
    state.apply(StartExecution(retry, check_forbid=False))
    state.apply(FinishExecution(_done(retry, success=True)))
    assert state.jobs["job"].status == STATUS_SUCCESS


def test_a_launch_closes_when_its_last_target_finishes_and_output_is_capped() -> None:
    state = _state(output_limit=4)
    state.apply(RecordLaunches((Launch("job@1", "job", T0, group=1),)))
    one, two = _run("a", 1), _run("b", 1)
    for run in (one, two):
        state.apply(StartExecution(run, check_forbid=False))
    state.apply(FinishExecution(_done(one, output=b"0123456789")))
    assert "job@1" in state.launches  # b still runs it
    state.apply(FinishExecution(_done(two)))
    assert "job@1" not in state.launches
    assert state.get_execution("job", one.id).output == b"6789"  # type: ignore[union-attr]


def test_a_snapshot_with_the_old_executions_section_loads() -> None:
    # Snapshots written before compact records held each execution as a map under
    # "executions" ([job, [[id, record], ...]]); data dirs with one must still start.
    runs = [_done(_run("a", 1)), _done(_run("b", 2), success=False), _run("c", 3)]
    job = Job(name="job", schedule="@manually")
    old_sections = [
        ("jobs", [encode_record(job)]),
        ("executions", [["job", [[e.id, encode_record(e)] for e in runs]]]),
        ("running", {"job": [runs[2].id]}),
        ("launches", []),
        ("last_fire", {}),
        ("leader_term", 3),
        ("acl", {"bootstrapped": False, "policies": [], "tokens": []}),
    ]
    buffer = io.BytesIO()
    write_snapshot(buffer, iter(old_sections), None)
    _, sections = read_snapshot(io.BytesIO(buffer.getvalue()), "old snapshot")
    state = StoreState()
    state.restore_sections(sections)
    assert list(state.executions_of("job")) == runs
    assert state.running_executions() == [runs[2]] and state.leader_term == 3
    # and it is written back in the new layout, which loads the same
    again = StoreState()
    buffer = io.BytesIO()
    write_snapshot(buffer, state.snapshot_sections(), None)
    _, sections = read_snapshot(io.BytesIO(buffer.getvalue()), "new snapshot")
    assert [name for name, _ in sections][:2] == ["jobs", "history"]
    again.restore_sections(sections)
    assert again.histories == state.histories and again.running == state.running


def test_history_may_outgrow_max_history_while_every_run_is_in_progress() -> None:
    state = _state(max_history=2)
    runs = [_run(f"n{i}", i) for i in range(4)]
    for run in runs:
        assert state.apply(StartExecution(run, check_forbid=False)).accepted
    assert [e.id for e in state.executions_of("job")] == [r.id for r in runs]
    state.apply(FinishExecution(_done(runs[2])))  # now one may go: the finished one
    assert [e.id for e in state.executions_of("job")] == [runs[0].id, runs[1].id, runs[3].id]


def test_an_execution_that_cannot_be_stored_is_refused_and_changes_nothing() -> None:
    state = _state()
    huge = dataclasses.replace(_run("a", 1), attempt=2**64)
    with pytest.raises(StoreError, match="cannot be stored"):
        state.apply(StartExecution(huge))
    assert state.running == {} and list(state.executions_of("job")) == []
    assert state.get_execution("job", f"{10**30}-a") is None  # an id out of any range


FIXTURE_V1 = Path(__file__).parent.parent / "fixtures" / "datadir-v1"


async def test_a_format_1_data_dir_loads_with_its_history_and_is_written_as_format_2(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(FIXTURE_V1, data_dir)
    config = RaftConfig(bind="127.0.0.1:47314", data_dir=data_dir)  # as in the data
    store = RaftStore(config)
    await store.start()
    try:
        state = store.state
        assert sorted(state.jobs) == ["after-snapshot", "child", "parent"]  # journal tail too
        t0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
        first, second = state.executions_of("parent")
        assert first == Execution(
            job_name="parent", started_at=t0, finished_at=t0 + timedelta(seconds=1),
            success=True, output=b"parent-out\n", node_name="node-a", group=1, attempt=1,
            scheduled_at=t0, run_id="parent@1",
        )  # fmt: skip
        assert second.finished_at is not None and second.finished_at.utcoffset() == timedelta(
            hours=2
        )
        assert second.output == b"\xffboom" and second.processor_errors == ["log: disk full"]
        assert second.id == "1793520060000000000-node-b" and not second.success
        [child] = state.executions_of("child")  # running in the snapshot, finished after
        assert child.output == b"child-out\n" and child.success and state.running == {}
        assert state.jobs["parent"].error_count == 1 and state.jobs["parent"].success_count == 1
        expected = (dict(state.jobs), dict(state.histories))
        assert await store.compact()
    finally:
        await store.close()
    raft = data_dir / "raft"
    assert json.loads((raft / "store-format").read_text()) == {"format": SNAPSHOT_FORMAT}
    assert (raft / "snapshot.bin").read_bytes()[16:20] == SNAPSHOT_FORMAT.to_bytes(4, "big")
    again = RaftStore(config)
    await again.start()
    try:
        assert (dict(again.state.jobs), dict(again.state.histories)) == expected
    finally:
        await again.close()
