"""JSON in and out for Jobs and Executions, byte-compatible with Dkron v4.

Input follows Go's ``encoding/json`` as Dkron uses it: the create/update body is read with
a ``json.Decoder`` (first value only, ``EOF`` for an empty body), unknown keys are ignored,
keys also match case-insensitively, a wrong type is reported with Go's message once the
whole value has been read, and the time fields use Go's RFC 3339 parser and its messages.
Output dictionaries carry Dkron's field order; ``go_json_dumps`` renders them the way gin
does (HTML-safe escaping, no spaces, or four-space indentation for ``?pretty``).

Known differences, all for inputs no client sends on purpose: times keep microseconds (Go
keeps nanoseconds); years outside 1..9999 and offsets of 24 hours or more, which Go
accepts, are rejected; a processor whose config is ``null`` is stored as ``{}``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from core.jobs.model import MISFIRE_SKIP, Execution, Job, RetryBackoff
from plugin_sdk.gocompat import go_quote

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

ZERO_TIME = "0001-01-01T00:00:00Z"
_GO_ZERO = datetime(1, 1, 1, tzinfo=UTC)


class JobDecodeError(ValueError):
    """The body is not a Job as Go would decode it; ``str()`` is Go's error text."""


class GoTimeError(ValueError):
    """A time string Go's ``time.Parse`` rejects; ``str()`` is Go's error text."""


# -- text helpers -------------------------------------------------------------------------

_ESCAPED_BYTES = {i: "\ufffd" for i in range(0xDC80, 0xDD00)}


def decode_go_text(data: bytes) -> str:
    """Bytes to text the way Go's JSON encoder sees them: each invalid byte becomes U+FFFD."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # surrogateescape maps each undecodable byte to one lone surrogate, exactly the
        # bytes Go's utf8.DecodeRune reports one at a time as RuneError.
        return data.decode("utf-8", "surrogateescape").translate(_ESCAPED_BYTES)


def _quote_bytes(data: bytes) -> str:
    """Go's ``time`` ``quote`` of raw bytes (non-ASCII bytes as ``\\xNN``)."""
    return go_quote(data.decode("utf-8", "surrogateescape"))


_NAMED_BYTES = {
    7: "\\a",
    8: "\\b",
    9: "\\t",
    10: "\\n",
    11: "\\v",
    12: "\\f",
    13: "\\r",
    0x5C: "\\\\",
}


def _go_char(byte: int) -> str:
    """``quoteChar`` from Go's JSON scanner: the offending byte as a Go rune literal."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    if byte in _NAMED_BYTES:
        body = _NAMED_BYTES[byte]
    elif byte < 0x20 or byte == 0x7F:
        body = f"\\x{byte:02x}"
    elif byte < 0x7F or (byte >= 0xA1 and byte != 0xAD):
        # Go turns the byte into the rune of the same value (Latin-1) before quoting it.
        body = chr(byte)
    else:
        body = f"\\u{byte:04x}"
    return f"'{body}'"


# -- a Go-compatible JSON scanner -----------------------------------------------------------

_MAX_DEPTH = 10_000
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = {
    0x22: '"',
    0x5C: "\\",
    0x2F: "/",
    0x62: "\b",
    0x66: "\f",
    0x6E: "\n",
    0x72: "\r",
    0x74: "\t",
}


@dataclass(slots=True)
class _Node:
    kind: str  # object, array, string, number, true, false, null
    text: str = ""  # decoded string, or the number's literal
    raw: bytes = b""  # a string's bytes between the quotes, escapes left as they are
    members: list[tuple[str, _Node]] = field(default_factory=list)
    elements: list[_Node] = field(default_factory=list)


class _Scanner:
    """Reads one JSON value with Go's grammar and Go's syntax error messages."""

    def __init__(self, data: bytes, *, stream: bool) -> None:
        self.data = data
        self.size = len(data)
        # stream=True is json.Decoder.Decode; False is json.Unmarshal.
        self.stream = stream

    def _eof(self) -> JobDecodeError:
        return JobDecodeError("unexpected EOF" if self.stream else "unexpected end of JSON input")

    def _skip_ws(self, pos: int) -> int:
        data, size = self.data, self.size
        while pos < size and data[pos] in b" \t\r\n":
            pos += 1
        return pos

    def _need(self, pos: int) -> int:
        if pos >= self.size:
            raise self._eof()
        return self.data[pos]

    def scan(self) -> _Node:
        pos = self._skip_ws(0)
        if pos >= self.size:
            raise JobDecodeError("EOF" if self.stream else "unexpected end of JSON input")
        node, pos = self._value(pos)
        if not self.stream:
            pos = self._skip_ws(pos)
            if pos < self.size:
                raise JobDecodeError(
                    f"invalid character {_go_char(self.data[pos])} after top-level value"
                )
        return node

    def _value(self, pos: int) -> tuple[_Node, int]:
        # Iterative, so nesting is bounded by Go's limit and not by Python's stack.
        stack: list[_Node] = []
        keys: list[str] = []
        while True:
            byte = self._need(pos)
            value: _Node
            if byte == 0x7B or byte == 0x5B:  # { or [
                if len(stack) >= _MAX_DEPTH:
                    raise JobDecodeError(f"invalid character {_go_char(byte)} exceeded max depth")
                container = _Node("object" if byte == 0x7B else "array")
                pos = self._skip_ws(pos + 1)
                first = self._need(pos)
                if first == byte + 2:  # } or ]
                    value, pos = container, pos + 1
                elif byte == 0x5B:
                    stack.append(container)
                    keys.append("")
                    continue
                elif first == 0x22:
                    key, pos = self._key(pos)
                    stack.append(container)
                    keys.append(key)
                    continue
                else:
                    raise JobDecodeError(
                        f"invalid character {_go_char(first)} looking for beginning of object key"
                        " string"
                    )
            elif byte == 0x22:
                text, raw, pos = self._string(pos)
                value = _Node("string", text=text, raw=raw)
            elif byte == 0x2D or 0x30 <= byte <= 0x39:
                text, pos = self._number(pos)
                value = _Node("number", text=text)
            elif byte == 0x74:
                pos = self._literal(pos, b"true")
                value = _Node("true")
            elif byte == 0x66:
                pos = self._literal(pos, b"false")
                value = _Node("false")
            elif byte == 0x6E:
                pos = self._literal(pos, b"null")
                value = _Node("null")
            else:
                raise JobDecodeError(
                    f"invalid character {_go_char(byte)} looking for beginning of value"
                )
            # Attach the finished value, then read separators until another value starts.
            while True:
                if not stack:
                    return value, pos
                parent = stack[-1]
                if parent.kind == "object":
                    parent.members.append((keys[-1], value))
                else:
                    parent.elements.append(value)
                pos = self._skip_ws(pos)
                byte = self._need(pos)
                if byte == 0x2C:  # ,
                    pos = self._skip_ws(pos + 1)
                    if parent.kind == "object":
                        first = self._need(pos)
                        if first != 0x22:
                            raise JobDecodeError(
                                f"invalid character {_go_char(first)} looking for beginning of"
                                " object key string"
                            )
                        keys[-1], pos = self._key(pos)
                    break
                closer = 0x7D if parent.kind == "object" else 0x5D
                if byte != closer:
                    where = "object key:value pair" if parent.kind == "object" else "array element"
                    raise JobDecodeError(f"invalid character {_go_char(byte)} after {where}")
                value, pos = stack.pop(), pos + 1
                keys.pop()

    def _key(self, pos: int) -> tuple[str, int]:
        key, _, pos = self._string(pos)
        pos = self._skip_ws(pos)
        byte = self._need(pos)
        if byte != 0x3A:
            raise JobDecodeError(f"invalid character {_go_char(byte)} after object key")
        return key, self._skip_ws(pos + 1)

    def _hex4(self, pos: int) -> int:
        for offset in range(4):
            byte = self._need(pos + offset)
            if byte not in _HEX_DIGITS:
                raise JobDecodeError(
                    f"invalid character {_go_char(byte)} in \\u hexadecimal character escape"
                )
        return int(self.data[pos : pos + 4], 16)

    def _string(self, start: int) -> tuple[str, bytes, int]:
        data = self.data
        parts: list[str] = []
        pos = start + 1
        while True:
            match = _PLAIN.match(data, pos)
            assert match is not None  # the pattern accepts the empty string
            if match.end() > pos:
                parts.append(decode_go_text(data[pos : match.end()]))
            pos = match.end()
            byte = self._need(pos)
            if byte == 0x22:
                return "".join(parts), data[start + 1 : pos], pos + 1
            if byte < 0x20:
                raise JobDecodeError(f"invalid character {_go_char(byte)} in string literal")
            escape = self._need(pos + 1)
            if escape in _SIMPLE_ESCAPES:
                parts.append(_SIMPLE_ESCAPES[escape])
                pos += 2
                continue
            if escape != 0x75:  # u
                raise JobDecodeError(f"invalid character {_go_char(escape)} in string escape code")
            code = self._hex4(pos + 2)
            pos += 6
            if 0xD800 <= code < 0xE000:
                # Go pairs a high surrogate with an immediately following \u low surrogate;
                # anything else becomes U+FFFD and the next escape is read on its own.
                low = self._low_surrogate(pos) if code < 0xDC00 else None
                if low is None:
                    parts.append("\ufffd")
                else:
                    parts.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                    pos += 6
            else:
                parts.append(chr(code))

    def _low_surrogate(self, pos: int) -> int | None:
        data = self.data
        if data[pos : pos + 2] != b"\\u" or pos + 6 > self.size:
            return None
        digits = data[pos + 2 : pos + 6]
        if not all(byte in _HEX_DIGITS for byte in digits):
            return None
        code = int(digits, 16)
        return code if 0xDC00 <= code < 0xE000 else None

    def _digits(self, pos: int) -> int:
        data, size = self.data, self.size
        while pos < size and 0x30 <= data[pos] <= 0x39:
            pos += 1
        return pos

    def _number(self, start: int) -> tuple[str, int]:
        data, size = self.data, self.size
        pos = start
        if data[pos] == 0x2D:
            pos += 1
            byte = self._need(pos)
            if not 0x30 <= byte <= 0x39:
                raise JobDecodeError(f"invalid character {_go_char(byte)} in numeric literal")
        pos = pos + 1 if data[pos] == 0x30 else self._digits(pos)
        if pos < size and data[pos] == 0x2E:
            byte = self._need(pos + 1)
            if not 0x30 <= byte <= 0x39:
                raise JobDecodeError(
                    f"invalid character {_go_char(byte)} after decimal point in numeric literal"
                )
            pos = self._digits(pos + 1)
        if pos < size and data[pos] in b"eE":
            pos += 1
            if self._need(pos) in b"+-":
                pos += 1
            byte = self._need(pos)
            if not 0x30 <= byte <= 0x39:
                raise JobDecodeError(
                    f"invalid character {_go_char(byte)} in exponent of numeric literal"
                )
            pos = self._digits(pos)
        return data[start:pos].decode("ascii"), pos

    def _literal(self, start: int, word: bytes) -> int:
        for offset in range(1, len(word)):
            byte = self._need(start + offset)
            if byte != word[offset]:
                expected = chr(word[offset])
                raise JobDecodeError(
                    f"invalid character {_go_char(byte)} in literal {word.decode()} "
                    f"(expecting '{expected}')"
                )
        return start + len(word)


def _node_from_python(value: object) -> _Node:
    """An already-parsed JSON value (``json.loads`` output) as a scanner node."""
    if value is None:
        return _Node("null")
    if value is True:
        return _Node("true")
    if value is False:
        return _Node("false")
    if isinstance(value, str):
        raw = json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")
        return _Node("string", text=decode_go_text(value.encode("utf-8", "surrogatepass")), raw=raw)
    if isinstance(value, int):
        return _Node("number", text=str(value))
    if isinstance(value, float):
        return _Node("number", text=json.dumps(value))
    if isinstance(value, dict):
        return _Node("object", members=[(str(k), _node_from_python(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return _Node("array", elements=[_node_from_python(v) for v in value])
    raise JobDecodeError(f"json: unsupported value of Python type {type(value).__name__}")


def _root(data: bytes | str | object, *, stream: bool) -> _Node:
    if isinstance(data, bytes | bytearray | memoryview):
        return _Scanner(bytes(data), stream=stream).scan()
    if isinstance(data, str):
        return _Scanner(data.encode("utf-8", "surrogatepass"), stream=stream).scan()
    return _node_from_python(data)


# -- Go time parsing and formatting --------------------------------------------------------

_RFC3339 = "2006-01-02T15:04:05Z07:00"
_RFC3339_CHUNKS = (
    ("", "2006"),
    ("-", "01"),
    ("-", "02"),
    ("T", "15"),
    (":", "04"),
    (":", "05"),
    ("", "Z07:00"),
)
_DATETIME_LOCAL = "2006-01-02T15:04"
_DATETIME_LOCAL_CHUNKS = (("", "2006"), ("-", "01"), ("-", "02"), ("T", "15"), (":", "04"))
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_digit(text: str, index: int) -> bool:
    return index < len(text) and "0" <= text[index] <= "9"


def _getnum(text: str, fixed: bool) -> tuple[int, str] | None:
    if not _is_digit(text, 0):
        return None
    if not _is_digit(text, 1):
        if fixed:
            return None
        return ord(text[0]) - 48, text[1:]
    return (ord(text[0]) - 48) * 10 + ord(text[1]) - 48, text[2:]


def _go_atoi(text: str) -> int | None:
    sign = 1
    if text[:1] in ("-", "+"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if not text or not all("0" <= c <= "9" for c in text):
        return None
    return sign * int(text)


def _days_in(month: int, year: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def _go_parse(layout: str, chunks: tuple[tuple[str, str], ...], data: bytes) -> datetime:
    """Go's ``time.Parse`` for the two layouts Dkron uses, with Go's error messages."""
    # One character per byte, so indexes and lengths are Go's byte offsets.
    value = data.decode("latin-1")

    def fail(elem: str, rest: str, message: str = "") -> GoTimeError:
        quoted = _quote_bytes(data)
        if message:
            return GoTimeError(f"parsing time {quoted}{message}")
        return GoTimeError(
            f"parsing time {quoted} as {go_quote(layout)}: cannot parse "
            f"{_quote_bytes(rest.encode('latin-1'))} as {go_quote(elem)}"
        )

    year = month = day = 1
    hour = minute = second = micros = 0
    offset: int | None = None
    rest = value
    for prefix, std in chunks:
        if not rest.startswith(prefix):
            raise fail(prefix, rest)  # every prefix here is a single character
        rest = rest[len(prefix) :]
        hold = rest
        range_error = ""
        bad = False
        if std == "2006":
            parsed_year = _go_atoi(rest[:4]) if len(rest) >= 4 else None
            if parsed_year is None:
                bad = True
            else:
                year, rest = parsed_year, rest[4:]
        elif std in ("01", "02", "04", "05", "15"):
            got = _getnum(rest, std != "15")
            if got is None:
                bad = True
            else:
                number, rest = got
                if std == "01":
                    month = number
                    if not 1 <= month <= 12:
                        range_error = "month"
                elif std == "02":
                    day = number  # checked against the month once everything is read
                elif std == "15":
                    hour = number
                    if hour >= 24:
                        range_error = "hour"
                elif std == "04":
                    minute = number
                    if minute >= 60:
                        range_error = "minute"
                else:
                    second = number
                    if second >= 60:
                        range_error = "second"
                    elif len(rest) >= 2 and rest[0] in ".," and _is_digit(rest, 1):
                        # Parse accepts a fraction after the seconds even if the layout
                        # has none; Go reads at most nine digits.
                        end = 2
                        while _is_digit(rest, end):
                            end += 1
                        digits = rest[1:end][:9].ljust(9, "0")
                        micros = int(digits) // 1000
                        rest = rest[end:]
        else:  # Z07:00
            if rest[:1] == "Z":
                rest, offset = rest[1:], 0
            elif len(rest) < 6 or rest[3] != ":":
                bad = True
            else:
                sign, hours_text, minutes_text, rest = rest[0], rest[1:3], rest[4:6], rest[6:]
                got_hours = _getnum(hours_text, True)
                got_minutes = _getnum(minutes_text, True) if got_hours else None
                zone_hours = got_hours[0] if got_hours else 0
                zone_minutes = got_minutes[0] if got_minutes else 0
                bad = got_minutes is None
                # Go's checks are > rather than >=: some people write +24:00.
                if zone_hours > 24:
                    range_error = "time zone offset hour"
                if zone_minutes > 60:
                    range_error = "time zone offset minute"
                offset = (zone_hours * 60 + zone_minutes) * 60
                if sign == "-":
                    offset = -offset
                elif sign != "+":
                    bad = True
        if range_error:
            raise fail(std, rest, f": {range_error} out of range")
        if bad:
            raise fail(std, hold)
    if rest:
        raise fail("", rest, ": extra text: " + _quote_bytes(rest.encode("latin-1")))
    if not 1 <= year <= 9999:
        raise fail("", "", ": year outside of range [1,9999]")
    if day < 1 or day > _days_in(month, year):
        raise fail("", rest, ": day out of range")
    if offset is None or offset == 0:
        zone: tzinfo = UTC
    elif abs(offset) >= 86_400:
        raise fail("", "", ": time zone offset out of range")
    else:
        zone = timezone(timedelta(seconds=offset))
    moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=zone)
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise fail("", "", ": year outside of range [1,9999]") from None
    return moment


def parse_go_time(text: str | bytes) -> datetime:
    """Go's RFC 3339 parsing as ``time.Time`` JSON decoding does it (the offset is kept)."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return _go_parse(_RFC3339, _RFC3339_CHUNKS, data)


def _parse_datetime_local(text: str) -> datetime:
    return _go_parse(_DATETIME_LOCAL, _DATETIME_LOCAL_CHUNKS, text.encode("utf-8"))


def _offset_text(seconds: int) -> str:
    if seconds == 0:
        return "Z"
    # Go divides by 60 truncating toward zero and then drops the seconds.
    zone = -((-seconds) // 60) if seconds < 0 else seconds // 60
    sign = "-" if zone < 0 else "+"
    zone = abs(zone)
    return f"{sign}{zone // 60:02d}:{zone % 60:02d}"


def format_go_time(moment: datetime | None) -> str:
    """Go's ``time.Time`` JSON text (RFC 3339 with trimmed nanoseconds) in the value's own zone.

    ``None`` is Go's zero time, ``0001-01-01T00:00:00Z``.
    """
    if moment is None:
        return ZERO_TIME
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(f"cannot format a naive datetime as a Go time: {moment!r}")
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + _offset_text(offset // timedelta(seconds=1))


def _zero_time_in(zone: tzinfo) -> str:
    """Go's zero time shown in ``zone``; with a negative offset it falls in year 0."""
    offset = zone.utcoffset(datetime(1, 1, 2)) or timedelta(0)
    seconds = offset // timedelta(seconds=1)
    if seconds >= 0:
        return format_go_time(_GO_ZERO.astimezone(timezone(offset)) if seconds else _GO_ZERO)
    clock = 86_400 + seconds
    wall = f"{clock // 3600:02d}:{clock // 60 % 60:02d}:{clock % 60:02d}"
    return f"0000-12-31T{wall}{_offset_text(seconds)}"


def _load_location(name: str) -> tzinfo:
    """Go's ``time.LoadLocation`` for display purposes; unknown names fall back to UTC."""
    if name in ("", "UTC"):
        return UTC
    try:
        if name == "Local":
            tz_env = os.environ.get("TZ")
            if tz_env is not None:
                return ZoneInfo(tz_env.lstrip(":")) if tz_env else UTC
            with open("/etc/localtime", "rb") as handle:
                return ZoneInfo.from_file(handle, key="Local")
        return ZoneInfo(name)
    except (OSError, ValueError, KeyError):
        # Validation rejects unknown zones, so only a zone database change gets here.
        return UTC


def _format_in(moment: datetime | None, zone: tzinfo) -> str:
    if moment is None:
        return ZERO_TIME if zone is UTC else _zero_time_in(zone)
    try:
        return format_go_time(moment.astimezone(zone))
    except OverflowError:  # within hours of year 1 or 9999: Python cannot shift it
        return format_go_time(moment.astimezone(UTC))


# -- decoding -------------------------------------------------------------------------------

_KIND_NAMES = {
    "object": "object",
    "array": "array",
    "string": "string",
    "number": "number",
    "true": "bool",
    "false": "bool",
}
_SIGNED = re.compile(r"-?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")


class _Decoding:
    """Go keeps the first type mismatch and reports it after reading the whole value."""

    __slots__ = ("first_error", "unknown")

    def __init__(self) -> None:
        self.first_error: str | None = None
        # Keys Go would ignore in silence: reported (a misspelt key is a lost setting).
        self.unknown: list[str] = []

    def mismatch(self, what: str, go_type: str, struct: str, path: str) -> None:
        if self.first_error is not None:
            return
        if path:
            self.first_error = (
                f"json: cannot unmarshal {what} into Go struct field {struct}.{path} "
                f"of type {go_type}"
            )
        else:
            self.first_error = f"json: cannot unmarshal {what} into Go value of type {go_type}"

    def finish(self) -> None:
        if self.first_error is not None:
            raise JobDecodeError(self.first_error)


# A field decoder gets the node, the decoding state, the Go struct name and field path,
# and the current value (Go decodes into what is already there), and returns the new value.
_FieldDecoder = Callable[[_Node, _Decoding, str, str, object], object]


def _dec_string(node: _Node, ctx: _Decoding, struct: str, path: str, current: object) -> object:
    if node.kind == "string":
        return node.text
    if node.kind != "null":  # null leaves a Go string untouched
        ctx.mismatch(_KIND_NAMES[node.kind], "string", struct, path)
    return current


def _dec_bool(node: _Node, ctx: _Decoding, struct: str, path: str, current: object) -> object:
    if node.kind in ("true", "false"):
        return node.kind == "true"
    if node.kind != "null":
        ctx.mismatch(_KIND_NAMES[node.kind], "bool", struct, path)
    return current


def _integer(go_type: str, *, signed: bool) -> _FieldDecoder:
    low, high = (-(1 << 63), (1 << 63) - 1) if signed else (0, (1 << 64) - 1)
    pattern = _SIGNED if signed else _UNSIGNED

    def decode(node: _Node, ctx: _Decoding, struct: str, path: str, current: object) -> object:
        if node.kind == "null":
            return current
        if node.kind != "number":
            ctx.mismatch(_KIND_NAMES[node.kind], go_type, struct, path)
            return current
        if not pattern.fullmatch(node.text) or not low <= int(node.text) <= high:
            # strconv.ParseInt/ParseUint failed or overflowed: Go names the literal.
            ctx.mismatch(f"number {node.text}", go_type, struct, path)
            return current
        return int(node.text)

    return decode


def _string_map(go_type: str) -> _FieldDecoder:
    def decode(node: _Node, ctx: _Decoding, struct: str, path: str, current: object) -> object:
        if node.kind == "null":
            return None
        if node.kind != "object":
            ctx.mismatch(_KIND_NAMES[node.kind], go_type, struct, path)
            return current
        # Go decodes into an existing map, so a repeated key merges the two objects.
        result: dict[str, str] = dict(current) if isinstance(current, dict) else {}
        for key, item in node.members:
            result[key] = str(_dec_string(item, ctx, struct, path, ""))
        return result

    return decode


def _dec_string_list(
    node: _Node, ctx: _Decoding, struct: str, path: str, current: object
) -> object:
    if node.kind == "null":
        return None
    if node.kind != "array":
        ctx.mismatch(_KIND_NAMES[node.kind], "[]string", struct, path)
        return current
    return [str(_dec_string(item, ctx, struct, path, "")) for item in node.elements]


_dec_config = _string_map("plugin.Config")


def _dec_processors(node: _Node, ctx: _Decoding, struct: str, path: str, current: object) -> object:
    if node.kind == "null":
        return None
    if node.kind != "object":
        ctx.mismatch(_KIND_NAMES[node.kind], "map[string]plugin.Config", struct, path)
        return current
    result: dict[str, dict[str, str]] = dict(current) if isinstance(current, dict) else {}
    for key, item in node.members:
        config = _dec_config(item, ctx, struct, path, None)
        result[key] = dict(config) if isinstance(config, dict) else {}
    return result


def _time_decoder(nullable: bool) -> _FieldDecoder:
    def decode(node: _Node, ctx: _Decoding, struct: str, path: str, current: object) -> object:
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
                    return _parse_datetime_local(node.text)
                except GoTimeError:
                    pass
            raise JobDecodeError(str(err)) from None
        if not nullable and moment == _GO_ZERO:
            return None
        return moment

    return decode


_dec_time = _time_decoder(nullable=False)
_dec_nullable_time = _time_decoder(nullable=True)


def _dec_output(node: _Node, ctx: _Decoding, struct: str, path: str, current: object) -> object:
    text = _dec_string(node, ctx, struct, path, None)
    return text.encode("utf-8") if isinstance(text, str) else current


@dataclass(frozen=True, slots=True)
class _Field:
    attr: str
    decode: _FieldDecoder


def _fold(key: str) -> str:
    """Go's key folding; of non-ASCII letters only long s and Kelvin sign fold onto ASCII."""
    if key.isascii():
        return key.upper()
    folds = {"\u017f": "S", "\u212a": "K"}
    return "".join(char.upper() if char < "\x80" else folds.get(char, char) for char in key)


class _Struct:
    def __init__(self, go_name: str, fields: dict[str, _Field]) -> None:
        self.go_name = go_name
        self.exact = fields
        self.folded = {_fold(name): name for name in fields}

    def lookup(self, key: str) -> tuple[str, _Field] | None:
        found = self.exact.get(key)
        if found is not None:
            return key, found
        name = self.folded.get(_fold(key))
        return None if name is None else (name, self.exact[name])

    def decode_into(self, target: object, node: _Node, ctx: _Decoding, prefix: str) -> None:
        for key, item in node.members:
            hit = self.lookup(key)
            if hit is None:
                ctx.unknown.append(prefix + key)  # ignored, as in Go, but said
                continue
            name, spec = hit
            value = spec.decode(item, ctx, self.go_name, prefix + name, getattr(target, spec.attr))
            setattr(target, spec.attr, value)


_BACKOFF = _Struct(
    "RetryBackoff",
    {
        "delay": _Field("delay", _dec_string),
        "exponential": _Field("exponential", _dec_bool),
        "max": _Field("max", _dec_string),
    },
)


def _dec_backoff(node: _Node, ctx: _Decoding, struct: str, path: str, current: object) -> object:
    if node.kind == "null":
        return None
    if node.kind != "object":
        ctx.mismatch(_KIND_NAMES[node.kind], "dkron.RetryBackoff", struct, path)
        return current
    # A pointer to a struct: Go fills the existing struct when there is one.
    backoff = RetryBackoff()
    if isinstance(current, RetryBackoff):
        backoff.delay, backoff.exponential, backoff.max = (
            current.delay,
            current.exponential,
            current.max,
        )
    _BACKOFF.decode_into(backoff, node, ctx, path + ".")
    return backoff


_JOB = _Struct(
    "Job",
    {
        "id": _Field("id", _dec_string),
        "name": _Field("name", _dec_string),
        "displayname": _Field("displayname", _dec_string),
        "timezone": _Field("timezone", _dec_string),
        "schedule": _Field("schedule", _dec_string),
        "owner": _Field("owner", _dec_string),
        "owner_email": _Field("owner_email", _dec_string),
        "success_count": _Field("success_count", _integer("int", signed=True)),
        "error_count": _Field("error_count", _integer("int", signed=True)),
        "last_success": _Field("last_success", _dec_nullable_time),
        "last_error": _Field("last_error", _dec_nullable_time),
        "disabled": _Field("disabled", _dec_bool),
        "tags": _Field("tags", _string_map("map[string]string")),
        "metadata": _Field("metadata", _string_map("map[string]string")),
        "retries": _Field("retries", _integer("uint", signed=False)),
        "dependent_jobs": _Field("dependent_jobs", _dec_string_list),
        "parent_job": _Field("parent_job", _dec_string),
        "processors": _Field("processors", _dec_processors),
        "concurrency": _Field("concurrency", _dec_string),
        "executor": _Field("executor", _dec_string),
        "executor_config": _Field("executor_config", _string_map("plugin.ExecutorPluginConfig")),
        "status": _Field("status", _dec_string),
        "next": _Field("next", _dec_time),
        "ephemeral": _Field("ephemeral", _dec_bool),
        "starts_at": _Field("starts_at", _dec_nullable_time),
        "expires_at": _Field("expires_at", _dec_nullable_time),
        "retry_backoff": _Field("retry_backoff", _dec_backoff),
        "timeout": _Field("timeout", _dec_string),
        "misfire_policy": _Field("misfire_policy", _dec_string),
        "misfire_grace": _Field("misfire_grace", _dec_string),
        "retry_any_node": _Field("retry_any_node", _dec_bool),
    },
)

_EXECUTION = _Struct(
    "Execution",
    {
        "job_name": _Field("job_name", _dec_string),
        "started_at": _Field("started_at", _dec_time),
        "finished_at": _Field("finished_at", _dec_time),
        "success": _Field("success", _dec_bool),
        "output": _Field("output", _dec_output),
        "node_name": _Field("node_name", _dec_string),
        "group": _Field("group", _integer("int64", signed=True)),
        "attempt": _Field("attempt", _integer("uint", signed=False)),
        "scheduled_at": _Field("scheduled_at", _dec_nullable_time),
        "run_id": _Field("run_id", _dec_string),
        "processor_errors": _Field("processor_errors", _dec_string_list),
    },
)


def _decode_job(node: _Node, ctx: _Decoding, job: Job, go_type: str) -> Job:
    if node.kind == "object":
        _JOB.decode_into(job, node, ctx, "")
    elif node.kind != "null":
        ctx.mismatch(_KIND_NAMES[node.kind], go_type, "", "")
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
    ctx = _Decoding()
    job = _decode_job(_root(data, stream=True), ctx, Job(id=""), "dkron.Job")
    ctx.finish()
    return job, ctx.unknown


def job_keys() -> list[str]:
    """The top-level keys a job body may have."""
    return list(_JOB.exact)


def jobs_from_json(data: bytes | str | object) -> list[Job]:
    """Decode a backup file (``POST /v1/restore``): a JSON array of jobs, ``json.Unmarshal`` style.

    Each job starts from Go's zero value (no ``concurrency`` preset). ``null`` is an empty
    list; a ``null`` element is rejected (Dkron would crash on it).
    """
    root = _root(data, stream=False)
    ctx = _Decoding()
    jobs: list[Job] = []
    if root.kind == "array":
        for element in root.elements:
            if element.kind == "null":
                raise JobDecodeError("null job in list")
            jobs.append(_decode_job(element, ctx, Job(id="", concurrency=""), "dkron.Job"))
    elif root.kind != "null":
        ctx.mismatch(_KIND_NAMES[root.kind], "[]*dkron.Job", "", "")
    ctx.finish()
    return jobs


def execution_from_json(data: bytes | str | object) -> Execution:
    """Decode an Execution as emitted by ``execution_to_json`` (``id`` and
    ``output_truncated`` are derived, so they are ignored)."""
    root = _root(data, stream=False)
    ctx = _Decoding()
    execution = Execution()
    if root.kind == "object":
        _EXECUTION.decode_into(execution, root, ctx, "")
    elif root.kind != "null":
        ctx.mismatch(_KIND_NAMES[root.kind], "dkron.Execution", "", "")
    ctx.finish()
    return execution


# -- encoding -------------------------------------------------------------------------------


def _nullable(moment: datetime | None) -> str | None:
    return None if moment is None else format_go_time(moment)


def _sorted_map(mapping: dict[str, str] | None) -> dict[str, str] | None:
    # Go's encoder writes map keys in sorted order (bytewise, i.e. code point order).
    return None if mapping is None else dict(sorted(mapping.items()))


def job_to_json(job: Job) -> dict[str, object]:
    """The Job as Dkron serialises it, in Dkron's field order, then any non-default extension.

    Times are shown in the zone they carry (stored jobs are UTC; see ``stored_form``).
    """
    out: dict[str, object] = {
        "id": job.effective_id,
        "name": job.name,
        "displayname": job.displayname,
        "timezone": job.timezone,
        "schedule": job.schedule,
        "owner": job.owner,
        "owner_email": job.owner_email,
        "success_count": job.success_count,
        "error_count": job.error_count,
        "last_success": _nullable(job.last_success),
        "last_error": _nullable(job.last_error),
        "disabled": job.disabled,
        "tags": _sorted_map(job.tags),
        "metadata": _sorted_map(job.metadata),
        "retries": job.retries,
        "dependent_jobs": None if job.dependent_jobs is None else list(job.dependent_jobs),
        "parent_job": job.parent_job,
        "processors": (
            None
            if job.processors is None
            else {name: _sorted_map(config) for name, config in sorted(job.processors.items())}
        ),
        "concurrency": job.concurrency,
        "executor": job.executor,
        "executor_config": _sorted_map(job.executor_config),
        "status": job.status,
        "next": format_go_time(job.next),
        "ephemeral": job.ephemeral,
        "starts_at": _nullable(job.starts_at),
        "expires_at": _nullable(job.expires_at),
    }
    if job.retry_backoff is not None:
        backoff: dict[str, object] = {
            "delay": job.retry_backoff.delay,
            "exponential": job.retry_backoff.exponential,
        }
        if job.retry_backoff.max:
            backoff["max"] = job.retry_backoff.max
        out["retry_backoff"] = backoff
    if job.timeout:
        out["timeout"] = job.timeout
    if job.misfire_policy not in ("", MISFIRE_SKIP):
        out["misfire_policy"] = job.misfire_policy
    if job.misfire_grace:
        out["misfire_grace"] = job.misfire_grace
    if job.retry_any_node:
        out["retry_any_node"] = True
    return out


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
    zone = _load_location(timezone) if list_item else UTC
    output = execution.output
    truncated = False
    if output_size_limit is not None and 0 <= output_size_limit < len(output):
        output = output[len(output) - output_size_limit :]
        truncated = True
    out: dict[str, object] = {}
    if execution.id:
        out["id"] = execution.id
    if execution.job_name:
        out["job_name"] = execution.job_name
    out["started_at"] = _format_in(execution.started_at, zone)
    out["finished_at"] = _format_in(execution.finished_at, zone)
    out["success"] = execution.success
    if output:
        out["output"] = decode_go_text(output)
    if execution.node_name:
        out["node_name"] = execution.node_name
    if execution.group:
        out["group"] = execution.group
    if execution.attempt:
        out["attempt"] = execution.attempt
    if list_item:
        out["output_truncated"] = truncated
    if execution.scheduled_at is not None:
        out["scheduled_at"] = _format_in(execution.scheduled_at, zone)
    if execution.run_id:
        out["run_id"] = execution.run_id
    if execution.processor_errors:
        out["processor_errors"] = list(execution.processor_errors)
    return out


_HTML_UNSAFE = re.compile("[<>&\u2028\u2029]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def go_json_dumps(value: object, *, pretty: bool = False) -> bytes:
    """Serialise like gin's ``c.JSON`` (Go ``json.Marshal``) or ``c.IndentedJSON`` (pretty).

    Go escapes ``<``, ``>``, ``&``, U+2028 and U+2029 inside strings; those characters
    cannot occur outside strings in JSON, so they are replaced on the whole text.
    """
    if pretty:
        text = json.dumps(value, ensure_ascii=False, indent=4, separators=(",", ": "))
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = _HTML_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    text = _LONE_SURROGATE.sub("\ufffd", text)
    return text.encode("utf-8")
