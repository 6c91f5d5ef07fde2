"""Execution history kept compactly: one immutable ``bytes`` record per execution.

A stored :class:`Execution` (a slotted dataclass, three datetimes, a list, strings)
cost about 410 bytes beside its output (with its id as a dict key); the record below
~114. Records are decoded into models only when something asks (the API, the
dispatcher), and a job's
history is a tuple of records replaced on every change, so a snapshot can hold the
old tuple while the state moves on.

Record layout (little-endian), fixed: a snapshot's ``history`` section stores these
bytes as they are, so a change of layout is a new section name (see core.store.state).

    flags u8                 1 success, 2 started, 4 finished, 8 scheduled, 16 zones
    started, finished, scheduled  i64 each: microseconds since 1970-01-01 UTC (0 if unset)
    group i64, attempt i64
    len(node_name), len(run_id), len(processor_errors), len(output)  u32 each
    [zones: three i32, each time's UTC offset in seconds]   only with flag 16
    node_name, run_id (UTF-8), each processor error (u32 length + UTF-8), output

The job's name is not in the record (it is the history's key), nor the execution id:
that is ``<started_at UnixNano>-<node_name>``, derived from the record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone

from core.jobs.model import Execution

__all__ = [
    "decode",
    "encode",
    "find",
    "group_of",
    "is_finished",
    "is_valid",
    "record_id",
    "run_id_of",
]

_HEAD = struct.Struct("<BqqqqqIIII")
_ZONES = struct.Struct("<iii")
_LEN = struct.Struct("<I")
_I64 = struct.Struct("<q")
_STARTED_AT, _GROUP_AT = 1, 25  # offsets of two fields in _HEAD
_SUCCESS, _STARTED, _FINISHED, _SCHEDULED, _ZONED = 1, 2, 4, 8, 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_TEXT = "surrogatepass"  # any str round-trips
_zone_cache: dict[int, timezone] = {0: UTC}


def _micros(moment: datetime | None) -> tuple[int, int]:
    """(microseconds since the epoch, UTC offset in seconds) of an aware time."""
    if moment is None:
        return 0, 0
    offset = moment.utcoffset()
    return (moment - _EPOCH) // _US, 0 if not offset else int(offset.total_seconds())


def _moment(micros: int, offset: int) -> datetime:
    moment = _EPOCH + timedelta(microseconds=micros)
    if offset:
        zone = _zone_cache.get(offset)
        if zone is None:
            zone = _zone_cache.setdefault(offset, timezone(timedelta(seconds=offset)))
        moment = moment.astimezone(zone)
    return moment


def encode(execution: Execution) -> bytes:
    """The record of ``execution`` (its job name is not kept)."""
    started, started_zone = _micros(execution.started_at)
    finished, finished_zone = _micros(execution.finished_at)
    scheduled, scheduled_zone = _micros(execution.scheduled_at)
    flags = (
        (_SUCCESS if execution.success else 0)
        | (_STARTED if execution.started_at is not None else 0)
        | (_FINISHED if execution.finished_at is not None else 0)
        | (_SCHEDULED if execution.scheduled_at is not None else 0)
    )
    zoned = bool(started_zone or finished_zone or scheduled_zone)
    if zoned:
        flags |= _ZONED
    node = execution.node_name.encode("utf-8", _TEXT)
    run_id = execution.run_id.encode("utf-8", _TEXT)
    errors = execution.processor_errors
    head = _HEAD.pack(
        flags, started, finished, scheduled, execution.group, execution.attempt,
        len(node), len(run_id), len(errors), len(execution.output),
    )  # fmt: skip
    parts = [head]
    if zoned:
        parts.append(_ZONES.pack(started_zone, finished_zone, scheduled_zone))
    parts += (node, run_id)
    for error in errors:
        text = error.encode("utf-8", _TEXT)
        parts += (_LEN.pack(len(text)), text)
    parts.append(execution.output)
    return b"".join(parts)


def decode(record: bytes, job_name: str) -> Execution:
    """The model of a record (a new object each time: callers may change it)."""
    (
        flags, started, finished, scheduled, group, attempt, node_len, run_len, errors, _
    ) = _HEAD.unpack_from(record)  # fmt: skip
    at = _HEAD.size
    zones = (0, 0, 0)
    if flags & _ZONED:
        zones = _ZONES.unpack_from(record, at)
        at += _ZONES.size
    node = record[at : at + node_len].decode("utf-8", _TEXT)
    at += node_len
    run_id = record[at : at + run_len].decode("utf-8", _TEXT)
    at += run_len
    processor_errors = []
    for _ in range(errors):
        (size,) = _LEN.unpack_from(record, at)
        at += _LEN.size
        processor_errors.append(record[at : at + size].decode("utf-8", _TEXT))
        at += size
    return Execution(
        job_name=job_name,
        started_at=_moment(started, zones[0]) if flags & _STARTED else None,
        finished_at=_moment(finished, zones[1]) if flags & _FINISHED else None,
        success=bool(flags & _SUCCESS),
        output=record[at:],
        node_name=node,
        group=group,
        attempt=attempt,
        scheduled_at=_moment(scheduled, zones[2]) if flags & _SCHEDULED else None,
        run_id=run_id,
        processor_errors=processor_errors,
    )


def _node_at(record: bytes) -> int:
    return _HEAD.size + (_ZONES.size if record[0] & _ZONED else 0)


def record_id(record: bytes) -> str:
    """The execution id (Dkron's key) of a record."""
    flags, started = record[0], _HEAD.unpack_from(record)[1]
    if not flags & _STARTED:
        return ""
    at = _node_at(record)
    node_len = _HEAD.unpack_from(record)[6]
    return f"{started * 1000}-{record[at : at + node_len].decode('utf-8', _TEXT)}"


def _parse_id(execution_id: str) -> tuple[int, bytes] | None:
    """(started, in microseconds; node name) of an id; None for one no record has."""
    cut = execution_id.find("-", 1)  # the time may be negative
    if cut < 0:
        return None
    try:
        nanos = int(execution_id[:cut])
    except ValueError:
        return None
    if nanos % 1000:
        return None
    return nanos // 1000, execution_id[cut + 1 :].encode("utf-8", _TEXT)


def find(history: Sequence[bytes], execution_id: str) -> int:
    """The index of the record with ``execution_id`` in ``history``, or -1. From the
    newest back: a finish or a look-up is most often about a recent run."""
    if execution_id == "":
        for index in range(len(history) - 1, -1, -1):
            if not history[index][0] & _STARTED:
                return index
        return -1
    wanted = _parse_id(execution_id)
    if wanted is None:
        return -1
    micros, node = wanted
    size = len(node)
    try:
        started = _I64.pack(micros)
    except struct.error:  # an id no record can have (the API passes ids through)
        return -1
    head = _HEAD.unpack_from
    for index in range(len(history) - 1, -1, -1):
        record = history[index]
        # A bytes comparison in place first (no tuple, no ints): most records differ there.
        if not record.startswith(started, _STARTED_AT):
            continue
        fields = head(record)
        if not fields[0] & _STARTED or fields[6] != size:
            continue
        at = _node_at(record)
        if record[at : at + size] == node:
            return index
    return -1


def is_finished(record: bytes) -> bool:
    return bool(record[0] & _FINISHED)


def group_of(record: bytes) -> int:
    group: int = _HEAD.unpack_from(record)[4]
    return group


def run_id_of(record: bytes) -> str:
    fields = _HEAD.unpack_from(record)
    at = _node_at(record) + fields[6]
    return record[at : at + fields[7]].decode("utf-8", _TEXT)


def group_outcomes(history: Iterable[bytes], group: int) -> Iterator[tuple[bytes, int, bool]]:
    """(node name, attempt, success) of each finished record of ``group``."""
    head = _HEAD.unpack_from
    wanted = _I64.pack(group)
    for record in history:
        if not record.startswith(wanted, _GROUP_AT):
            continue
        flags, _, _, _, _, attempt, node_len, *_ = head(record)
        if not flags & _FINISHED:
            continue
        at = _node_at(record)
        yield record[at : at + node_len], attempt, bool(flags & _SUCCESS)


def is_valid(record: object) -> bool:
    """Whether ``record`` (read from a snapshot) has this layout: its lengths add up.
    (A damaged file fails gzip's CRC before this; this catches a record of another shape.)"""
    if type(record) is not bytes or len(record) < _HEAD.size:
        return False
    flags, *_, node_len, run_len, errors, output_len = _HEAD.unpack_from(record)
    at = _HEAD.size + (_ZONES.size if flags & _ZONED else 0)
    if flags >= 32:
        return False
    at += node_len + run_len
    for _ in range(errors):
        if at + _LEN.size > len(record):
            return False
        size: int = _LEN.unpack_from(record, at)[0]
        at += _LEN.size + size
    return bool(at + output_len == len(record))
