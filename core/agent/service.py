"""The agent-run service every node serves: run one job through its executor plugin
and stream the execution back (Dkron's ``AgentService.AgentRun``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio

from core.agent.convert import execution_from_proto, execution_to_proto
from core.plugins.runtime import PluginRuntime
from dkron_pb.types.v1 import agent_pb2, agent_pb2_grpc
from plugin_sdk.goformats import parse_go_duration

__all__ = ["AgentRunService"]

log = logging.getLogger("dkron.agent")


class AgentRunService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, runtime: PluginRuntime, node_name: str) -> None:
        self._runtime = runtime
        self._node_name = node_name
        self.active: dict[str, asyncio.Task[Any]] = {}
        self.idle = asyncio.Event()
        self.idle.set()

    async def AgentRun(
        self, request: agent_pb2.AgentRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[agent_pb2.AgentRunStream]:
        job = request.job
        execution = execution_from_proto(request.execution)
        if not job.executor:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "grpc_agent: No executor defined, nothing to do"
            )
        # The leader stamps started_at and the node so the execution id is known (and
        # the forbid check committed) before any work starts; fill in what it did not.
        execution.started_at = execution.started_at or datetime.now(UTC)
        execution.node_name = execution.node_name or self._node_name
        yield agent_pb2.AgentRunStream(execution=execution_to_proto(execution))

        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        timeout = None
        if job.timeout:
            timeout = parse_go_duration(job.timeout) / 1e9
        run = asyncio.create_task(
            self._runtime.execute(
                job.executor,
                job.name,
                dict(job.executor_config),
                on_output=lambda chunk, _is_error: chunks.put_nowait(chunk),
                timeout=timeout,
            ),
            name=f"run-{job.name}",
        )
        run.add_done_callback(lambda _: chunks.put_nowait(None))
        key = execution.id
        self.active[key] = run
        self.idle.clear()
        try:
            partial = execution_to_proto(execution)
            while (chunk := await chunks.get()) is not None:
                partial.output = chunk
                yield agent_pb2.AgentRunStream(execution=partial)
            outcome = run.result()
        finally:
            if not run.done():  # the leader went away: the run is not abandoned silently
                log.warning("agent-run stream closed; execution %s keeps running", key)
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(run)
            self.active.pop(key, None)
            if not self.active:
                self.idle.set()
        execution.success = outcome.success
        execution.output = outcome.output
        execution.finished_at = datetime.now(UTC)
        yield agent_pb2.AgentRunStream(execution=execution_to_proto(execution))
