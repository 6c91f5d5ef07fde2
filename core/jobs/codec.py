"""JSON in and out for Jobs and Executions, byte-compatible with Dkron v4.

Input follows Go's ``encoding/json`` as Dkron uses it (:mod:`plugin_sdk.gocompat.gojson`):
the create/update body is read with a ``json.Decoder`` (first value only, ``EOF`` for an
empty body), unknown keys are ignored, keys also match case-insensitively, a wrong type is
reported with Go's message once the whole value has been read, and the time fields use
Go's RFC 3339 parser and its messages (:mod:`plugin_sdk.gocompat.gotime`). Output
dictionaries carry Dkron's field order; ``go_json_dumps`` renders them the way gin does
(HTML-safe escaping, no spaces, or four-space indentation for ``?pretty``).

Which fields there are, their keys, Go types and when they are omitted come from the
field tables in :mod:`core.jobs.model`; this module holds only how each kind of field is
read and written.

Known differences, all for inputs no client sends on purpose: times keep microseconds (Go
keeps nanoseconds); years outside 1..9999 and offsets of 24 hours or more, which Go
accepts, are rejected; a processor whose config is ``null`` is stored as ``{}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from operator import attrgetter
from typing import Any

from core.jobs.model import EXECUTION_FIELDS, JOB_FIELDS, MISFIRE_SKIP, Execution, Job
from core.jobs.schema import Kind, Record
from plugin_sdk.gocompat.gojson import (
    KIND_NAMES,
    Decoding,
    Field,
    FieldDecoder,
    GoJSONError,
    Node,
    Struct,
    decode_bool,
    decode_go_text,
    decode_string,
    decode_string_list,
    go_json_dumps,
    integer_decoder,
    scan,
    string_map_decoder,
)
from plugin_sdk.gocompat.gotime import (
    GO_ZERO,
    ZERO_TIME,
    GoTimeError,
    format_go_time,
    format_go_time_in,
    load_location,
    parse_datetime_local,
    parse_go_time,
)

__all__ = [
    "ZERO_TIME",
    "GoTimeError",
    "JobDecodeError",
    "decode_go_text",
    "decode_job",
    "execution_from_json",
    "execution_to_json",
    "format_go_time",
    "go_json_dumps",
    "job_from_json",
    "job_keys",
    "job_to_json",
    "jobs_from_json",
    "parse_go_time",
]


class JobDecodeError(GoJSONError):
    """The body is not a Job as Go would decode it; ``str()`` is Go's error text."""


@contextmanager
def _job_errors() -> Iterator[None]:
    try:
        yield
    except JobDecodeError:
        raise
    except GoJSONError as err:
        raise JobDecodeError(str(err)) from None


# -- decoding: one decoder per kind of field --------------------------------------------------

_dec_config = string_map_decoder("plugin.Config")


def _dec_processors(node: Node, ctx: Decoding, struct: str, path: str, current: object) -> object:
    if node.kind == "null":
        return None
    if node.kind != "object":
        ctx.mismatch(KIND_NAMES[node.kind], "map[string]plugin.Config", struct, path)
        return current
    result: dict[str, dict[str, str]] = dict(current) if isinstance(current, dict) else {}
    for key, item in node.members:
        config = _dec_config(item, ctx, struct, path, None)
        result[key] = dict(config) if isinstance(config, dict) else {}
    return result


def _time_decoder(nullable: bool) -> FieldDecoder:
    def decode(node: Node, ctx: Decoding, struct: str, path: str, current: object) -> object:
        if node.kind == "null":
            # ntime.NullableTime clears itself; time.Time ignores null.
            return None if nullable else current
        if node.kind != "string":
            # A decoding error from an Unmarshaler stops Go's decoder at once.
            raise JobDecodeError("Time.UnmarshalJSON: input is not a JSON string")
        try:
            moment = parse_go_time(node.raw)
        except GoTimeError as err:
            if nullable:
                # NullableTime also takes HTML datetime-local (UTC) but reports the
                # RFC 3339 error when that fails too.
                try:
                    return parse_datetime_local(node.text)
                except GoTimeError:
                    pass
            raise JobDecodeError(str(err)) from None
        if not nullable and moment == GO_ZERO:
            return None
        return moment

    return decode


def _dec_output(node: Node, ctx: Decoding, struct: str, path: str, current: object) -> object:
    text = decode_string(node, ctx, struct, path, None)
    return text.encode("utf-8") if isinstance(text, str) else current


def _struct_decoder(kind: Kind) -> FieldDecoder:
    record = kind.record
    assert record is not None
    fields = _struct(record)

    def decode(node: Node, ctx: Decoding, struct: str, path: str, current: object) -> object:
        if node.kind == "null":
            return None
        if node.kind != "object":
            ctx.mismatch(KIND_NAMES[node.kind], kind.go_type, struct, path)
            return current
        # A pointer to a struct: Go fills the existing struct when there is one.
        target = dataclasses.replace(current) if isinstance(current, record.cls) else record.cls()
        fields.decode_into(target, node, ctx, path + ".")
        return target

    return decode


_DECODERS: dict[str, Callable[[Kind], FieldDecoder]] = {
    "string": lambda kind: decode_string,
    "bool": lambda kind: decode_bool,
    "int": lambda kind: integer_decoder(kind.go_type, signed=True),
    "int64": lambda kind: integer_decoder(kind.go_type, signed=True),
    "uint": lambda kind: integer_decoder(kind.go_type, signed=False),
    "time": lambda kind: _time_decoder(nullable=False),
    "nullable_time": lambda kind: _time_decoder(nullable=True),
    "string_map": lambda kind: string_map_decoder(kind.go_type),
    "string_list": lambda kind: decode_string_list,
    "processors": lambda kind: _dec_processors,
    "output": lambda kind: _dec_output,
    "struct": _struct_decoder,
}


def _struct(record: Record) -> Struct:
    return Struct(
        record.go_name,
        {
            spec.name: Field(spec.name, _DECODERS[spec.kind.name](spec.kind))
            for spec in record
            if not spec.derived
        },
    )


_JOB = _struct(JOB_FIELDS)
_EXECUTION = _struct(EXECUTION_FIELDS)


def _decode_job(node: Node, ctx: Decoding, job: Job, go_type: str) -> Job:
    if node.kind == "object":
        _JOB.decode_into(job, node, ctx, "")
    elif node.kind != "null":
        ctx.mismatch(KIND_NAMES[node.kind], go_type, "", "")
    if not job.misfire_policy:
        job.misfire_policy = MISFIRE_SKIP
    return job


def job_from_json(data: bytes | str | object) -> Job:
    """Decode a create/update body as Dkron's API does.

    ``data`` is the raw body (``bytes``/``str``) or an already-parsed JSON value. The job
    starts as Dkron's preset (``concurrency: "allow"``, ``id: ""``). Raises
    ``JobDecodeError`` whose text is Go's, e.g. ``EOF`` for an empty body.
    """
    return decode_job(data)[0]


def decode_job(data: bytes | str | object) -> tuple[Job, list[str]]:
    """:func:`job_from_json`, and the keys it ignored (``retry_backoff.dealy`` for a
    nested one), in the body's order."""
    with _job_errors():
        ctx = Decoding()
        job = _decode_job(scan(data, stream=True), ctx, Job(id=""), "dkron.Job")
        ctx.finish()
    return job, ctx.unknown


def job_keys() -> list[str]:
    """The top-level keys a job body may have."""
    return JOB_FIELDS.keys


def jobs_from_json(data: bytes | str | object) -> list[Job]:
    """Decode a backup file (``POST /v1/restore``): a JSON array of jobs, ``json.Unmarshal`` style.

    Each job starts from Go's zero value (no ``concurrency`` preset). ``null`` is an empty
    list; a ``null`` element is rejected (Dkron would crash on it).
    """
    with _job_errors():
        root = scan(data, stream=False)
        ctx = Decoding()
        jobs: list[Job] = []
        if root.kind == "array":
            for element in root.elements:
                if element.kind == "null":
                    raise JobDecodeError("null job in list")
                jobs.append(_decode_job(element, ctx, Job(id="", concurrency=""), "dkron.Job"))
        elif root.kind != "null":
            ctx.mismatch(KIND_NAMES[root.kind], "[]*dkron.Job", "", "")
        ctx.finish()
    return jobs


def execution_from_json(data: bytes | str | object) -> Execution:
    """Decode an Execution as emitted by ``execution_to_json`` (``id`` and
    ``output_truncated`` are derived, so they are ignored)."""
    with _job_errors():
        root = scan(data, stream=False)
        ctx = Decoding()
        execution = Execution()
        if root.kind == "object":
            _EXECUTION.decode_into(execution, root, ctx, "")
        elif root.kind != "null":
            ctx.mismatch(KIND_NAMES[root.kind], "dkron.Execution", "", "")
        ctx.finish()
    return execution


# -- encoding: one encoder per kind of field ---------------------------------------------------

# An encoder gets the value and the zone to show times in (None: the zone they carry).
_Encoder = Callable[[Any, "tzinfo | None"], object]


def _enc_time(moment: datetime | None, zone: tzinfo | None) -> str:
    return format_go_time(moment) if zone is None else format_go_time_in(moment, zone)


def _enc_nullable_time(moment: datetime | None, zone: tzinfo | None) -> str | None:
    return None if moment is None else _enc_time(moment, zone)


def _sorted_map(mapping: dict[str, str] | None, zone: tzinfo | None = None) -> object:
    # Go's encoder writes map keys in sorted order (bytewise, i.e. code point order).
    return None if mapping is None else dict(sorted(mapping.items()))


def _enc_list(items: list[str] | None, zone: tzinfo | None) -> object:
    return None if items is None else list(items)


def _enc_processors(processors: dict[str, dict[str, str]] | None, zone: tzinfo | None) -> object:
    if processors is None:
        return None
    return {name: _sorted_map(config) for name, config in sorted(processors.items())}


def _enc_output(output: bytes, zone: tzinfo | None) -> str:
    return decode_go_text(output)


def _struct_encoder(kind: Kind) -> _Encoder:
    assert kind.record is not None
    encode = _RecordEncoder(kind.record)
    return lambda value, zone: encode(value, zone, None)


_ENCODERS: dict[str, Callable[[Kind], _Encoder | None]] = {
    "string": lambda kind: None,
    "bool": lambda kind: None,
    "int": lambda kind: None,
    "int64": lambda kind: None,
    "uint": lambda kind: None,
    "time": lambda kind: _enc_time,
    "nullable_time": lambda kind: _enc_nullable_time,
    "string_map": lambda kind: _sorted_map,
    "string_list": lambda kind: _enc_list,
    "processors": lambda kind: _enc_processors,
    "output": lambda kind: _enc_output,
    "struct": _struct_encoder,
}


class _RecordEncoder:
    """Writes one record by its table: every field in order, then the omitted ones out.

    Reads all attributes with one ``attrgetter`` and builds the dict with one ``zip`` (a
    job list page encodes thousands of fields); only the fields whose kind needs it are
    converted.
    """

    def __init__(self, record: Record) -> None:
        self.keys = tuple(spec.name for spec in record)
        # A derived field without a property is only written when the encoder is given it;
        # it reads a placeholder attribute that is removed again.
        self.absent = tuple(
            spec.name for spec in record if spec.derived and not hasattr(record.cls, spec.source)
        )
        sources = [
            "__class__" if spec.name in self.absent else spec.source for spec in record.fields
        ]
        read = attrgetter(*sources)
        # attrgetter of one name returns the value itself, not a 1-tuple.
        self.read = read if len(sources) > 1 else lambda record: (read(record),)
        self.optional = tuple((spec.name, spec.default) for spec in record if spec.omitempty)
        self.convert = tuple(
            (spec.name, encode)
            for spec in record
            if (encode := _ENCODERS[spec.kind.name](spec.kind)) is not None
        )

    def __call__(
        self, record: object, zone: tzinfo | None, given: Mapping[str, object] | None
    ) -> dict[str, object]:
        out: dict[str, object] = dict(zip(self.keys, self.read(record), strict=True))
        if given is not None:
            out.update(given)  # keys of the table: they keep their place
        for key in self.absent:
            if given is None or key not in given:
                del out[key]
        for key, default in self.optional:
            value = out[key]
            if not value or value == default:
                del out[key]
        for key, encode in self.convert:
            if key in out:
                out[key] = encode(out[key], zone)
        return out


_JOB_ENCODER = _RecordEncoder(JOB_FIELDS)
_EXECUTION_ENCODER = _RecordEncoder(EXECUTION_FIELDS)


def job_to_json(job: Job) -> dict[str, object]:
    """The Job as Dkron serialises it, in Dkron's field order, then any non-default extension.

    Times are shown in the zone they carry (stored jobs are UTC; see ``stored_form``).
    """
    return _JOB_ENCODER(job, None, None)


def execution_to_json(
    execution: Execution,
    *,
    timezone: str = "",
    output_size_limit: int | None = None,
    list_item: bool,
) -> dict[str, object]:
    """The Execution as Dkron serialises it.

    ``list_item=True`` is ``GET /v1/jobs/:job/executions``: times are shown in the job's
    ``timezone`` (UTC when empty; Go's zero time is converted too, so a running execution
    of a job with a zone shows a shifted zero time exactly as Dkron does) and an
    ``output_truncated`` flag follows ``attempt``. Otherwise (single GET, ``/v1/busy``)
    times are UTC and there is no flag. ``output_size_limit`` (None or negative = no limit)
    keeps the last N bytes of the output.
    """
    zone = load_location(timezone) if list_item else UTC
    output = execution.output
    truncated = False
    if output_size_limit is not None and 0 <= output_size_limit < len(output):
        output = output[len(output) - output_size_limit :]
        truncated = True
    given: dict[str, object] = {"output": output}
    if list_item:
        given["output_truncated"] = truncated
    return _EXECUTION_ENCODER(execution, zone, given)
