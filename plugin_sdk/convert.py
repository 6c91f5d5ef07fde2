"""Dkron's ``types.v1`` Execution message <-> :class:`plugin_sdk.models.Execution`.

The one conversion of an Execution, for plugins and for the host (``core.wire``
re-exports it). ``scheduled_at`` and ``processor_errors`` have no field in the message;
``run_id`` travels when set.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from dkron_pb.types.v1 import dkron_pb2
from plugin_sdk.models import Execution

__all__ = [
    "datetime_from_timestamp",
    "execution_from_proto",
    "execution_to_proto",
    "optional_datetime",
    "timestamp_from_datetime",
]


def timestamp_from_datetime(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def datetime_from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime (microseconds: Python keeps no nanoseconds)."""
    return datetime.fromtimestamp(stamp.seconds, tz=UTC).replace(microsecond=stamp.nanos // 1000)


def optional_datetime(message: Message, field: str) -> datetime | None:
    """A message's Timestamp field as a datetime, or None when it is unset."""
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return datetime_from_timestamp(stamp)


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
