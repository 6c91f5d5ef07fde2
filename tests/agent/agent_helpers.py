"""Helpers for the agent-run tests (imported by name; conftest modules shadow each other)."""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio

from core.agent.service import AgentRunService
from core.jobs.model import Execution
from core.plugins.runtime import PluginRuntime
from core.wire import execution_from_proto, execution_to_proto
from dkron_pb.types.v1 import agent_pb2, agent_pb2_grpc, dkron_pb2

__all__ = ["Gate", "Node", "collect", "now", "request"]


@dataclass
class Node:
    """One agent: plugin runtime, service, gRPC server and a client channel to it."""

    name: str
    runtime: PluginRuntime
    service: AgentRunService
    server: grpc.aio.Server = field(init=False)
    channel: grpc.aio.Channel = field(init=False)
    stub: agent_pb2_grpc.AgentServiceStub = field(init=False)
    address: str = ""

    async def start(self) -> None:
        self.server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.service, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = agent_pb2_grpc.AgentServiceStub(self.channel)

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(0)
        await self.service.close()
        await self.runtime.close()
        # Runs the runtime's close ended still finish their bookkeeping.
        await asyncio.wait_for(self.service.idle.wait(), 10)


class Gate:
    """A file the test creates to let a shell command go on (no sleeps in the test)."""

    def __init__(self, directory: Path, name: str = "gate") -> None:
        self.path = directory / name

    def wait(self) -> str:
        """Shell text that blocks until the gate is opened."""
        return f"until [ -e {shlex.quote(str(self.path))} ]; do sleep 0.01; done"

    def open(self) -> None:
        self.path.touch()


def request(
    command: str,
    *,
    job: str = "job1",
    run_id: str = "",
    attempt: int = 1,
    term: int = 0,
    adopt_only: bool = False,
    timeout: str = "",
    executor: str = "shell",
    started_at: datetime | None = None,
) -> agent_pb2.AgentRunRequest:
    execution = Execution(
        job_name=job, attempt=attempt, run_id=run_id, group=1, started_at=started_at
    )
    return agent_pb2.AgentRunRequest(
        job=dkron_pb2.Job(
            name=job,
            executor=executor,
            executor_config={"command": command, "shell": "true"},
            timeout=timeout,
        ),
        execution=execution_to_proto(execution),
        term=term,
        adopt_only=adopt_only,
    )


async def collect(call: grpc.aio.UnaryStreamCall) -> list[Execution]:  # type: ignore[type-arg]
    """Every (remaining) message of an AgentRun stream, decoded."""
    messages = []
    while (message := await call.read()) is not grpc.aio.EOF:
        messages.append(execution_from_proto(message.execution))
    return messages


def now() -> datetime:
    return datetime.now(UTC)
