"""The leader's work: schedule the jobs, record each fire, dispatch it, publish ``next``.

One fire: the scheduler pops due ticks -> one ``RecordLaunches`` command (committed
before anything runs; the log refuses a deposed leader's) -> each new launch to the
dispatcher -> one ``SetNext`` with the scheduler's next fire times. ``SetNext`` is only
ever written here, from what the scheduler holds.

Leadership follows the store's :class:`LeadershipChanged` events. Taking it up commits
a ``Barrier`` at the new term (so everything from earlier terms is applied), adopts and
re-dispatches what the previous leader left, loads the scheduler and runs the fires
owed. Losing it stops the scheduler; what is still in flight carries the old term and
is refused. Leading again at a newer term unnoticed starts over at that term.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from core.jobs.model import Job, unix_nano
from core.scheduler.scheduler import Fire, Scheduler
from core.store.base import ReplicationError, Store
from core.store.commands import Barrier, Launch, RecordLaunches, SetNext
from core.store.events import JobChanged, JobDeleted, LeadershipChanged
from core.store.state import StoreError

__all__ = ["Launcher", "Leader"]

log = logging.getLogger("dkron.server")


class Launcher(Protocol):
    """What the leader hands runs to (core.dispatch.dispatcher.Dispatcher)."""

    def launch(
        self,
        job_name: str,
        *,
        scheduled_at: datetime | None = None,
        run_id: str = "",
        manual: bool = False,
    ) -> None: ...

    def reconcile(self) -> None: ...


class Leader:
    """Scheduling while this server leads, driven by the store's events."""

    def __init__(
        self,
        store: Store,
        launcher: Callable[[], Launcher],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        # Late-bound: the dispatcher asks this leader for its term.
        self._launcher = launcher
        self._clock = clock
        self.scheduler = Scheduler(self._on_fire, clock)
        # The term this server established leadership at (0: never). Kept when it
        # loses the lead: anything still in flight carries it and is refused by the log
        # and by nodes that have seen the new leader.
        self.term = 0
        self._stopped = False
        self._tasks: set[asyncio.Future[Any]] = set()
        # job name -> its SetNext in flight, for a writer to wait on (see settle()).
        self._publishing: dict[str, asyncio.Future[None]] = {}
        self._unsubscribe: list[Callable[[], None]] = []

    def attach(self) -> None:
        """Follow the store: its job changes and leadership."""
        store = self._store
        self._unsubscribe = [
            store.subscribe(JobChanged, self._job_changed),
            store.subscribe(JobDeleted, self._job_deleted),
            store.subscribe(LeadershipChanged, self._leadership_changed),
        ]

    @property
    def running(self) -> bool:
        return self.scheduler.running

    def next_of(self, name: str) -> datetime | None:
        return self.scheduler.next_of(name)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- leadership ------------------------------------------------------------------------

    def _leadership_changed(self, event: LeadershipChanged) -> None:
        if event.leader:
            self._spawn(self.establish())
        else:
            self._spawn(self.scheduler.stop())

    async def establish(self) -> None:
        """Take up the leadership this server holds now (nothing if it is not leading,
        or already leads at this term)."""
        store, scheduler = self._store, self.scheduler
        if self._stopped or not store.is_leader:
            return
        if scheduler.running:
            if self.term == store.term:
                return
            # Leading again at a newer term (lost and won back unnoticed in between):
            # everything from the old term is refused now, so start over at this one.
            await scheduler.stop()
        term = store.term
        try:
            # Everything committed before this term is applied once the barrier is.
            await store.apply(Barrier(term))
        except (ReplicationError, StoreError) as exc:
            log.warning("leadership not established: %s", exc)
            return
        if self._stopped or not store.is_leader or store.term != term or scheduler.running:
            return
        self.term = term
        log.info("leading the cluster (raft term %d)", term)
        state = store.state
        self._launcher().reconcile()
        owed = scheduler.load(list(state.jobs.values()), dict(state.last_fire))
        scheduler.start()
        try:
            if owed:
                log.info("running %d late or missed fire(s) once", len(owed))
                await self._on_fire(owed)
            await self._publish_next(list(state.jobs))
        except (ReplicationError, StoreError) as exc:
            # Leadership was lost again meanwhile; the next leader does this itself.
            log.warning("leadership work interrupted: %s", exc)

    async def stop(self) -> None:
        """Stop scheduling for good (the node is stopping)."""
        self._stopped = True
        await self.scheduler.stop()

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        await self.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- job changes (from the log, on every server) ---------------------------------------

    def _job_changed(self, event: JobChanged) -> None:
        if not self.scheduler.running:
            return
        job = event.job
        moment = self.scheduler.set_job(job, self._store.state.last_fire.get(job.name))
        if moment != job.next:
            self._publish_soon(job.name)

    def _job_deleted(self, event: JobDeleted) -> None:
        if self.scheduler.running:
            self.scheduler.remove_job(event.name)

    def _publish_soon(self, name: str) -> None:
        task = self._spawn(self._publish_next([name]))
        self._publishing[name] = task

        def done(finished: asyncio.Future[None]) -> None:
            if self._publishing.get(name) is finished:
                del self._publishing[name]
            if not finished.cancelled() and finished.exception() is not None:
                log.warning("next fire of %r not published: %s", name, finished.exception())

        task.add_done_callback(done)

    async def settle(self, job: Job) -> Job:
        """``job`` (just stored) as the scheduler has taken it up: its ``next`` is the
        scheduler's, committed. Raises what committing it raised."""
        pending = self._publishing.get(job.name)
        if pending is not None:
            await asyncio.shield(pending)
        if self.scheduler.running:
            job.next = self.scheduler.next_of(job.name)
        return job

    # -- firing ----------------------------------------------------------------------------

    async def _on_fire(self, fires: list[Fire]) -> None:
        store = self._store
        if not store.is_leader or store.term != self.term:
            # Deposed: the new leader fires these (and the log would refuse them). Or
            # leading at a newer term that establish() is taking up right now.
            log.info("not firing %d tick(s) at raft term %d", len(fires), self.term)
            return
        group = unix_nano(self._clock())
        launches = tuple(
            Launch(
                run_id=f"{fire.job_name}@{unix_nano(fire.scheduled_at)}",
                job_name=fire.job_name,
                scheduled_at=fire.scheduled_at,
                group=group,
                term=self.term,
            )
            for fire in fires
        )
        # One Raft command per wake-up, committed before anything is dispatched.
        recorded: list[str] = await store.apply(RecordLaunches(launches))
        new = set(recorded)
        launcher = self._launcher()
        for launch in launches:
            if launch.run_id in new:
                launcher.launch(
                    launch.job_name, scheduled_at=launch.scheduled_at, run_id=launch.run_id
                )
        await self._publish_next([f.job_name for f in fires])

    async def _publish_next(self, names: Iterable[str]) -> None:
        jobs = self._store.state.jobs
        updates = tuple((n, self.scheduler.next_of(n)) for n in names if n in jobs)
        if updates:
            await self._store.apply(SetNext(updates))
