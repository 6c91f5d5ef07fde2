"""The job indexes (core.store.index) answer every list query exactly as a pass over all
jobs would, and a page is found without reading every job."""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.jobs.model import Execution, Job
from core.store.codec import read_snapshot, write_snapshot
from core.store.commands import (
    Command,
    DeleteExecutions,
    DeleteJob,
    FinishExecution,
    SetJob,
    SetNext,
    StartExecution,
)
from core.store.state import SORTABLE_JOB_FIELDS, JobQuery, QueryError, StoreError, StoreState

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DISPLAYNAMES = ["", "Alpha", "alpha", "ALPHA", "beta", "Beta job", "gamma", "zeta"]
SCHEDULES = ["@every 1m", "@every 1s", "@manually", "0 0 * * * *", "@Every 5m"]
META_KEYS = ["team", "env", "tier"]
META_VALUES = ["a", "b", "c"]
# Few distinct times, so ties (broken by name) are common.
TIMES = [T0 + timedelta(minutes=m) for m in range(4)]
STATUSES = ["untriggered", "success", "failed", "partially_failed", "running", ""]


def reference(jobs: dict[str, Job], query: JobQuery) -> tuple[list[str], int]:
    """The list as a straightforward pass over all jobs gives it (the semantics the
    store had before it had indexes)."""

    def matches(job: Job) -> bool:
        if query.metadata:
            if not job.metadata:
                return False
            if any(job.metadata.get(k) != v for k, v in query.metadata.items()):
                return False
        if query.q and query.q not in job.name and query.q not in job.displayname:
            return False
        if query.status is not None:
            wanted = "" if query.status == "untriggered" else query.status
            if job.status != wanted:
                return False
        return query.disabled is None or str(job.disabled).lower() == query.disabled

    def key(job: Job) -> Any:
        value = getattr(job, sort)
        if isinstance(value, str):
            value = value.lower()
        return (value is not None, value if value is not None else 0)

    sort = "name" if query.sort in ("id", "") else query.sort
    matched = [jobs[name] for name in sorted(jobs) if matches(jobs[name])]
    if sort == "name":
        ordered = matched[::-1] if query.descending else matched
    else:
        ordered = sorted(matched, key=key, reverse=query.descending)  # stable: ties by name
    total = len(matched)
    end = total if query.end is None else min(query.end, total)
    if query.start > end and query.start != 0:
        raise QueryError(f"_start ({query.start}) is past _end ({end})")
    start = min(query.start, end)
    return [job.name for job in ordered[start:end]], total


def random_job(rng: random.Random, name: str) -> Job:
    metadata = {k: rng.choice(META_VALUES) for k in rng.sample(META_KEYS, rng.randint(0, 3))}
    return Job(
        name=name,
        displayname=rng.choice(DISPLAYNAMES),
        schedule=rng.choice(SCHEDULES),
        executor="shell",
        executor_config={"command": "true"},
        metadata=metadata or None,
        disabled=rng.random() < 0.3,
        next=rng.choice(TIMES),
    )


def random_changes(rng: random.Random, state: StoreState, count: int) -> Iterator[Command]:
    names = [f"job-{n:03d}" for n in range(120)] + ["Job-Upper", "job_x", "a", "z"]
    clock = 0
    for _ in range(count):
        existing = sorted(state.jobs)
        roll = rng.random()
        if roll < 0.35 or not existing:
            yield SetJob(random_job(rng, rng.choice(names)), merge=rng.random() < 0.5)
        elif roll < 0.45:
            yield DeleteJob(rng.choice(existing))
        elif roll < 0.75:
            name = rng.choice(existing)
            clock += 1
            started = T0 + timedelta(seconds=clock)
            node = rng.choice(["n1", "n2"])
            group = rng.randint(0, 2)
            yield StartExecution(
                Execution(job_name=name, started_at=started, node_name=node, group=group),
                check_forbid=False,
            )
            yield FinishExecution(
                Execution(
                    job_name=name,
                    started_at=started,
                    finished_at=rng.choice(TIMES),  # ties of last_success / last_error
                    success=rng.random() < 0.6,
                    node_name=node,
                    group=group,
                    attempt=1,
                )
            )
        elif roll < 0.93:
            picked = rng.sample(existing, min(len(existing), rng.randint(1, 5)))
            yield SetNext(tuple((n, rng.choice([*TIMES, None])) for n in picked))
        else:
            yield DeleteExecutions(rng.choice(existing))


def random_query(rng: random.Random) -> JobQuery:
    metadata = {k: rng.choice(META_VALUES) for k in rng.sample(META_KEYS, rng.randint(0, 2))}
    if rng.random() < 0.5:
        metadata = {}
    start = rng.choice([0, 0, 0, 1, 5, 20, 60])
    end = rng.choice([None, start, start + 1, start + 10, start + 25, start + 500])
    return JobQuery(
        metadata=metadata,
        q=rng.choice(["", "", "", "job-0", "alpha", "1", "Job", "nothing"]),
        status=rng.choice([None, None, *STATUSES]),
        disabled=rng.choice([None, None, "true", "false"]),
        sort=rng.choice(["id", "", *SORTABLE_JOB_FIELDS]),
        descending=rng.random() < 0.5,
        start=start,
        end=end,
    )


def assert_same(state: StoreState, query: JobQuery) -> None:
    try:
        expected = reference(state.jobs, query)
    except QueryError as exc:
        with pytest.raises(QueryError) as raised:
            state.list_jobs(query)
        assert str(raised.value) == str(exc)
        return
    page, total = state.list_jobs(query)
    assert ([job.name for job in page], total) == expected, query
    assert all(job is state.jobs[job.name] for job in page)


def apply(state: StoreState, command: Command) -> None:
    # A refused command (a delete of a job with children, say) changes nothing.
    with contextlib.suppress(StoreError):
        state.apply(command)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_indexed_lists_equal_a_pass_over_all_jobs(seed: int) -> None:
    rng = random.Random(seed)
    state = StoreState(max_history=5)
    queries = 0
    for command in random_changes(rng, state, 1500):
        apply(state, command)
        for _ in range(3):
            assert_same(state, random_query(rng))
            queries += 1
    # The run went through the shapes that matter: many jobs, statuses, both ways.
    assert len(state.jobs) > 60
    assert {job.status for job in state.jobs.values()} >= {"", "success", "failed"}
    assert queries >= 4500


def test_a_restored_state_lists_as_the_original() -> None:
    rng = random.Random(7)
    state = StoreState()
    for command in random_changes(rng, state, 800):
        apply(state, command)
    # Through the snapshot file's encoding, as a restart or an installed snapshot does.
    buffer = io.BytesIO()
    write_snapshot(buffer, state.snapshot_sections(), None)
    _, sections = read_snapshot(io.BytesIO(buffer.getvalue()), "snapshot")
    restored = StoreState()
    restored.restore_sections(sections)
    for _ in range(300):
        query = random_query(rng)
        assert_same(state, query)
        assert_same(restored, query)
    # And it keeps following changes after the restore.
    for command in random_changes(rng, restored, 300):
        apply(restored, command)
        assert_same(restored, random_query(rng))


class ReadCounter(dict[str, Job]):
    """The state's job map, counting which jobs a query reads."""

    def __init__(self, jobs: dict[str, Job]) -> None:
        super().__init__(jobs)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Job:
        self.read.add(name)
        return super().__getitem__(name)


def test_a_filtered_sorted_page_reads_about_the_page_not_every_job() -> None:
    state = StoreState()
    for number in range(2000):
        state.apply(
            SetJob(
                Job(
                    name=f"job-{number:04d}",
                    displayname=f"Job {1999 - number:04d}",
                    schedule="@every 1m",
                    executor="shell",
                    metadata={"team": "rare" if number % 400 == 0 else "common"},
                    disabled=number % 2 == 0,
                )
            )
        )
    counter = ReadCounter(state.jobs)
    state.jobs = counter
    queries = [
        JobQuery(sort="displayname", end=25),
        JobQuery(sort="displayname", descending=True, start=100, end=125),
        JobQuery(metadata={"team": "common"}, sort="displayname", end=25),
        JobQuery(metadata={"team": "rare"}, sort="next", end=25),
        JobQuery(metadata={"team": "common"}, disabled="true", sort="success_count", end=25),
        JobQuery(status="untriggered", sort="schedule", descending=True, end=25),
    ]
    for query in queries:
        counter.read.clear()
        page, total = state.list_jobs(query)
        assert ([j.name for j in page], total) == reference(dict(counter), query)
        # The page's jobs and, at most, the few matches sorted to find it.
        assert len(counter.read) <= 25, (query, len(counter.read))
