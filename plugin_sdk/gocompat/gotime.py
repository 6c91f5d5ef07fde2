"""Go's ``time`` package as Dkron's JSON uses it: ``time.Parse`` and RFC 3339 output.

``parse_go_time`` is Go's RFC 3339 ``time.Parse`` (the layout ``time.Time`` JSON decoding
uses) with Go's error texts; ``parse_datetime_local`` is the HTML datetime-local layout
Dkron's ``ntime.NullableTime`` also takes. ``format_go_time`` is ``time.Time``'s JSON text,
``load_location`` is ``time.LoadLocation`` for display, ``unix_nano`` is ``Time.UnixNano``.

Known differences: times keep microseconds (Go keeps nanoseconds); years outside 1..9999
and offsets of 24 hours or more, which Go accepts, are rejected.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from plugin_sdk.gocompat.goformats import go_quote

__all__ = [
    "GO_ZERO",
    "ZERO_TIME",
    "GoTimeError",
    "format_go_time",
    "format_go_time_in",
    "load_location",
    "parse_datetime_local",
    "parse_go_time",
    "unix_nano",
]

ZERO_TIME = "0001-01-01T00:00:00Z"
# Go's zero time (year 1), which Dkron uses for "none" in non-nullable time fields.
GO_ZERO = datetime(1, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class GoTimeError(ValueError):
    """A time string Go's ``time.Parse`` rejects; ``str()`` is Go's error text."""


def unix_nano(moment: datetime) -> int:
    """Go's ``Time.UnixNano`` for an aware datetime (exact integer arithmetic)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _quote_bytes(data: bytes) -> str:
    """Go's ``time`` ``quote`` of raw bytes (non-ASCII bytes as ``\\xNN``)."""
    return go_quote(data.decode("utf-8", "surrogateescape"))


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


def parse_datetime_local(text: str) -> datetime:
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
        return format_go_time(GO_ZERO.astimezone(timezone(offset)) if seconds else GO_ZERO)
    clock = 86_400 + seconds
    wall = f"{clock // 3600:02d}:{clock // 60 % 60:02d}:{clock % 60:02d}"
    return f"0000-12-31T{wall}{_offset_text(seconds)}"


def load_location(name: str) -> tzinfo:
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


def format_go_time_in(moment: datetime | None, zone: tzinfo) -> str:
    """:func:`format_go_time` after converting to ``zone`` (Go's ``t.In(zone)``).

    ``None`` is Go's zero time shown in ``zone``.
    """
    if moment is None:
        return ZERO_TIME if zone is UTC else _zero_time_in(zone)
    try:
        return format_go_time(moment.astimezone(zone))
    except OverflowError:  # within hours of year 1 or 9999: Python cannot shift it
        return format_go_time(moment.astimezone(UTC))
