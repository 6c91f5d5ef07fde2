"""core.jobs models <-> types.v1 messages, for the agent-run stream."""

from __future__ import annotations

from core.jobs.model import Execution, Job
from dkron_pb.types.v1 import dkron_pb2
from plugin_sdk.convert import optional_datetime, timestamp_from_datetime

__all__ = ["execution_from_proto", "execution_to_proto", "job_from_proto", "job_to_proto"]


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
        concurrency=message.concurrency or "allow",
        tags=dict(message.tags) or None,
        timeout=message.timeout,
    )


def execution_to_proto(execution: Execution) -> dkron_pb2.Execution:
    message = dkron_pb2.Execution(
        job_name=execution.job_name,
        success=execution.success,
        output=execution.output,
        node_name=execution.node_name,
        group=execution.group,
        attempt=execution.attempt,
        run_id=execution.run_id,
    )
    if execution.started_at is not None:
        message.started_at.CopyFrom(timestamp_from_datetime(execution.started_at))
    if execution.finished_at is not None:
        message.finished_at.CopyFrom(timestamp_from_datetime(execution.finished_at))
    return message


def execution_from_proto(message: dkron_pb2.Execution) -> Execution:
    return Execution(
        job_name=message.job_name,
        success=message.success,
        output=message.output,
        node_name=message.node_name,
        group=message.group,
        attempt=message.attempt,
        started_at=optional_datetime(message, "started_at"),
        finished_at=optional_datetime(message, "finished_at"),
        run_id=message.run_id,
    )
