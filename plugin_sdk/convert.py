"""Conversions between the SDK's dataclasses and the wire messages."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from dkron_pb.types.v1 import dkron_pb2
from plugin_sdk.models import Execution

__all__ = ["execution_from_proto", "execution_to_proto"]


def _time_from_proto(ts: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    if not present:
        return None
    return datetime.fromtimestamp(ts.seconds, tz=UTC).replace(microsecond=ts.nanos // 1000)


def execution_from_proto(message: dkron_pb2.Execution) -> Execution:
    return Execution(
        job_name=message.job_name,
        success=message.success,
        output=message.output,
        node_name=message.node_name,
        group=message.group,
        attempt=message.attempt,
        started_at=_time_from_proto(message.started_at, message.HasField("started_at")),
        finished_at=_time_from_proto(message.finished_at, message.HasField("finished_at")),
    )


def execution_to_proto(execution: Execution) -> dkron_pb2.Execution:
    message = dkron_pb2.Execution(
        job_name=execution.job_name,
        success=execution.success,
        output=execution.output,
        node_name=execution.node_name,
        group=execution.group,
        attempt=execution.attempt,
    )
    if execution.started_at is not None:
        message.started_at.FromDatetime(execution.started_at)
    if execution.finished_at is not None:
        message.finished_at.FromDatetime(execution.finished_at)
    return message
