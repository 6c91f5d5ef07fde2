"""Go's value formats that Dkron's configs use: durations, booleans, memory limits.

One implementation for the host (job validation, cron's ``@every``) and for plugins
(the shell executor): a job that validates must also run, and both must reject
exactly what Dkron rejects, with Go's error texts.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = [
    "format_go_duration",
    "go_quote",
    "parse_go_bool",
    "parse_go_duration",
    "parse_mem_limit",
]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_NS_PER_SECOND = 1_000_000_000
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": _NS_PER_SECOND,
    "m": 60 * _NS_PER_SECOND,
    "h": 3600 * _NS_PER_SECOND,
}
_LIMIT = 1 << 63  # Go accumulates into a uint64 and rejects anything above this
_HEX = "0123456789abcdef"

_MEM_LIMIT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*")
_MEM_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "T": 1 << 40,
    "TB": 1 << 40,
}


def go_quote(text: str) -> str:
    """Go's ``time`` package ``quote``: non-ASCII and control bytes become ``\\xNN``.

    Text decoded with ``surrogateescape`` round-trips its invalid bytes here, as in Go.
    """
    out = ['"']
    for char in text:
        if char >= "\x80" or char < " ":
            for byte in char.encode("utf-8", "surrogateescape"):
                out.append("\\x" + _HEX[byte >> 4] + _HEX[byte & 0xF])
        else:
            if char in '"\\':
                out.append("\\")
            out.append(char)
    out.append('"')
    return "".join(out)


def _invalid(orig: str) -> ValueError:
    return ValueError("time: invalid duration " + go_quote(orig))


def _leading_int(text: str) -> tuple[int, str]:
    value = 0
    index = 0
    while index < len(text) and "0" <= text[index] <= "9":
        if value > _LIMIT // 10:
            raise OverflowError
        value = value * 10 + ord(text[index]) - 48
        if value > _LIMIT:
            raise OverflowError
        index += 1
    return value, text[index:]


def _leading_fraction(text: str) -> tuple[int, float, str]:
    value, scale, index, overflow = 0, 1.0, 0, False
    while index < len(text) and "0" <= text[index] <= "9":
        if not overflow:
            if value > (_LIMIT - 1) // 10:
                overflow = True
            else:
                candidate = value * 10 + ord(text[index]) - 48
                if candidate > _LIMIT:
                    overflow = True
                else:
                    value = candidate
                    scale *= 10
        index += 1
    return value, scale, text[index:]


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds; raises ``ValueError`` with Go's message."""
    orig, rest, negative = text, text, False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise _invalid(orig)
    total = 0
    while rest:
        if not (rest[0] == "." or "0" <= rest[0] <= "9"):
            raise _invalid(orig)
        before = len(rest)
        try:
            whole, rest = _leading_int(rest)
        except OverflowError:
            raise _invalid(orig) from None
        had_whole = before != len(rest)
        fraction, scale, had_fraction = 0, 1.0, False
        if rest[:1] == ".":
            rest = rest[1:]
            before = len(rest)
            fraction, scale, rest = _leading_fraction(rest)
            had_fraction = before != len(rest)
        if not had_whole and not had_fraction:
            raise _invalid(orig)
        end = 0
        while end < len(rest) and not (rest[end] == "." or "0" <= rest[end] <= "9"):
            end += 1
        if end == 0:
            raise ValueError("time: missing unit in duration " + go_quote(orig))
        unit_name, rest = rest[:end], rest[end:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise ValueError(
                "time: unknown unit " + go_quote(unit_name) + " in duration " + go_quote(orig)
            )
        if whole > _LIMIT // unit:
            raise _invalid(orig)
        whole *= unit
        if fraction > 0:
            # Go computes the fractional part in float64 as well; keep its rounding.
            whole += int(float(fraction) * (float(unit) / scale))
            if whole > _LIMIT:
                raise _invalid(orig)
        total += whole
        if total > _LIMIT:
            raise _invalid(orig)
    if negative:
        return -total
    if total > _LIMIT - 1:
        raise _invalid(orig)
    return total


def _fraction(value: int, digits: int) -> str:
    whole, part = divmod(value, 10**digits)
    if not part:
        return str(whole)
    return f"{whole}.{part:0{digits}d}".rstrip("0")


def format_go_duration(nanos: int) -> str:
    """Go's ``time.Duration.String`` (``1m0s``, ``1.5s``, ``300ms``, ``2µs``)."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    value = abs(nanos)
    if value < 1_000:
        return f"{sign}{value}ns"
    if value < 1_000_000:
        return f"{sign}{_fraction(value, 3)}\u00b5s"
    if value < _NS_PER_SECOND:
        return f"{sign}{_fraction(value, 6)}ms"
    seconds = _fraction(value % (60 * _NS_PER_SECOND), 9) + "s"
    minutes = (value // (60 * _NS_PER_SECOND)) % 60
    hours = value // (3600 * _NS_PER_SECOND)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"


def parse_mem_limit(text: str) -> int:
    """Bytes from ``512``, ``1.5GB``, ``100m``… (1024-based units, case-insensitive).

    Same grammar and messages as the shell executor, so a job that validates also runs.
    """
    match = _MEM_LIMIT.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid memory limit format: {text}")
    unit = match.group(2).upper()
    if unit not in _MEM_UNITS:
        raise ValueError(
            f"unsupported memory unit: {match.group(2)} (supported: B, KB, MB, GB, TB)"
        )
    limit = int(Decimal(match.group(1)) * _MEM_UNITS[unit])
    if limit <= 0:
        raise ValueError("memory limit must be greater than 0")
    return limit


def parse_go_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``; raises ValueError with Go's message otherwise."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')
