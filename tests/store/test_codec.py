"""The store's encoding: every command and record comes back exactly; anything else is
refused with a reason (it is what a peer's log entry is checked against)."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta, timezone

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.jobs.model import Execution, Job, RetryBackoff
from core.store.codec import CodecError, decode_command, encode_command
from core.store.commands import (
    AclBootstrap,
    AclPolicy,
    AclToken,
    Barrier,
    Batch,
    CloseLaunches,
    DeleteJob,
    FinishExecution,
    Launch,
    RecordLaunches,
    SetJob,
    SetNext,
    StartExecution,
)

text = st.text(max_size=20)
strings = st.dictionaries(text, text, max_size=3)
zones = [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(zones)
)
maybe_moment = st.none() | moments


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    backoff = draw(
        st.none() | st.builds(RetryBackoff, delay=text, exponential=st.booleans(), max=text)
    )
    return Job(
        name=draw(text), id=draw(st.none() | text), displayname=draw(text),
        timezone=draw(text), schedule=draw(text), success_count=draw(st.integers(0, 2**40)),
        last_success=draw(maybe_moment), disabled=draw(st.booleans()),
        tags=draw(st.none() | strings), metadata=draw(st.none() | strings),
        dependent_jobs=draw(st.none() | st.lists(text, max_size=3)),
        processors=draw(st.none() | st.dictionaries(text, strings, max_size=2)),
        executor_config=draw(st.none() | strings), next=draw(maybe_moment),
        starts_at=draw(maybe_moment), retry_backoff=backoff, retry_any_node=draw(st.booleans()),
    )  # fmt: skip


executions = st.builds(
    Execution, job_name=text, started_at=maybe_moment, finished_at=maybe_moment,
    success=st.booleans(), output=st.binary(max_size=64), node_name=text,
    group=st.integers(0, 2**63 - 1), attempt=st.integers(0, 10), scheduled_at=maybe_moment,
    run_id=text, processor_errors=st.lists(text, max_size=2),
)  # fmt: skip
commands = st.one_of(
    st.builds(SetJob, job=jobs(), merge=st.booleans()),
    st.builds(DeleteJob, name=text),
    st.builds(SetNext, updates=st.lists(st.tuples(text, maybe_moment), max_size=3).map(tuple)),
    st.builds(
        RecordLaunches,
        launches=st.lists(
            st.builds(
                Launch,
                run_id=text,
                job_name=text,
                scheduled_at=moments,
                group=st.integers(0, 2**62),
                term=st.integers(0, 99),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(
        StartExecution, execution=executions, check_forbid=st.booleans(), term=st.integers(0, 9)
    ),
    st.builds(
        Batch,
        commands=st.lists(
            st.builds(StartExecution, execution=executions)
            | st.builds(FinishExecution, execution=executions),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(CloseLaunches, run_ids=st.lists(text, max_size=3).map(tuple)),
    st.builds(Barrier, term=st.integers(0, 2**31)),
    st.builds(
        AclBootstrap,
        token=st.builds(
            AclToken,
            accessor_id=text,
            secret_hash=text,
            name=text,
            type=text,
            policies=st.lists(text, max_size=2).map(tuple),
            create_time=moments,
        ),
        policy=st.builds(AclPolicy, name=text, rules=text),
    ),
)


@settings(max_examples=300, deadline=None)
@given(commands)
def test_every_command_comes_back_exactly(command: object) -> None:
    decoded = decode_command(encode_command(command))  # type: ignore[arg-type]
    assert decoded == command
    # Times keep their offset, not only their instant.
    for before, after in zip(_times(command), _times(decoded), strict=True):
        assert before.utcoffset() == after.utcoffset()


def _times(value: object) -> list[datetime]:
    if isinstance(value, datetime):
        return [value]
    if isinstance(value, tuple | list):
        return [t for item in value for t in _times(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _times(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [t for name in value.__dataclass_fields__ for t in _times(getattr(value, name))]
    return []


def _framed(body: bytes, version: int = 1) -> bytes:
    return bytes((version,)) + zlib.crc32(body).to_bytes(4, "big") + body


def test_a_damaged_command_fails_its_checksum() -> None:
    payload = bytearray(encode_command(DeleteJob("some-job")))
    payload[-2] ^= 0x01  # one bit, inside the job's name
    with pytest.raises(CodecError, match="fails its checksum"):
        decode_command(bytes(payload))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "non-empty bytes"),
        (_framed(msgpack.packb([2, {"name": "x"}]), version=0), "format byte 0"),
        (_framed(msgpack.packb([2, {"name": "x"}]), version=2), "format 2 was written by a newer"),
        (_framed(b"\xc1"), "not valid msgpack"),
        (_framed(msgpack.packb([99, {}])), "unknown command tag 99"),
        (_framed(msgpack.packb([2, {"name": 5}])), "DeleteJob.name: expected str"),
        (_framed(msgpack.packb([2, {"nmae": "x"}])), "unknown field 'nmae'"),
        (_framed(msgpack.packb([1, {"job": {"name": "x", "disabled": 1}}])), "expected bool"),
        (_framed(msgpack.packb([9, {"term": True}])), "expected int"),
        (
            _framed(msgpack.packb([3, {"updates": [["j", [1, 99999]]]}])),
            r"SetNext.updates\[0\]\[1\]: expected a time",
        ),
        # A Batch may hold starts and finishes only, not (say) an ACL bootstrap.
        (_framed(msgpack.packb([10, {"commands": [[2, {"name": "x"}]]}])), "not allowed here"),
    ],
)
def test_anything_else_is_refused_with_a_reason(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_command(payload)


def _snapshot_bytes(port: int) -> bytes:
    import io

    from core.jobs.model import Job as _Job
    from core.store.codec import write_snapshot
    from core.store.state import StoreState

    state = StoreState()
    state.jobs["job"] = _Job(name="job", schedule="@every 1s", executor="shell")
    out = io.BytesIO()
    raft = {"entries": [[b"\x01", 2, 1], [b"\x01", 1, 1]], "cluster": [f"127.0.0.1:{port}"]}
    write_snapshot(out, state.snapshot_sections(), raft)
    return out.getvalue()


@pytest.mark.parametrize("port", [20000, 28084, 32767, 40000, 60999])
def test_a_snapshot_damaged_anywhere_in_its_stream_is_refused(port: int) -> None:
    """Ten zero bytes at every offset after the header: each load must fail with a
    CodecError. Some deflate damage raises zlib.error, which is not an OSError; it
    escaped, and pysyncobj then started from the journal alone, ignoring the snapshot."""
    import io

    from core.store.codec import read_snapshot

    original = _snapshot_bytes(port)
    read_snapshot(io.BytesIO(original), "snapshot.bin")  # the intact file loads
    for offset in range(20, len(original) - 10):
        damaged = bytearray(original)
        if damaged[offset : offset + 10] == b"\x00" * 10:
            continue
        damaged[offset : offset + 10] = b"\x00" * 10
        with pytest.raises(CodecError):
            read_snapshot(io.BytesIO(bytes(damaged)), "snapshot.bin")
