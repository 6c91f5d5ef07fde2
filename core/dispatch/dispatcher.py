"""The leader's side of a run: record, dispatch, stream, finish, retry, chain.

Flow per attempt: commit StartExecution (the atomic forbid check) -> open the
agent-run stream to the target node -> every chunk into the live buffer -> the
final message -> processors -> commit FinishExecution -> retry, children,
ephemeral. Nothing here blocks the scheduler: each run is its own task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
import grpc.aio

from core.agent.convert import execution_from_proto, execution_to_proto, job_to_proto
from core.dispatch.live import LiveOutputs
from core.jobs.model import STATUS_SUCCESS, Execution, Job, unix_nano
from core.notify.notifier import Notifier
from core.plugins.runtime import PluginRuntime
from core.store.commands import DeleteJob, FinishExecution, StartExecution
from core.store.raft import RaftStore, ReplicationError
from core.store.state import StartResult, StoreError
from dkron_pb.types.v1 import agent_pb2, agent_pb2_grpc
from plugin_sdk.models import Execution as SdkExecution

__all__ = ["Dispatcher"]

log = logging.getLogger("dkron.dispatch")


def _now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    def __init__(
        self,
        store: RaftStore,
        runtime: PluginRuntime,
        node_name: str,
        agent_address: Callable[[str], str],
        live: LiveOutputs,
        notifier: Notifier | None = None,
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._node_name = node_name
        self._agent_address = agent_address
        self.live = live
        self._notifier = notifier
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _stub(self, node: str) -> agent_pb2_grpc.AgentServiceStub:
        address = self._agent_address(node)
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address)
            self._channels[address] = channel
        return agent_pb2_grpc.AgentServiceStub(channel)

    def _spawn(self, coroutine: object, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- entry points ----------------------------------------------------------------------

    def runnable(self, job: Job, now: datetime, manual: bool) -> str:
        """Why ``job`` must not start now ("" when it may)."""
        if job.disabled and not (manual and job.parent_job):
            return "job is disabled"
        if manual:
            return ""  # manual runs skip the time window, as in Dkron
        if job.starts_at is not None and now < job.starts_at:
            return "job has not started yet (starts_at)"
        if job.expires_at is not None and now > job.expires_at:
            return "job has expired (expires_at)"
        return ""

    def launch(
        self,
        job_name: str,
        *,
        scheduled_at: datetime | None = None,
        run_id: str = "",
        manual: bool = False,
    ) -> None:
        """Start a run in the background; returns at once."""
        self._spawn(self._launch(job_name, scheduled_at, run_id, manual), f"launch-{job_name}")

    async def _launch(
        self, job_name: str, scheduled_at: datetime | None, run_id: str, manual: bool
    ) -> None:
        job = self._store.state.get_job(job_name)
        if job is None:
            log.warning("not running %r: the job no longer exists", job_name)
            return
        now = _now()
        reason = self.runnable(job, now, manual)
        if reason:
            log.info("not running %r: %s", job_name, reason)
            return
        execution = Execution(
            job_name=job.name,
            group=unix_nano(now),
            attempt=1,
            scheduled_at=scheduled_at,
            run_id=run_id,
        )
        await self._attempt(job, execution, self._node_name)

    # -- one attempt -----------------------------------------------------------------------

    async def _attempt(self, job: Job, execution: Execution, node: str) -> None:
        execution = dataclasses.replace(execution, started_at=_now(), node_name=node)
        try:
            started: StartResult = await self._store.apply(
                StartExecution(execution, check_forbid=execution.attempt == 1)
            )
        except (ReplicationError, StoreError) as exc:
            log.error("cannot record the start of %r: %s", job.name, exc)
            return
        if not started.accepted:
            log.info("not running %r: %s", job.name, started.reason)
            return
        await self._notify_pre(job, execution)
        key = execution.id
        self.live.begin(key)
        try:
            finished = await self._stream(job, execution, node)
        finally:
            self.live.end(key)
        await self._finish(job, finished)

    async def _stream(self, job: Job, execution: Execution, node: str) -> Execution:
        request = agent_pb2.AgentRunRequest(
            job=job_to_proto(job), execution=execution_to_proto(execution)
        )
        last = execution
        try:
            async for message in self._stub(node).AgentRun(request):
                update = execution_from_proto(message.execution)
                if update.finished_at is None:
                    if update.output:
                        self.live.append(execution.id, update.output)
                    continue
                last = dataclasses.replace(
                    execution,
                    success=update.success,
                    output=update.output,
                    finished_at=update.finished_at,
                )
        except grpc.aio.AioRpcError as exc:
            detail = exc.details() or exc.code().name
            partial = self.live.partial(execution.id) or b""
            return dataclasses.replace(
                execution,
                success=False,
                finished_at=_now(),
                output=(
                    "grpc: Error on execution streaming, agent connection was abruptly "
                    f"terminated: {detail}\n"
                ).encode()
                + partial,
            )
        if last.finished_at is None:
            return dataclasses.replace(
                execution,
                success=False,
                finished_at=_now(),
                output=b"agent-run stream ended without a final result\n"
                + (self.live.partial(execution.id) or b""),
            )
        return last

    async def _finish(self, job: Job, execution: Execution) -> None:
        current = self._store.state.get_job(job.name) or job
        if current.processors:
            result = await self._runtime.process(
                _to_sdk(execution), current.processors, reporting_node=self._node_name
            )
            execution = dataclasses.replace(
                execution,
                output=result.execution.output,
                success=result.execution.success,
                processor_errors=result.errors,
            )
        try:
            stored_job, status = await self._store.apply(FinishExecution(execution))
        except StoreError as exc:
            log.warning("execution of %r finished but was not stored: %s", job.name, exc)
            return
        if not execution.success and execution.attempt < current.retries + 1:
            delay = _retry_delay(current, execution)
            log.info("retrying %r (attempt %d) in %.1fs", job.name, execution.attempt + 1, delay)
            await asyncio.sleep(delay)
            retry = dataclasses.replace(
                execution,
                attempt=execution.attempt + 1,
                output=b"",
                success=False,
                finished_at=None,
                processor_errors=[],
            )
            latest = self._store.state.get_job(job.name)
            if latest is not None:
                await self._attempt(latest, retry, execution.node_name)
            return
        await self._notify_post(stored_job, execution)
        if status != STATUS_SUCCESS:
            return
        for child in stored_job.dependent_jobs or []:
            self.launch(child)
        if stored_job.ephemeral:
            try:
                await self._store.apply(DeleteJob(stored_job.name))
            except StoreError as exc:
                log.warning("ephemeral job %r not deleted: %s", stored_job.name, exc)

    # -- notifications: they only schedule background work and must never stop a run ----

    async def _notify_pre(self, job: Job, execution: Execution) -> None:
        if self._notifier is None:
            return
        try:
            await self._notifier.pre(job, execution)
        except Exception:
            log.exception("pre-notification for %r not sent", job.name)

    async def _notify_post(self, job: Job, execution: Execution) -> None:
        if self._notifier is None:
            return
        group = sorted(
            (e for e in self._store.state.executions_of(job.name) if e.group == execution.group),
            key=lambda e: (e.started_at or _now(), e.node_name),
        )
        try:
            await self._notifier.post(job, execution, group)
        except Exception:
            log.exception("post-notification for %r not sent", job.name)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def drain(self, timeout: float) -> bool:
        """Wait for runs in flight; True if they all finished in time."""
        tasks = list(self._tasks)
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending


def _retry_delay(job: Job, execution: Execution) -> float:
    backoff = job.retry_backoff
    attempt = execution.attempt
    if backoff is not None and backoff.delay:
        delay = backoff.delay_ns() / 1e9
        if backoff.exponential:
            delay *= 2 ** (attempt - 1)
        limit = backoff.max_ns()
        return min(delay, limit / 1e9) if limit is not None else delay
    # Dkron's formula: trunc(log2(elapsed / 500ms) + attempt) * 500ms.
    started = execution.started_at or _now()
    finished = execution.finished_at or _now()
    elapsed = max((finished - started).total_seconds(), 0.0)
    steps = math.log2(elapsed / 0.5) if elapsed > 0.5 else 0.0
    return max(int(steps + attempt), 1) * 0.5


def _to_sdk(execution: Execution) -> SdkExecution:
    return SdkExecution(
        job_name=execution.job_name,
        success=execution.success,
        output=execution.output,
        node_name=execution.node_name,
        group=execution.group,
        attempt=execution.attempt,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
    )
