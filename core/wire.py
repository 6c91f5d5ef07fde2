"""The kernel's one wire module: Dkron's ``types.v1`` messages <-> ``core.jobs`` records.

Every service that puts a Job or an Execution on the wire (the agent's run stream, the
dispatcher, the server's gRPC service, the processors) converts here. The Execution half
and the timestamps are the SDK's (:mod:`plugin_sdk.convert`, the lowest layer that knows
both the message and the class), so host and plugins convert an Execution the same way.
"""

from __future__ import annotations

import grpc

from core.jobs.model import CONCURRENCY_ALLOW, Job
from dkron_pb.types.v1 import dkron_pb2
from plugin_sdk.convert import (
    datetime_from_timestamp,
    execution_from_proto,
    execution_to_proto,
    optional_datetime,
    timestamp_from_datetime,
)

__all__ = [
    "RunRefused",
    "datetime_from_timestamp",
    "execution_from_proto",
    "execution_to_proto",
    "job_from_proto",
    "job_to_proto",
    "optional_datetime",
    "timestamp_from_datetime",
]


class RunRefused(Exception):
    """A node refused an agent run: the in-process form of the AgentRun stream's abort,
    with the status code a remote leader would see (a leader dispatching to its own
    node calls the agent directly, without the loopback stream)."""

    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def job_to_proto(job: Job) -> dkron_pb2.Job:
    """What a node needs to run the job (Dkron's agent reads no more than this)."""
    return dkron_pb2.Job(
        name=job.name,
        timezone=job.timezone,
        schedule=job.schedule,
        executor=job.executor,
        executor_config=dict(job.executor_config or {}),
        retries=job.retries,
        concurrency=job.concurrency,
        tags=dict(job.tags or {}),
        timeout=job.timeout,
    )


def job_from_proto(message: dkron_pb2.Job) -> Job:
    return Job(
        name=message.name,
        timezone=message.timezone,
        schedule=message.schedule,
        executor=message.executor,
        executor_config=dict(message.executor_config) or None,
        retries=message.retries,
        concurrency=message.concurrency or CONCURRENCY_ALLOW,
        tags=dict(message.tags) or None,
        timeout=message.timeout,
    )
