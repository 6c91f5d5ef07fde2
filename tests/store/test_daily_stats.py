"""The per-day execution counts behind /v1/stats: counted at finish, bounded, snapshotted."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime, timedelta

import pytest

from core.jobs.model import Execution, Job
from core.store.codec import CodecError, read_snapshot, write_snapshot
from core.store.commands import FinishExecution, SetJob, StartExecution
from core.store.state import STATS_DAYS, StoreState

DAY0 = datetime(2026, 1, 1, 23, 59, tzinfo=UTC)


def _run(state: StoreState, finished_at: datetime, success: bool, group: int) -> None:
    started = Execution(job_name="j", started_at=finished_at, node_name="n", group=group)
    state.apply(StartExecution(started))
    state.apply(FinishExecution(_done(started, finished_at, success)))


def _done(execution: Execution, finished_at: datetime, success: bool) -> Execution:
    return dataclasses.replace(execution, finished_at=finished_at, success=success)


def _roundtrip(state: StoreState) -> StoreState:
    buffer = io.BytesIO()
    write_snapshot(buffer, state.snapshot_sections(), None)
    _, sections = read_snapshot(io.BytesIO(buffer.getvalue()), "snapshot")
    restored = StoreState()
    restored.restore_sections(sections)
    return restored


def test_counts_by_utc_day_bounded_and_kept_in_a_snapshot() -> None:
    state = StoreState()
    state.apply(SetJob(Job(name="j", schedule="@manually")))
    _run(state, DAY0, True, 1)
    _run(state, DAY0 + timedelta(minutes=2), False, 2)  # the next UTC day
    _run(state, DAY0 + timedelta(minutes=3), True, 3)
    day0 = (DAY0.date() - datetime(1970, 1, 1).date()).days
    assert state.execution_stats(3, day0 + 1) == [
        (day0 - 1, 0, 0),
        (day0, 1, 0),
        (day0 + 1, 1, 1),
    ]
    assert _roundtrip(state).daily == state.daily

    for offset in range(STATS_DAYS + 5):
        _run(state, DAY0 + timedelta(days=offset + 2), True, 10 + offset)
    assert len(state.daily) == STATS_DAYS
    assert min(state.daily) == day0 + 7  # the oldest days were dropped


def test_a_damaged_daily_section_is_refused() -> None:
    with pytest.raises(CodecError, match="snapshot daily"):
        StoreState().restore_sections([("daily", [[1, 2]])])
