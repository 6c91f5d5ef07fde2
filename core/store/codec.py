"""How the store writes what it replicates and keeps: Raft commands and snapshots.

Nothing here pickles. A command is one format byte, a CRC-32, then msgpack of
``[tag, fields]``: the tag is a number fixed per command class (renaming a class or
moving a module changes nothing on disk), and every record is a map of field name to
value with defaults left out. The schema is the dataclasses themselves; values are
checked against their annotations on the way in, so an entry of the wrong shape is
refused with a :class:`CodecError` instead of corrupting the state.

A reader refuses a format newer than its own with a message naming both versions, and a
command whose CRC-32 does not match (damaged on disk or on the wire).
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
import types
import typing
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import IO, Any

import msgpack

from core.store.commands import (
    AclBootstrap,
    Barrier,
    Batch,
    CloseLaunches,
    Command,
    DeleteAclPolicy,
    DeleteAclToken,
    DeleteExecutions,
    DeleteJob,
    FinishExecution,
    RecordLaunches,
    SetAclPolicy,
    SetAclToken,
    SetJob,
    SetNext,
    StartExecution,
)

__all__ = [
    "COMMAND_FORMAT",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_MAGIC",
    "CodecError",
    "Streamed",
    "decode_command",
    "decode_record",
    "decode_time",
    "encode_command",
    "encode_record",
    "encode_time",
    "read_snapshot",
    "write_snapshot",
]

# Bump when an entry written by this version could not be read by the previous one.
COMMAND_FORMAT = 1
# Snapshot format 2 (issue 11): execution history as compact records, section "history".
# Format 1 files (section "executions", one map per execution) still load.
SNAPSHOT_FORMAT = 2
SNAPSHOT_MAGIC = b"DKRONPY-SNAPSHOT"
_SNAPSHOT_HEADER = struct.Struct("!16sI")

# Fixed forever: a tag names a command on disk and on the wire. Never reuse a number.
_COMMAND_TAGS: dict[type[Any], int] = {
    SetJob: 1,
    DeleteJob: 2,
    SetNext: 3,
    RecordLaunches: 4,
    StartExecution: 5,
    FinishExecution: 6,
    DeleteExecutions: 7,
    CloseLaunches: 8,
    Barrier: 9,
    Batch: 10,
    SetAclPolicy: 11,
    DeleteAclPolicy: 12,
    SetAclToken: 13,
    DeleteAclToken: 14,
    AclBootstrap: 15,
}
_COMMANDS_BY_TAG = {tag: cls for cls, tag in _COMMAND_TAGS.items()}


class CodecError(ValueError):
    """Bytes that are not a command or snapshot this version can read; says why."""


# -- values ------------------------------------------------------------------------------------

_ZONES: dict[int, timezone] = {0: UTC}

Encoder = Callable[[Any], Any]
# A decoder checks and converts one value; a CodecError it raises names the problem,
# and each enclosing record, list or map puts its own name in front on the way out
# (nothing is formatted while decoding succeeds).
Decoder = Callable[[Any], Any]


def encode_time(moment: datetime) -> Any:
    # msgpack's timestamp extension (decoded to a datetime in C, ten times faster than
    # building one here), plus the offset when it is not UTC: a wall-clock time with a
    # fixed zone (what the API received) comes back exactly, e.g. +02:00 stays +02:00.
    offset = moment.utcoffset()
    if not offset:
        return moment
    return [moment, int(offset.total_seconds())]


def decode_time(value: Any) -> datetime:
    if type(value) is datetime:  # only msgpack's timestamp extension decodes to one
        return value
    if type(value) is list and len(value) == 2:
        moment, offset = value
        if type(moment) is datetime and type(offset) is int and -86_400 < offset < 86_400:
            zone = _ZONES.get(offset)
            if zone is None:
                zone = _ZONES.setdefault(offset, timezone(timedelta(seconds=offset)))
            return moment.astimezone(zone)
    raise CodecError(f"expected a time, got {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _scalar(kind: type[Any]) -> Decoder:
    def decode(value: Any) -> Any:
        # bool is an int in Python, not in msgpack: keep them apart both ways.
        if type(value) is not kind:
            raise CodecError(f"expected {kind.__name__}, got {_shown(value)}")
        return value

    return decode


def _identity(value: Any) -> Any:
    return value


def _inside(where: str, exc: CodecError) -> CodecError:
    return CodecError(f"{where}: {exc}" if not str(exc).startswith(("[", ".")) else f"{where}{exc}")


def _codec_for(hint: Any) -> tuple[Encoder, Decoder]:
    """Encoder and checking decoder for one annotation."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint in (str, int, bool, bytes):
        return _identity, _scalar(hint)
    if hint is float:
        return float, _float
    if hint is datetime:
        return encode_time, decode_time
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        codec = _record_codec(hint)
        return codec.encode, codec.decode
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1 and len(options) < len(args):
            inner_encode, inner_decode = _codec_for(options[0])

            def encode_optional(value: Any) -> Any:
                return None if value is None else inner_encode(value)

            def decode_optional(value: Any) -> Any:
                return None if value is None else inner_decode(value)

            return encode_optional, decode_optional
        if all(isinstance(a, type) and a in _COMMAND_TAGS for a in options):
            return encode_command_value, _decode_tagged(tuple(options))
        raise TypeError(f"no codec for {hint!r}")
    if origin in (list, tuple) and (origin is list or (len(args) == 2 and args[1] is ...)):
        item_encode, item_decode = _codec_for(args[0])
        container = list if origin is list else tuple

        def encode_sequence(value: Any) -> list[Any]:
            return [item_encode(item) for item in value]

        def decode_sequence(value: Any) -> Any:
            if type(value) is not list:
                raise CodecError(f"expected a list, got {_shown(value)}")
            try:
                return container([item_decode(item) for item in value])
            except CodecError as exc:
                index = next(i for i, item in enumerate(value) if _fails(item_decode, item))
                raise _inside(f"[{index}]", exc) from None

        return encode_sequence, decode_sequence
    if origin is tuple:
        codecs = [_codec_for(a) for a in args]

        def encode_fixed(value: Any) -> list[Any]:
            return [enc(item) for (enc, _), item in zip(codecs, value, strict=True)]

        def decode_fixed(value: Any) -> tuple[Any, ...]:
            if type(value) is not list or len(value) != len(codecs):
                raise CodecError(f"expected {len(codecs)} values, got {_shown(value)}")
            decoded = []
            for index, ((_, decode), item) in enumerate(zip(codecs, value, strict=True)):
                try:
                    decoded.append(decode(item))
                except CodecError as exc:
                    raise _inside(f"[{index}]", exc) from None
            return tuple(decoded)

        return encode_fixed, decode_fixed
    if origin in (dict, typing.Mapping) or hint is dict:
        value_encode, value_decode = _codec_for(args[1]) if args else (_identity, _identity)

        def encode_map(value: Any) -> dict[str, Any]:
            return {key: value_encode(item) for key, item in value.items()}

        def decode_map(value: Any) -> dict[str, Any]:
            if type(value) is not dict:
                raise CodecError(f"expected a map, got {_shown(value)}")
            decoded = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise CodecError(f"expected string keys, got {_shown(key)}")
                try:
                    decoded[key] = value_decode(item)
                except CodecError as exc:
                    raise _inside(f"[{key!r}]", exc) from None
            return decoded

        return encode_map, decode_map
    raise TypeError(f"no codec for {hint!r}")


def _fails(decode: Decoder, item: Any) -> bool:
    try:
        decode(item)
    except CodecError:
        return True
    return False


def _float(value: Any) -> float:
    if type(value) not in (int, float):
        raise CodecError(f"expected a number, got {_shown(value)}")
    return float(value)


_SCALARS = (str, int, bool, bytes)


class _RecordCodec:
    """A dataclass as a map of its non-default fields."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.name = cls.__name__
        hints = typing.get_type_hints(cls)
        self.fields: list[tuple[str, Any, Encoder]] = []
        # name -> (scalar type checked inline, or None and the field's decoder)
        self.by_name: dict[str, tuple[type[Any] | None, Decoder]] = {}
        for item in dataclasses.fields(cls):
            if not item.init:
                continue
            hint = hints[item.name]
            encode, decode = _codec_for(hint)
            self.fields.append((item.name, _default_of(item), encode))
            self.by_name[item.name] = (hint if hint in _SCALARS else None, decode)

    def encode(self, record: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, default, encode in self.fields:
            value = getattr(record, name)
            if value is default or value == default:
                continue
            out[name] = encode(value)
        return out

    def decode(self, value: Any) -> Any:
        if type(value) is not dict:
            raise CodecError(f"expected a {self.name}, got {_shown(value)}")
        kwargs: dict[str, Any] = {}
        by_name = self.by_name
        for key, item in value.items():
            spec = by_name.get(key)
            if spec is None:
                raise CodecError(
                    f"{self.name}: unknown field {key!r} (written by a newer dkron-py?)"
                )
            kind, decode = spec
            if kind is not None:
                if type(item) is not kind:
                    raise CodecError(
                        f"{self.name}.{key}: expected {kind.__name__}, got {_shown(item)}"
                    )
                kwargs[key] = item
                continue
            try:
                kwargs[key] = decode(item)
            except CodecError as exc:
                raise _inside(f"{self.name}.{key}", exc) from None
        try:
            return self.cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"{self.name}: {exc}") from None


_MISSING = object()


def _default_of(item: dataclasses.Field[Any]) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return _MISSING


_CODECS: dict[type[Any], _RecordCodec] = {}


def _record_codec(cls: type[Any]) -> _RecordCodec:
    codec = _CODECS.get(cls)
    if codec is None:
        codec = _CODECS[cls] = _RecordCodec(cls)
    return codec


def encode_command_value(command: Any) -> list[Any]:
    tag = _COMMAND_TAGS.get(type(command))
    if tag is None:
        raise TypeError(f"{type(command).__name__} is not a store command")
    return [tag, _record_codec(type(command)).encode(command)]


def _decode_tagged(allowed: tuple[type[Any], ...] | None) -> Decoder:
    def decode(value: Any) -> Any:
        if (
            type(value) is not list
            or len(value) != 2
            or type(value[0]) is not int
            or type(value[1]) is not dict
        ):
            raise CodecError(f"expected a [tag, fields] command, got {_shown(value)}")
        cls = _COMMANDS_BY_TAG.get(value[0])
        if cls is None:
            raise CodecError(f"unknown command tag {value[0]} (written by a newer dkron-py?)")
        if allowed is not None and cls not in allowed:
            raise CodecError(f"a {cls.__name__} is not allowed here")
        return _record_codec(cls).decode(value[1])

    return decode


_decode_any_command = _decode_tagged(None)


# -- commands ----------------------------------------------------------------------------------


_CRC = struct.Struct("!I")


def encode_command(command: Command) -> bytes:
    """One Raft log entry's payload: format byte, CRC-32 of the body, msgpack body."""
    body: bytes = msgpack.packb(encode_command_value(command), use_bin_type=True, datetime=True)
    return bytes((COMMAND_FORMAT,)) + _CRC.pack(zlib.crc32(body)) + body


def decode_command(payload: bytes) -> Command:
    """The command in a log entry; :class:`CodecError` if it is not one we can read."""
    if not isinstance(payload, bytes) or not payload:
        raise CodecError(f"a store command must be non-empty bytes, got {_shown(payload)}")
    version = payload[0]
    if version > COMMAND_FORMAT:
        raise CodecError(
            f"store command format {version} was written by a newer dkron-py "
            f"(this one reads format {COMMAND_FORMAT}); upgrade this server"
        )
    if version < 1:
        raise CodecError(f"not a store command (format byte {version})")
    start = 1 + _CRC.size
    if len(payload) < start or _CRC.unpack_from(payload, 1)[0] != zlib.crc32(payload[start:]):
        raise CodecError("store command fails its checksum (the bytes were damaged)")
    try:
        value = msgpack.unpackb(payload[start:], raw=False, strict_map_key=True, timestamp=3)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CodecError(f"store command is not valid msgpack: {exc}") from None
    command: Command = _decode_any_command(value)
    return command


def encode_record(record: Any) -> dict[str, Any]:
    """A model (Job, Execution, ...) as the map written in snapshots."""
    return _record_codec(type(record)).encode(record)


def decode_record(cls: type[Any], value: Any, where: str = "") -> Any:
    try:
        return _record_codec(cls).decode(value)
    except CodecError as exc:
        raise _inside(where, exc) if where else exc from None


# -- snapshots ---------------------------------------------------------------------------------
#
# File layout: a 20-byte header (magic, format as a big-endian u32), then a gzip stream of
# msgpack values: ["raft", raft data], then one [section, items] per state section as the
# state writes it, then ["end", number of sections]. gzip's CRC and the end marker
# make a truncated or damaged file fail to load instead of loading partly.


@dataclasses.dataclass(frozen=True, slots=True)
class Streamed:
    """A section's list given as its length and an iterable: written item by item (the
    same bytes as the list), so a large section is never whole in memory, and no single
    call into msgpack holds the GIL for long when another thread writes it."""

    count: int
    items: typing.Iterable[Any]


_FLUSH_BYTES = 256 << 10


def write_snapshot(
    out: IO[bytes], sections: Iterator[tuple[str, Any]], raft: Any, *, level: int = 1
) -> None:
    out.write(_SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_FORMAT))
    packer = msgpack.Packer(use_bin_type=True, datetime=True)
    count = 0
    # No name or time in the gzip header: the same state makes the same bytes.
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, filename="", mtime=0) as stream:
        stream.write(packer.pack(["raft", raft]))
        for name, items in sections:
            if isinstance(items, Streamed):
                _write_streamed(stream, packer, name, items)
            else:
                stream.write(packer.pack([name, items]))
            count += 1
        stream.write(packer.pack(["end", count]))


def _write_streamed(stream: gzip.GzipFile, packer: Any, name: str, section: Streamed) -> None:
    buffer = bytearray(packer.pack_array_header(2))
    buffer += packer.pack(name)
    buffer += packer.pack_array_header(section.count)
    written = 0
    pack = packer.pack
    for item in section.items:
        buffer += pack(item)
        written += 1
        if len(buffer) >= _FLUSH_BYTES:
            stream.write(buffer)
            buffer.clear()
    stream.write(buffer)
    if written != section.count:
        # The header already promised `count` items: this file must not be kept.
        raise ValueError(f"snapshot section {name!r}: {written} items, not {section.count}")


def is_snapshot(head: bytes) -> bool:
    return head[: len(SNAPSHOT_MAGIC)] == SNAPSHOT_MAGIC


def read_snapshot(source: IO[bytes], name: str) -> tuple[Any, list[tuple[str, Any]]]:
    """(raft data, sections) from a snapshot file; :class:`CodecError` says what is wrong."""
    header = source.read(_SNAPSHOT_HEADER.size)
    if len(header) < _SNAPSHOT_HEADER.size or not is_snapshot(header):
        raise CodecError(f"{name} is not a dkron-py snapshot (no {SNAPSHOT_MAGIC!r} header)")
    _, version = _SNAPSHOT_HEADER.unpack(header)
    if version > SNAPSHOT_FORMAT:
        raise CodecError(
            f"{name} is snapshot format {version}, written by a newer dkron-py (this one "
            f"reads format {SNAPSHOT_FORMAT}); upgrade this server, or move the data dir "
            "away and let it rejoin the cluster"
        )
    sections: list[tuple[str, Any]] = []
    raft: Any = None
    ended = False
    try:
        with gzip.GzipFile(fileobj=source, mode="rb") as stream:
            unpacker = msgpack.Unpacker(stream, raw=False, strict_map_key=True, timestamp=3)
            for item in unpacker:
                if ended:
                    raise CodecError(f"{name}: data after the end marker")
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                    raise CodecError(f"{name}: expected a [section, data] pair")
                key, value = item
                if key == "raft":
                    raft = value
                elif key == "end":
                    if value != len(sections):
                        raise CodecError(f"{name}: end marker counts {value} sections")
                    ended = True
                else:
                    sections.append((key, value))
    except (OSError, EOFError, ValueError, zlib.error, msgpack.UnpackException) as exc:
        # zlib.error is no OSError: a flipped byte in the deflate stream raises it
        # ("invalid distance too far back"), and uncaught it let pysyncobj drop the
        # snapshot and start from the journal alone.
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"{name} is damaged: {exc}") from None
    if not ended:
        raise CodecError(f"{name} is truncated (no end marker)")
    return raft, sections
