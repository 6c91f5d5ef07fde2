"""The agent-run service every node serves: run one job through its executor plugin
and stream the execution back (Dkron's ``AgentService.AgentRun``).

Cluster extensions (see ``core.agent.runs``): requests carry the leader's Raft term
and a run id; a node refuses deposed leaders, runs each (run_id, attempt) at most
once, lets a repeat request attach to the run, and reports a result no stream took.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from core.agent.runs import ReportDone, Run, RunKey, RunTable, Subscription, TermFence
from core.jobs.model import Execution, Job
from core.plugins.runtime import PluginRuntime
from core.wire import RunRefused, execution_from_proto, execution_to_proto, job_from_proto
from dkron_pb.types.v1 import agent_pb2, agent_pb2_grpc
from plugin_sdk.gocompat import parse_go_duration

__all__ = ["AgentRunService"]

log = logging.getLogger("dkron.agent")


class AgentRunService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        runtime: PluginRuntime,
        node_name: str,
        *,
        state_dir: Path | None = None,
        report_done: ReportDone | None = None,
        max_results: int = 10_000,
        result_ttl: float = 3600.0,
        report_deadline: float = 300.0,
    ) -> None:
        self._node_name = node_name
        self._fence = TermFence(state_dir)
        self._runs = RunTable(
            runtime,
            report_done=report_done,
            max_results=max_results,
            result_ttl=result_ttl,
            report_deadline=report_deadline,
        )
        # Running executions by ``Execution.id`` (the server checks these on failover).
        self.active: dict[str, asyncio.Task[None]] = self._runs.active
        self.idle = self._runs.idle

    def highest_term(self) -> int:
        """The highest leader term this node has admitted (0: never fenced)."""
        return self._fence.highest

    def running(self) -> list[Execution]:
        """Executions running on this node, as started (output not included)."""
        return self._runs.running()

    def streams(self, execution_id: str) -> int:
        """How many leader streams are attached to a running execution (0 if none)."""
        run = self._runs.get(execution_id)
        return 0 if run is None else run.streams

    async def kill_all(self, reason: str) -> int:
        """Kill every execution running here, recording ``reason`` and the output so far."""
        return await self._runs.kill_all(reason)

    async def close(self, grace: float = 0.0) -> None:
        """Stop retrying reports, after up to ``grace`` seconds for those in flight to get
        through; plugin runs are stopped by the runtime's close."""
        await self._runs.close(grace)

    def open_run(
        self, job: Callable[[], Job], execution: Execution, term: int, adopt_only: bool
    ) -> Subscription:
        """Start ``execution`` (or attach to it when this (run id, attempt) is known here)
        and subscribe to its output and result. ``job`` is called only for a new run.
        Raises RunRefused with the status a remote leader's stream would end with."""
        refusal = self._fence.refusal(term)
        if refusal is not None:
            log.warning("%s", refusal)
            raise RunRefused(grpc.StatusCode.FAILED_PRECONDITION, refusal)
        key: RunKey | None = (execution.run_id, execution.attempt) if execution.run_id else None
        run = None if key is None else self._runs.find(key)
        if run is None:
            if adopt_only:
                raise RunRefused(
                    grpc.StatusCode.NOT_FOUND,
                    f"run {execution.run_id} attempt {execution.attempt} is not known "
                    f"on node {self._node_name}",
                )
            run = self._start(job(), execution, key)
        else:
            log.info(
                "attaching a stream to run %r attempt %d (%s)",
                execution.run_id,
                execution.attempt,
                "running" if run.final is None else "finished",
            )
        # Subscribing and taking the output so far happen with no await in between, so
        # the subscriber sees every byte of output exactly once.
        return run.subscribe()

    def _start(self, job: Job, execution: Execution, key: RunKey | None) -> Run:
        if not job.executor:
            raise RunRefused(
                grpc.StatusCode.INVALID_ARGUMENT, "grpc_agent: No executor defined, nothing to do"
            )
        timeout = None
        if job.timeout:
            try:
                nanos = parse_go_duration(job.timeout)
            except ValueError as exc:
                raise RunRefused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"grpc_agent: invalid job timeout {job.timeout!r}: {exc}",
                ) from None
            # A zero or negative limit would kill the run at once: treat it as none.
            timeout = nanos / 1e9 if nanos > 0 else None
        # The leader stamps started_at and the node so the execution id is known (and
        # the forbid check committed) before any work starts; fill in what it did not.
        execution.started_at = execution.started_at or datetime.now(UTC)
        execution.node_name = execution.node_name or self._node_name
        return self._runs.start(execution, key, job, timeout)

    async def AgentRun(
        self, request: agent_pb2.AgentRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[agent_pb2.AgentRunStream]:
        try:
            subscription = self.open_run(
                lambda: job_from_proto(request.job),
                execution_from_proto(request.execution),
                request.term,
                request.adopt_only,
            )
        except RunRefused as refused:
            await context.abort(refused.code, refused.detail)
        run = subscription.run
        context.add_done_callback(lambda _context: subscription.close())
        try:
            if run.final is None:
                first = execution_to_proto(run.execution)
                first.output = run.output_so_far()
                yield agent_pb2.AgentRunStream(execution=first)
                partial = execution_to_proto(run.execution)
                while (chunk := await subscription.next()) is not None:
                    partial.output = chunk
                    yield agent_pb2.AgentRunStream(execution=partial)
            assert run.final is not None
            yield agent_pb2.AgentRunStream(execution=execution_to_proto(run.final))
            # gRPC asks for the next message only once the final one was sent.
            subscription.taken()
        finally:
            subscription.close()
