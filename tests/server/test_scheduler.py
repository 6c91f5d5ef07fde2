"""The heap scheduler with an explicit clock: firing order, versions, misfire policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.jobs.model import Job
from core.scheduler.scheduler import Fire, Scheduler

T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def ignore(_: list[Fire]) -> None:
    return None


def job(name: str, schedule: str, **fields: object) -> Job:
    return Job(name=name, schedule=schedule, executor="shell", **fields)  # type: ignore[arg-type]


def test_due_jobs_fire_in_time_order_and_reschedule() -> None:
    clock = Clock(T0)
    scheduler = Scheduler(ignore, clock)
    assert scheduler.set_job(job("a", "@every 10s")) is not None
    scheduler.set_job(job("b", "*/5 * * * * *"))
    clock.now = T0 + timedelta(seconds=10)
    fires = scheduler._due(clock.now)
    times = [f.scheduled_at for f in fires]
    assert times == sorted(times)
    assert {f.job_name for f in fires} == {"a", "b"}
    assert all(f.scheduled_at <= clock.now for f in fires)
    assert scheduler.next_of("b") == T0 + timedelta(seconds=15)


def test_updates_and_removal_supersede_old_entries() -> None:
    clock = Clock(T0)
    scheduler = Scheduler(ignore, clock)
    scheduler.set_job(job("a", "*/5 * * * * *"))
    scheduler.set_job(job("a", "*/7 * * * * *"))  # replaces the entry
    scheduler.set_job(job("gone", "*/5 * * * * *"))
    scheduler.remove_job("gone")
    clock.now = T0 + timedelta(seconds=60)
    fires = scheduler._due(clock.now)
    assert {f.job_name for f in fires} == {"a"}
    assert all(f.scheduled_at.second % 7 == 0 for f in fires)
    assert len(scheduler) == 1


def test_disabled_children_and_manual_jobs_are_not_scheduled() -> None:
    scheduler = Scheduler(ignore, Clock(T0))
    assert scheduler.set_job(job("off", "@every 1s", disabled=True)) is None
    assert scheduler.set_job(job("child", "", parent_job="p")) is None
    assert scheduler.set_job(job("manual", "@manually")) is None
    assert scheduler._due(T0 + timedelta(days=1)) == []


def test_misfire_skip_drops_missed_ticks() -> None:
    clock = Clock(T0 + timedelta(seconds=30))  # the minute's tick is 30 s late
    scheduler = Scheduler(ignore, clock)
    owed = scheduler.load([job("j", "0 * * * * *")], {"j": T0 - timedelta(minutes=10)})
    assert owed == []
    assert scheduler.next_of("j") == T0 + timedelta(minutes=1)


def test_skip_still_runs_a_tick_only_seconds_late() -> None:
    # A leader change of a second or two makes a tick late, not missed.
    clock = Clock(T0 + timedelta(seconds=2))
    scheduler = Scheduler(ignore, clock)
    every_second = job("s", "* * * * * *")
    owed = scheduler.load([every_second], {"s": T0 - timedelta(seconds=1)})
    assert owed == [Fire("s", T0 + timedelta(seconds=2), catch_up=True)]
    # Never a tick at or before the last one launched.
    assert scheduler.load([every_second], {"s": T0 + timedelta(seconds=2)}) == []


def test_misfire_run_once_runs_the_latest_missed_tick_once() -> None:
    scheduler = Scheduler(ignore, Clock(T0))
    last = T0 - timedelta(minutes=10)
    owed = scheduler.load(
        [job("j", "0 * * * * *", misfire_policy="run_once", misfire_grace="1h")], {"j": last}
    )
    assert owed == [Fire("j", T0, catch_up=True)]


def test_misfire_run_once_respects_the_grace() -> None:
    scheduler = Scheduler(ignore, Clock(T0))
    last = T0 - timedelta(hours=3)
    stale = job("j", "0 0 * * * *", misfire_policy="run_once", misfire_grace="30m")
    assert scheduler.load([stale], {"j": last}) == []


def test_starts_at_and_expires_at_bound_the_schedule() -> None:
    scheduler = Scheduler(ignore, Clock(T0))
    later = T0 + timedelta(hours=2)
    assert scheduler.set_job(job("s", "@every 1m", starts_at=later)) >= later
    assert scheduler.set_job(job("e", "@every 1m", expires_at=T0 - timedelta(seconds=1))) is None


def test_load_forgets_jobs_that_are_gone_from_the_state() -> None:
    # A job deleted while this server followed must not fire when it leads again.
    clock = Clock(T0)
    scheduler = Scheduler(ignore, clock)
    scheduler.load([job("kept", "* * * * * *"), job("deleted", "* * * * * *")], {})
    scheduler.load([job("kept", "* * * * * *")], {})
    clock.now = T0 + timedelta(seconds=3)
    assert {f.job_name for f in scheduler._due(clock.now)} == {"kept"}
    assert len(scheduler) == 1
