"""The dispatcher's admission of scheduled fires: a bounded backlog that sheds by the job's
misfire policy instead of accumulating lag.

Above capacity (more fires per second than this node can start), fires wait for one of
``slots`` admissions. A fire is shed, never run late without bound:

- ``misfire_policy: skip`` (the default): a fire that waited longer than ``late_after``
  for admission is dropped, as a tick missed while no leader was scheduling would be; so
  is any fire arriving while ``limit`` fires already wait. (Measured from its arrival,
  not its tick: a launch a new leader re-dispatches after a failover is late already,
  and must still run when nothing is waiting.)
- ``misfire_policy: run_once``: at most one fire per job waits (the later ones are the
  same "run once" and are dropped), and it still runs when admitted, unless it is past
  the job's ``misfire_grace``.

A shed fire's launch record is closed (no later leader runs it) and nothing else is
recorded for it: no execution, no counters, no notification, like a missed tick. The
backlog's depth, the oldest waiting fire's lag and the fires shed are in :meth:`stats`
and in a warning at most every ``report_every`` seconds while it lasts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.jobs.model import MISFIRE_RUN_ONCE, Job

__all__ = ["Backlog", "BacklogLimits", "BacklogStats"]

log = logging.getLogger("dkron.dispatch")


@dataclass(frozen=True, slots=True)
class BacklogLimits:
    # Scheduled runs in progress at once (admitted and not finished).
    slots: int = 256
    # Fires waiting for admission at most; past it, skip-policy fires are shed at once.
    limit: int = 10_000
    # A skip-policy fire that waited longer than this for admission is shed (the
    # scheduler's own tolerance for a late tick).
    late_after: timedelta = timedelta(seconds=5)
    report_every: float = 10.0


@dataclass(frozen=True, slots=True)
class BacklogStats:
    waiting: int
    running: int
    oldest_lag_s: float
    shed_total: int


@dataclass(slots=True)
class _Waiting:
    scheduled_at: datetime
    arrived: datetime


class Backlog:
    def __init__(
        self,
        limits: BacklogLimits,
        close_launches: Callable[[tuple[str, ...]], object],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.limits = limits
        self._close_launches = close_launches
        self._clock = clock
        self._admission = asyncio.Semaphore(limits.slots)
        self._waiting: dict[str, _Waiting] = {}  # by run id, in arrival order
        self._waiting_once: set[str] = set()  # run_once jobs with a fire waiting
        self._running = 0
        self._shed_total = 0
        self._shed_since_report = 0
        self._reported_at = 0.0

    def stats(self) -> BacklogStats:
        oldest = next(iter(self._waiting.values()), None)
        lag = 0.0 if oldest is None else (self._clock() - oldest.scheduled_at).total_seconds()
        return BacklogStats(len(self._waiting), self._running, max(lag, 0.0), self._shed_total)

    def _shed(self, job: Job, run_id: str, why: str) -> None:
        self._shed_total += 1
        self._shed_since_report += 1
        log.debug("shed fire %s of %r: %s", run_id, job.name, why)
        self._close_launches((run_id,))
        self._report()

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._reported_at < self.limits.report_every:
            return
        self._reported_at = now
        stats = self.stats()
        log.warning(
            "dispatcher over capacity: %d fire(s) waiting (oldest %.1fs late), %d running; "
            "%d late fire(s) shed since the last report (%d in all): skip-policy fires that "
            "cannot start within %gs of their tick are dropped, run_once jobs keep one",
            stats.waiting,
            stats.oldest_lag_s,
            stats.running,
            self._shed_since_report,
            stats.shed_total,
            self.limits.late_after.total_seconds(),
        )
        self._shed_since_report = 0

    def _too_late(self, job: Job, waiting: _Waiting) -> str:
        now = self._clock()
        if job.misfire_policy == MISFIRE_RUN_ONCE:
            lag = now - waiting.scheduled_at
            grace = job.misfire_grace_ns()
            if grace is not None and lag > timedelta(microseconds=grace // 1000):
                return f"{lag.total_seconds():.1f}s late, past its misfire_grace"
            return ""
        waited = now - waiting.arrived
        if waited > self.limits.late_after:
            return f"waited {waited.total_seconds():.1f}s for admission (misfire_policy skip)"
        return ""

    async def admit(self, job: Job, run_id: str, scheduled_at: datetime) -> bool:
        """Wait for admission; False when the fire was shed instead (its launch closed).
        On True the caller runs it and then calls :meth:`done` once."""
        once = job.misfire_policy == MISFIRE_RUN_ONCE
        if self._admission.locked() or self._waiting:
            if once and job.name in self._waiting_once:
                self._shed(job, run_id, "a fire of this run_once job is already waiting")
                return False
            if not once and len(self._waiting) >= self.limits.limit:
                self._shed(job, run_id, f"{len(self._waiting)} fires already waiting")
                return False
        waiting = self._waiting[run_id] = _Waiting(scheduled_at, self._clock())
        if once:
            self._waiting_once.add(job.name)
        try:
            await self._admission.acquire()
        finally:
            del self._waiting[run_id]
            if once:
                self._waiting_once.discard(job.name)
        why = self._too_late(job, waiting)
        if why:
            self._admission.release()
            self._shed(job, run_id, why)
            return False
        self._running += 1
        if self._waiting:
            self._report()
        return True

    def done(self) -> None:
        self._running -= 1
        self._admission.release()
