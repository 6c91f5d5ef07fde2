"""A heap of next fire times; O(log n) per job change, firing never waits on execution.

Entries are invalidated lazily: each job carries a version, and a popped entry whose
version is stale is dropped. Due jobs are handed over in one batch per wake-up so
the caller can commit all their launch records in a single Raft command.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.cron import AfterSchedule, Schedule, ScheduleError, parse_schedule
from core.jobs.model import MISFIRE_RUN_ONCE, Job

__all__ = ["LATE_TOLERANCE", "Fire", "Scheduler", "next_fire", "plan_next", "planned_next"]

log = logging.getLogger("dkron.scheduler")

_EPSILON = timedelta(microseconds=1)


def _ns(nanoseconds: int) -> timedelta:
    return timedelta(microseconds=nanoseconds // 1000)


# A tick at most this late when a leader takes over is late, not missed (Quartz's
# misfire threshold, shorter): an election of a second or two must not cost a run
# of an every-second job, whatever its misfire policy.
LATE_TOLERANCE = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class Fire:
    job_name: str
    scheduled_at: datetime
    # True when this fire makes up for one missed while no leader was scheduling.
    catch_up: bool = False


def _schedulable(job: Job) -> bool:
    return not job.disabled and not job.parent_job and bool(job.schedule)


def next_fire(schedule: Schedule, job: Job, after: datetime) -> datetime | None:
    """The job's next fire strictly after ``after``, honouring starts_at/expires_at."""
    if job.starts_at is not None and job.starts_at > after:
        after = job.starts_at - _EPSILON
    moment = schedule.next_after(after)
    if moment is not None and job.expires_at is not None and moment > job.expires_at:
        return None
    return moment


def plan_next(
    job: Job,
    schedule: Schedule,
    now: datetime,
    last_fire: datetime | None = None,
    launched: datetime | None = None,
) -> datetime | None:
    """The job's next fire as the leader schedules it at ``now``: after ``last_fire``
    (the latest fire already launched) when that is later, so re-saving a job neither
    repeats nor skips a fire; an ``@after`` arriving within its grace fires at once, as
    its instant, unless ``launched`` (or ``last_fire``) says it already did."""
    base = now if last_fire is None or last_fire < now else last_fire
    moment = next_fire(schedule, job, base)
    if moment is None and isinstance(schedule, AfterSchedule):
        # Fired as that instant, so the run id is the same whoever fires it (runs once).
        moment = schedule.owed(now, launched if launched is not None else last_fire)
    return moment


def planned_next(job: Job, now: datetime, last_fire: datetime | None = None) -> datetime | None:
    """:func:`plan_next` for a job as stored: None when it is not scheduled at all
    (disabled, a child, no schedule) or its schedule is unusable."""
    if not _schedulable(job):
        return None
    try:
        schedule = parse_schedule(job.schedule, timezone=job.timezone, job_name=job.name)
    except ScheduleError:
        return None
    return plan_next(job, schedule, now, last_fire)


class Scheduler:
    def __init__(
        self,
        on_fire: Callable[[list[Fire]], Awaitable[None]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._on_fire = on_fire
        self._clock = clock
        self._heap: list[tuple[datetime, int, str]] = []
        self._versions: dict[str, int] = {}
        # name -> the moment of its live heap entry; the heap alone would need a scan.
        self._next: dict[str, datetime] = {}
        self._schedules: dict[str, Schedule] = {}
        self._jobs: dict[str, Job] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def __len__(self) -> int:
        return len(self._schedules)

    def next_of(self, name: str) -> datetime | None:
        return self._next.get(name)

    # -- job changes -----------------------------------------------------------------------

    def set_job(
        self,
        job: Job,
        last_fire: datetime | None = None,
        *,
        launched: datetime | None = None,
    ) -> datetime | None:
        """(Re)schedule ``job``; returns its next fire time (None if it will not fire).

        ``last_fire`` is the latest fire already launched: the next one comes after
        it, so re-saving a job neither repeats nor skips a fire. ``launched`` says the
        same when ``last_fire`` is withheld (leadership start skips missed ticks), for
        the one-shot ``@after`` that must not fire twice.
        """
        self.remove_job(job.name)
        if not _schedulable(job):
            return None
        try:
            schedule = parse_schedule(job.schedule, timezone=job.timezone, job_name=job.name)
        except ScheduleError as exc:  # validated on the way in; an old record may not be
            log.error("job %r has an unusable schedule: %s", job.name, exc)
            return None
        moment = plan_next(job, schedule, self._clock(), last_fire, launched)
        self._schedules[job.name] = schedule
        self._jobs[job.name] = job
        self._push(job.name, moment)
        return moment

    def remove_job(self, name: str) -> None:
        if self._schedules.pop(name, None) is not None:
            self._jobs.pop(name, None)
            self._next.pop(name, None)
            self._versions[name] = self._versions.get(name, 0) + 1
            self._changed.set()

    def _push(self, name: str, moment: datetime | None) -> None:
        version = self._versions.get(name, 0) + 1
        self._versions[name] = version
        if moment is not None:
            heapq.heappush(self._heap, (moment, version, name))
            self._next[name] = moment
        else:
            self._next.pop(name, None)
        self._changed.set()

    def load(self, jobs: Iterable[Job], last_fires: dict[str, datetime]) -> list[Fire]:
        """Schedule exactly ``jobs`` at leadership start; returns the fires owed: the
        latest tick at most LATE_TOLERANCE late, or under ``misfire_policy: run_once``
        the latest tick missed (within its grace) while nobody was leader."""
        # Jobs deleted or changed while this server followed are not in the heap's
        # view of things: start from the state alone.
        self.clear()
        now = self._clock()
        owed: list[Fire] = []
        for job in jobs:
            last = last_fires.get(job.name)
            if last is not None and _schedulable(job):
                owed_fire = self._owed(job, last, now)
                if owed_fire is not None:
                    owed.append(owed_fire)
            # Missed ticks are otherwise skipped: schedule from now.
            self.set_job(job, last_fire=None, launched=last)
        return owed

    @staticmethod
    def _owed(job: Job, last: datetime, now: datetime) -> Fire | None:
        """The one fire owed for ticks between ``last`` (launched) and ``now``."""
        try:
            schedule = parse_schedule(job.schedule, timezone=job.timezone, job_name=job.name)
        except ScheduleError:
            return None
        since = max(last, now - LATE_TOLERANCE)  # late, not missed
        if job.misfire_policy == MISFIRE_RUN_ONCE:
            # Judged by the first missed tick: past the grace, nothing is owed.
            missed = next_fire(schedule, job, last)
            grace = job.misfire_grace_ns()
            if missed is not None and grace is not None and now - missed > _ns(grace):
                return None
            since = last
        latest = None  # only the latest tick runs, once
        moment = next_fire(schedule, job, since)
        while moment is not None and moment <= now:
            latest = moment
            moment = next_fire(schedule, job, moment)
        return None if latest is None else Fire(job.name, latest, catch_up=True)

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def clear(self) -> None:
        for name in list(self._schedules):
            self.remove_job(name)
        self._heap.clear()
        self._next.clear()

    def _due(self, now: datetime) -> list[Fire]:
        fires = []
        while self._heap and self._heap[0][0] <= now:
            moment, version, name = heapq.heappop(self._heap)
            if self._versions.get(name) != version or name not in self._schedules:
                continue  # superseded entry
            fires.append(Fire(name, moment))
            following = next_fire(self._schedules[name], self._jobs[name], moment)
            self._push(name, following)
        return fires

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            now = self._clock()
            fires = self._due(now)
            if fires:
                # Firing must not wait on execution: the callback only records and
                # dispatches (it returns before any job finishes).
                try:
                    await self._on_fire(fires)
                except Exception:
                    log.exception("dispatching %d fire(s) failed", len(fires))
                continue
            if not self._heap:
                await self._changed.wait()
                continue
            delay = (self._heap[0][0] - now).total_seconds()
            # Not wait_for: on 3.11 it swallows a cancel that lands as the event is set,
            # and stop() then waits forever on a loop that keeps running.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0)):
                    await self._changed.wait()
