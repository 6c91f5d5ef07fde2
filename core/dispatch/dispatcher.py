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
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import grpc
import grpc.aio

from core.dispatch.backlog import Backlog, BacklogLimits
from core.dispatch.live import LiveOutputs
from core.jobs.model import MISFIRE_RUN_ONCE, STATUS_SUCCESS, Execution, Job, unix_nano
from core.notify.notifier import Notifier
from core.plugins.runtime import PluginRuntime
from core.store.base import ReplicationError, Store
from core.store.commands import CloseLaunches, DeleteJob, FinishExecution, StartExecution
from core.store.state import AlreadyFinished, NotFound, StartResult, StoreError
from core.wire import RunRefused, execution_from_proto, execution_to_proto, job_to_proto
from dkron_pb.types.v1 import agent_pb2, agent_pb2_grpc

__all__ = ["Dispatcher"]

log = logging.getLogger("dkron.dispatch")


def _now() -> datetime:
    return datetime.now(UTC)


# A broken agent-run stream is re-attached for this long before the run is failed:
# the node may be restarting its gRPC server, or the leader's connection flapped.
_REATTACH_WINDOW = 3.0
_MAX_STREAMS = 256
_REATTACH_PAUSE = 0.25
# How long one attempt waits for a connection to a node before dialing it afresh.
_CONNECT_WAIT = 1.0
# Launches recorded by a previous leader but never dispatched still run when a new
# leader finds them this late at most (or within the job's misfire grace if longer).
_REDISPATCH_GRACE = timedelta(seconds=60)


class LocalRun(Protocol):
    """A run on this node as the agent hands it to a subscriber (core.agent.runs.Run)."""

    @property
    def final(self) -> Execution | None: ...

    def output_so_far(self) -> bytes: ...


class LocalSubscription(Protocol):
    @property
    def run(self) -> LocalRun: ...

    async def next(self) -> bytes | None: ...

    def taken(self) -> None: ...

    def close(self) -> None: ...


class LocalAgent(Protocol):
    """This node's agent, called directly for runs dispatched to this node."""

    def open_run(
        self, job: Callable[[], Job], execution: Execution, term: int, adopt_only: bool
    ) -> LocalSubscription: ...


class _NotCommitted(Exception):
    """A start this server could not commit: it is not (or no longer) the leader."""


class Dispatcher:
    def __init__(
        self,
        store: Store,
        runtime: PluginRuntime,
        node_name: str,
        agent_address: Callable[[str], str | None],
        live: LiveOutputs,
        notifier: Notifier | None = None,
        *,
        targets: Callable[[Job], list[str]] | None = None,
        term: Callable[[], int] = lambda: 0,
        channel: Callable[[str], grpc.aio.Channel] | None = None,
        forget_channel: Callable[[str], None] | None = None,
        local_agent: LocalAgent | None = None,
        backlog: BacklogLimits | None = None,
    ) -> None:
        self._store = store
        self._local = local_agent
        self._runtime = runtime
        self._node_name = node_name
        self._agent_address = agent_address
        self._targets = targets or (lambda _job: [node_name])
        self._term = term
        self.live = live
        self._notifier = notifier
        # The node's channels (with its credentials); without them, plain ones of our own.
        self._channel = channel or self._plain_channel
        self._forget = forget_channel
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Streams in flight at once. Past this a burst waits its turn instead of every
        # stream's callbacks landing in one loop iteration, which would delay Raft's
        # heartbeats and cost the leadership under overload.
        self._slots = asyncio.Semaphore(_MAX_STREAMS)
        # Set when the node stops: runs in flight are recorded, nothing new follows them.
        self.stopping = False
        # Scheduled fires wait here for admission, and are shed by misfire policy when
        # they wait too long; their closed launches are committed in batches.
        self.backlog = Backlog(backlog or BacklogLimits(), self._close_soon)
        self._closing: list[str] = []

    def _plain_channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address)
            self._channels[address] = channel
        return channel

    def _stub(self, address: str) -> agent_pb2_grpc.AgentServiceStub:
        return agent_pb2_grpc.AgentServiceStub(self._channel(address))

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

    async def _close(self, *run_ids: str) -> None:
        """Mark launches that will never run, so no later leader dispatches them."""
        run_ids = tuple(r for r in run_ids if r)
        if not run_ids:
            return
        try:
            await self._store.apply(CloseLaunches(run_ids))
        except (ReplicationError, StoreError) as exc:
            log.warning("launch(es) %s not closed: %s", ", ".join(run_ids), exc)

    def _close_soon(self, run_ids: tuple[str, ...]) -> None:
        """Close launches in one command per loop turn (a shed burst is one entry)."""
        if not self._closing:
            asyncio.get_running_loop().call_soon(self._flush_closing)
        self._closing.extend(run_ids)

    def _flush_closing(self) -> None:
        run_ids, self._closing = tuple(self._closing), []
        self._spawn(self._close(*run_ids), "close-shed-launches")

    async def _launch(
        self, job_name: str, scheduled_at: datetime | None, run_id: str, manual: bool
    ) -> None:
        job = self._store.state.get_job(job_name)
        if job is None:
            log.warning("not running %r: the job no longer exists", job_name)
            return
        if manual or scheduled_at is None or not run_id:
            await self._launch_admitted(job, scheduled_at, run_id, manual)
            return
        if not await self.backlog.admit(job, run_id, scheduled_at):
            return
        try:
            # The job may have changed while the fire waited.
            current = self._store.state.get_job(job_name)
            if current is None:
                log.warning("not running %r: the job no longer exists", job_name)
                return
            await self._launch_admitted(current, scheduled_at, run_id, manual)
        finally:
            self.backlog.done()

    async def _launch_admitted(
        self, job: Job, scheduled_at: datetime | None, run_id: str, manual: bool
    ) -> None:
        job_name = job.name
        now = _now()
        reason = self.runnable(job, now, manual)
        if reason:
            log.info("not running %r: %s", job_name, reason)
            await self._close(run_id)
            return
        group = unix_nano(now)
        # Every run has a run id: agents run each (run id, attempt) once, and a new
        # leader can ask them about it.
        run_id = run_id or f"{job.name}@manual-{group}"
        base = Execution(
            job_name=job.name, group=group, attempt=1, scheduled_at=scheduled_at, run_id=run_id
        )
        nodes = self._targets(job)
        if not nodes:
            await self._no_targets(job, base)
            return
        started: list[tuple[Execution, str]] = []
        for index, node in enumerate(nodes):
            try:
                execution = await self._start(job, base, node, check_forbid=index == 0)
            except _NotCommitted:
                # Leadership moved: the launch stays recorded and not started, so the
                # next leader dispatches it.
                return
            if execution is None:
                if index == 0:
                    await self._close(run_id)  # refused (forbid): it will never run
                    return
                continue
            started.append((execution, node))
        await asyncio.gather(*(self._run(job, e, node) for e, node in started))

    async def _no_targets(self, job: Job, base: Execution) -> None:
        # Dkron only logs this; an execution makes it visible in the API and the UI.
        now = _now()
        message = f"no target nodes found to run job {job.name}"
        log.warning("%s (tags %s)", message, job.tags or {})
        failed = dataclasses.replace(
            base,
            node_name=self._node_name,
            started_at=now,
            finished_at=now,
            success=False,
            output=f"{message}\n".encode(),
        )
        try:
            await self._store.apply(FinishExecution(failed))
        except (ReplicationError, StoreError) as exc:
            log.error("cannot record that %r had no target: %s", job.name, exc)
            return
        await self._notify_post(job, failed)

    # -- one attempt -----------------------------------------------------------------------

    async def _start(
        self, job: Job, execution: Execution, node: str, *, check_forbid: bool
    ) -> Execution | None:
        """The started execution; None if the store refused it (forbid, job gone).

        Raises _NotCommitted when this server could not commit it (leadership moved)."""
        execution = dataclasses.replace(execution, started_at=_now(), node_name=node)
        try:
            started: StartResult = await self._store.apply(
                StartExecution(execution, check_forbid=check_forbid, term=self._term())
            )
        except (ReplicationError, StoreError) as exc:
            log.warning("cannot record the start of %r: %s", job.name, exc)
            raise _NotCommitted from exc
        if started.reason.startswith("stale leader term"):
            raise _NotCommitted
        if not started.accepted:
            log.info("not running %r: %s", job.name, started.reason)
            return None
        return execution

    async def _attempt(self, job: Job, execution: Execution, node: str) -> None:
        try:
            started = await self._start(job, execution, node, check_forbid=execution.attempt == 1)
        except _NotCommitted:
            return
        if started is not None:
            await self._run(job, started, node)

    async def _run(self, job: Job, execution: Execution, node: str, adopt: bool = False) -> None:
        if not adopt:
            await self._notify_pre(job, execution)
        key = execution.id
        self.live.begin(key)
        try:
            async with self._slots:
                finished = await self._stream(job, execution, node, adopt=adopt)
        finally:
            self.live.end(key)
        if finished is not None:
            await self._finish(job, finished)

    async def _stream(
        self, job: Job, execution: Execution, node: str, *, adopt: bool
    ) -> Execution | None:
        """The node's final result, or a failed execution saying why there is none.

        None when this server stopped leading first: the new leader adopts the run."""
        loop = asyncio.get_running_loop()
        broken_since: float | None = None
        received = 0  # output bytes seen, so a re-attached stream's replay is not doubled
        last_error = ""
        # Whether the request may have reached the node. Until it may have, sending it
        # again as a start is safe (the node runs each (run id, attempt) once); after,
        # only attaching is, since a node that restarted meanwhile must not run it again.
        sent = adopt
        local = self._local is not None and node == self._node_name
        while True:
            if not self._store.is_leader:
                return None
            address = None if local else self._agent_address(node)
            if address is None and not local:
                error = f"node {node} is not an alive member of the cluster"
            elif (
                address is not None
                and not sent
                and not await self._connected(address, broken_since)
            ):
                # Not connected: the request cannot have left. A node restarting shows
                # up here, not as a lost run.
                error = f"node {node} does not accept connections at {address}"
            else:
                sent = True
                adopt_only = adopt or broken_since is not None
                try:
                    if address is None:
                        final, received = await self._receive_local(
                            job, execution, adopt_only, received
                        )
                    else:
                        request = agent_pb2.AgentRunRequest(
                            job=job_to_proto(job),
                            execution=execution_to_proto(execution),
                            term=self._term(),
                            adopt_only=adopt_only,
                        )
                        final, received = await self._receive(address, request, execution, received)
                    if final is not None:
                        return final
                    error = "agent-run stream ended without a final result"
                except (grpc.aio.AioRpcError, RunRefused) as exc:
                    if isinstance(exc, RunRefused):
                        code, detail = exc.code, exc.detail
                    else:
                        code, detail = exc.code(), exc.details() or exc.code().name
                    if code == grpc.StatusCode.NOT_FOUND and adopt_only:
                        return self._failed(
                            execution,
                            f"execution lost: node {node} has no record of it (the node "
                            "restarted, or the run never reached it)",
                        )
                    if code in (
                        grpc.StatusCode.INVALID_ARGUMENT,
                        grpc.StatusCode.FAILED_PRECONDITION,
                    ):
                        return self._failed(execution, detail)
                    error = (
                        "grpc: Error on execution streaming, agent connection was abruptly "
                        f"terminated: {detail}"
                    )
            last_error = error
            now = loop.time()
            if broken_since is None:
                broken_since = now
            if now - broken_since > _REATTACH_WINDOW:
                return self._failed(
                    execution, f"{last_error} (node {node} unreachable for {_REATTACH_WINDOW:g}s)"
                )
            await asyncio.sleep(_REATTACH_PAUSE)

    async def _connected(self, address: str, broken_since: float | None) -> bool:
        """Whether the channel to ``address`` is READY, waiting for it up to what is
        left of the re-attach window. A channel that failed is dropped, so the next try
        dials afresh instead of sitting out gRPC's reconnect back-off."""
        channel = self._channel(address)
        if channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
            return True
        loop = asyncio.get_running_loop()
        started = loop.time() if broken_since is None else broken_since
        left = max(_REATTACH_WINDOW - (loop.time() - started), _REATTACH_PAUSE)
        try:
            async with asyncio.timeout(min(left, _CONNECT_WAIT)):
                await channel.channel_ready()
        except TimeoutError:
            if self._forget is not None:
                self._forget(address)
            return False
        except Exception:  # e.g. closed under us; the next attempt takes a fresh one
            return False
        return True

    async def _receive(
        self,
        address: str,
        request: agent_pb2.AgentRunRequest,
        execution: Execution,
        received: int,
    ) -> tuple[Execution | None, int]:
        # Attaching to a run, the node first replays all its output so far: only what
        # this server has not seen yet goes on to the live buffer.
        replay_pending = request.adopt_only and received > 0
        async for message in self._stub(address).AgentRun(request):
            update = execution_from_proto(message.execution)
            if update.finished_at is None:
                chunk = update.output
                if chunk and replay_pending:
                    replay_pending = False
                    chunk = chunk[received:] if len(chunk) >= received else chunk
                if chunk:
                    self.live.append(execution.id, chunk)
                    received += len(chunk)
                continue
            return _with_result(execution, update), received
        return None, received

    async def _receive_local(
        self, job: Job, execution: Execution, adopt_only: bool, received: int
    ) -> tuple[Execution | None, int]:
        """``_receive`` for a run on this node: the agent is called directly, with the
        same fence, run table and replay rules as the stream, and no loopback gRPC."""
        assert self._local is not None
        subscription = self._local.open_run(
            lambda: job, dataclasses.replace(execution), self._term(), adopt_only
        )
        try:
            run = subscription.run
            if run.final is None:
                so_far = run.output_so_far()
                if adopt_only and received > 0 and len(so_far) >= received:
                    so_far = so_far[received:]
                chunk: bytes | None = so_far
                while chunk is not None:
                    if chunk:
                        self.live.append(execution.id, chunk)
                        received += len(chunk)
                    chunk = await subscription.next()
            final = run.final
            assert final is not None
            subscription.taken()
        finally:
            subscription.close()
        return _with_result(execution, final), received

    def _failed(self, execution: Execution, message: str) -> Execution:
        partial = self.live.partial(execution.id) or b""
        return dataclasses.replace(
            execution,
            success=False,
            finished_at=_now(),
            output=f"{message}\n".encode() + partial,
        )

    # -- leader change and fallback reports --------------------------------------------------

    def reconcile(self) -> None:
        """A new leader's catch-up: adopt runs recorded as started, dispatch launches
        recorded but never started (they cannot have reached any node: a node only
        gets a run after its start is committed)."""
        state = self._store.state
        running = state.running_executions()
        started = {e.run_id for e in running if e.run_id}
        for execution in running:
            self._spawn(self._adopt(execution), f"adopt-{execution.job_name}")
        now = _now()
        stale: list[str] = []
        for launch in list(state.launches.values()):
            if launch.run_id in started:
                continue
            job = state.get_job(launch.job_name)
            if job is None:
                continue
            grace_ns = job.misfire_grace_ns()
            grace = _REDISPATCH_GRACE
            if grace_ns is not None and job.misfire_policy == MISFIRE_RUN_ONCE:
                grace = max(grace, timedelta(microseconds=grace_ns // 1000))
            if grace_ns is None and job.misfire_policy == MISFIRE_RUN_ONCE:
                grace = timedelta.max
            if now - launch.scheduled_at > grace:
                log.warning("launch %s was never dispatched and is too late now", launch.run_id)
                stale.append(launch.run_id)
                continue
            log.info("dispatching launch %s recorded by a previous leader", launch.run_id)
            self.launch(launch.job_name, scheduled_at=launch.scheduled_at, run_id=launch.run_id)
        if stale:
            self._spawn(self._close(*stale), "close-stale-launches")

    async def _adopt(self, execution: Execution) -> None:
        job = self._store.state.get_job(execution.job_name)
        if job is None:
            return
        await self._run(job, execution, execution.node_name, adopt=True)

    async def report_done(self, reported: Execution) -> str:
        """A node's fallback report of a finished run (Dkron's ExecutionDone)."""
        state = self._store.state
        job = state.get_job(reported.job_name)
        if job is None:
            raise NotFound("grpc: Received execution done for a deleted job")
        stored = state.get_execution(reported.job_name, reported.id)
        if stored is not None:
            if stored.finished_at is not None:
                return "saved"  # the stream (or an earlier report) got there first
            reported = dataclasses.replace(
                stored,
                success=reported.success,
                output=reported.output,
                finished_at=reported.finished_at or _now(),
            )
        await self._finish(job, reported)
        return "saved"

    async def _finish(self, job: Job, execution: Execution) -> None:
        current = self._store.state.get_job(job.name) or job
        if current.processors:
            result = await self._runtime.process(
                _processor_view(execution), current.processors, reporting_node=self._node_name
            )
            execution = dataclasses.replace(
                execution,
                output=result.execution.output,
                success=result.execution.success,
                processor_errors=result.errors,
            )
        try:
            stored_job, status = await self._store.apply(FinishExecution(execution))
        except AlreadyFinished:
            return  # reported twice (stream and fallback): the first report did the rest
        except (StoreError, ReplicationError) as exc:
            log.warning("execution of %r finished but was not stored: %s", job.name, exc)
            return
        if not self._store.is_leader:
            return  # retries and children belong to the leader that adopts the run
        if self.stopping:
            return  # the node is shutting down: no retries, no children, from it
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
            if latest is None:
                return
            node = execution.node_name
            if latest.retry_any_node:
                fresh = self._targets(latest)
                if fresh:
                    node = random.choice(fresh)
            await self._attempt(latest, retry, node)
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
        if self._notifier is None or not self._notifier.active:
            return
        try:
            await self._notifier.pre(job, execution)
        except Exception:
            log.exception("pre-notification for %r not sent", job.name)

    async def _notify_post(self, job: Job, execution: Execution) -> None:
        # Not even the run's attempts are gathered (a pass over the job's history) when
        # no notification is configured.
        if self._notifier is None or not self._notifier.active:
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


def _with_result(execution: Execution, result: Execution) -> Execution:
    """The leader's record of an attempt with the node's result in it."""
    return dataclasses.replace(
        execution, success=result.success, output=result.output, finished_at=result.finished_at
    )


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


def _processor_view(execution: Execution) -> Execution:
    """The fields Dkron's processors receive: a copy without the kernel's own
    (``scheduled_at``, ``run_id``), so processors' wire bytes stay Dkron's."""
    return Execution(
        job_name=execution.job_name,
        success=execution.success,
        output=execution.output,
        node_name=execution.node_name,
        group=execution.group,
        attempt=execution.attempt,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
    )
