"""Go's ``time.ParseDuration``, for ``@every <duration>``."""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["parse_go_duration"]

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NS = (1 << 63) - 1  # Go durations are int64 nanoseconds
_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_UNIT = re.compile(r"[^0-9.]*")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_go_duration(text: str) -> int:
    """Parse a Go duration string (``1h30m``, ``1.5h``, ``-90s``) into nanoseconds.

    Raises ``ValueError`` with Go's own message, e.g. ``time: invalid duration "x"``.
    """
    invalid = ValueError(f"time: invalid duration {_quote(text)}")
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = Fraction(0)
    while s:
        number = _NUMBER.match(s)
        assert number is not None  # the pattern also matches the empty string
        whole, frac = number.group(1), number.group(2)
        if not whole and not frac:
            raise invalid
        s = s[number.end() :]
        unit_match = _UNIT.match(s)
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            raise ValueError(f"time: missing unit in duration {_quote(text)}")
        if unit not in _NS_PER_UNIT:
            raise ValueError(f"time: unknown unit {_quote(unit)} in duration {_quote(text)}")
        s = s[len(unit) :]
        value = Fraction(int(whole or "0"))
        if frac:
            value += Fraction(int(frac), 10 ** len(frac))
        total += value * _NS_PER_UNIT[unit]
        if total > _MAX_NS + (1 if negative else 0):
            raise invalid
    # Go truncates fractional nanoseconds.
    ns = int(total)
    return -ns if negative else ns
