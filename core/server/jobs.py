"""Jobs and executions as the REST API and the RPC services read and write them.

Writes go to the store (Raft forwards a follower's to the leader); a manual run is
started by the leader, so a follower forwards it over gRPC. Reads come from the
applied state, with the live output of executions still running.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Protocol

import grpc.aio

from core.dispatch.live import LiveOutputs
from core.jobs.model import Execution, Job
from core.scheduler.scheduler import planned_next
from core.server.leader import Launcher, Leader
from core.store.base import Store
from core.store.commands import DeleteExecutions, DeleteJob, SetJob
from core.store.state import JobQuery, NotFound, StoreError
from dkron_pb.types.v1 import dkron_pb2, dkron_pb2_grpc

__all__ = ["JobService", "LeaderLink"]

_RUN_FORWARD_TIMEOUT = 10.0


class LeaderLink(Protocol):
    """How to reach the leader's RPC service from this server."""

    def leader_rpc_address(self) -> str | None: ...

    def channel(self, address: str) -> grpc.aio.Channel: ...


class JobService:
    def __init__(
        self,
        store: Store,
        leader: Leader,
        launcher: Callable[[], Launcher],
        live: LiveOutputs,
        link: LeaderLink,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._leader = leader
        self._launcher = launcher
        self._live = live
        self._link = link
        self._clock = clock

    # -- writes ----------------------------------------------------------------------------

    async def set_job(self, job: Job, *, merge: bool = True) -> Job:
        """Create or replace ``job`` (already decoded and validated)."""
        # Its next fire as the leader's scheduler will have it; should the two differ
        # (a tick passed meanwhile), the leader publishes its own and we wait for that.
        last_fire = self._store.state.last_fire.get(job.name)
        job = dataclasses.replace(job, next=planned_next(job, self._clock(), last_fire))
        stored: Job = await self._store.apply(SetJob(job, merge=merge))
        return await self._leader.settle(stored)

    async def delete_job(self, name: str) -> Job:
        deleted: Job = await self._store.apply(DeleteJob(name))
        return deleted

    async def toggle_job(self, name: str) -> Job:
        job = self.get_job(name)
        if job is None:
            raise NotFound("job not found")
        return await self.set_job(dataclasses.replace(job, disabled=not job.disabled))

    async def run_job(self, name: str) -> Job:
        """Start a manual run and return at once (Dkron holds the request open).

        Only the leader dispatches; a follower forwards the request to it."""
        job = self.get_job(name)
        if job is None:
            raise NotFound("job not found")
        if self._store.is_leader:
            self._launcher().launch(name, manual=True)
            return job
        address = self._link.leader_rpc_address()
        if address is None:
            raise StoreError("no raft leader to run the job")
        stub = dkron_pb2_grpc.DkronServiceStub(self._link.channel(address))
        try:
            request = dkron_pb2.RunJobRequest(job_name=name)
            await stub.RunJob(request, timeout=_RUN_FORWARD_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound("job not found") from None
            raise StoreError(f"the leader did not run the job: {exc.details()}") from None
        return job

    async def delete_executions(self, name: str) -> Job:
        job: Job = await self._store.apply(DeleteExecutions(name))
        return job

    async def restore(self, jobs: list[Job]) -> list[str]:
        """Store jobs parents first; one line per job, as Dkron reports."""
        results = []
        pending = list(jobs)
        names = {j.name for j in jobs}
        done: set[str] = set()
        while pending:
            ready = [
                j
                for j in pending
                if not j.parent_job or j.parent_job in done or j.parent_job not in names
            ]
            if not ready:
                ready = pending[:1]
            for job in ready:
                pending.remove(job)
                try:
                    await self.set_job(job)
                    results.append(f"success create {job.name}")
                except Exception as exc:
                    results.append(f"fail create {job.name}: {exc}")
                done.add(job.name)
        return results

    # -- reads -----------------------------------------------------------------------------

    def get_job(self, name: str) -> Job | None:
        return self._store.state.get_job(name)

    def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        return self._store.state.list_jobs(query)

    def scheduled_jobs(self) -> dict[str, Job]:
        """The jobs the leader's scheduler holds a next fire for, by name (sorted)."""
        leader = self._leader
        jobs = self._store.state.jobs
        return {name: jobs[name] for name in sorted(jobs) if leader.next_of(name) is not None}

    def executions(self, job_name: str) -> list[Execution]:
        return [self._with_partial(e) for e in self._store.state.executions_of(job_name)]

    def get_execution(self, job_name: str, execution_id: str) -> Execution | None:
        execution = self._store.state.get_execution(job_name, execution_id)
        return None if execution is None else self._with_partial(execution)

    def busy(self) -> list[Execution]:
        return [self._with_partial(e) for e in self._store.state.running_executions()]

    def _with_partial(self, execution: Execution) -> Execution:
        if execution.finished_at is None:
            partial = self._live.partial(execution.id)
            if partial is not None:
                return dataclasses.replace(execution, output=partial)
        return execution

    def partial_output(self, execution_id: str) -> bytes | None:
        """The output so far of a run this server streams (None: it streams none)."""
        return self._live.partial(execution_id)

    def follow(self, execution_id: str) -> AsyncIterator[bytes]:
        return self._live.follow(execution_id)
