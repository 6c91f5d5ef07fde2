"""Bring a six-field Dkron (robfig/cron) expression into a form croniter reads the same way.

croniter does the real work (expanding fields, finding the next match). This module only
rejects what robfig/cron rejects and rewrites the few tokens croniter reads differently:

* croniter accepts ``L``, ``W``, ``#``, ``H``, ``R`` and weekday ``7``; robfig/cron does not,
  and a schedule Dkron would refuse must not silently mean something here;
* croniter reads an equal range (``5-5``) as the whole cycle and wraps reversed ranges;
  robfig reads ``5-5`` as 5 and rejects ``5-1``;
* robfig's ``?`` is ``*`` in every field, croniter allows it only in the day fields;
* robfig decides day-of-month/day-of-week OR-vs-AND by whether either field is a plain
  ``*``/``?`` (``*/1`` counts, ``*/2`` does not); croniter looks at the expanded values.
  Rewriting ``*/n`` as ``min-max/n`` and passing ``day_or`` explicitly makes them agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.cron.errors import ScheduleError

__all__ = ["HASH_SYMBOL", "NormalizedExpression", "apply_hash", "normalize"]

HASH_SYMBOL = "~"

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_WEEKDAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 6, _WEEKDAYS),
)
# Dkron's `~` moduli, by field position: value = (sum of code points) % m + add.
_HASH_RULES = ((60, 0), (60, 0), (24, 0), (28, 1), (12, 1), (7, 0))
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class NormalizedExpression:
    """A validated expression in croniter's seconds-first syntax."""

    text: str
    """Six space-separated fields, numbers only, for ``croniter(second_at_beginning=True)``."""
    day_or: bool
    """True when robfig ORs day-of-month and day-of-week (neither is ``*``/``?``)."""
    wall_clock: bool
    """True when minute and hour are fixed values (no ``*``, ``?`` or step)."""


def apply_hash(fields: list[str], job_name: str) -> list[str]:
    """Replace each ``~`` with Dkron's number for the field's position."""
    if not any(HASH_SYMBOL in field for field in fields):
        return fields
    total = sum(ord(ch) for ch in job_name)
    out = []
    for i, field in enumerate(fields):
        if i < len(_HASH_RULES) and HASH_SYMBOL in field:
            modulus, add = _HASH_RULES[i]
            field = field.replace(HASH_SYMBOL, str(total % modulus + add))
        out.append(field)
    return out


def _number(token: str, field: _Field) -> int:
    if field.names is not None and token.lower() in field.names:
        return field.names[token.lower()]
    if not _DIGITS.fullmatch(token):
        raise ScheduleError(f"{field.name} field: failed to parse int from {token!r}")
    return int(token)


def _part(part: str, field: _Field) -> tuple[str, bool, bool]:
    """One comma-separated term → (croniter text, robfig star bit, periodic)."""
    range_text, slash, step_text = part.partition("/")
    step = 1
    if slash:
        if "/" in step_text:
            raise ScheduleError(f"{field.name} field: too many slashes: {part}")
        if not _DIGITS.fullmatch(step_text):
            raise ScheduleError(f"{field.name} field: failed to parse int from {step_text!r}")
        step = int(step_text)
        if step == 0:
            raise ScheduleError(
                f"{field.name} field: step of range should be a positive number: {part}"
            )
    if range_text in ("*", "?"):
        if step == 1:
            return "*", True, True
        return f"{field.low}-{field.high}/{step}", False, True
    first, dash, second = range_text.partition("-")
    if "-" in second:
        raise ScheduleError(f"{field.name} field: too many hyphens: {part}")
    start = _number(first, field)
    # "N/step" means "N-max/step", as in robfig.
    end = _number(second, field) if dash else (field.high if slash else start)
    if start < field.low:
        raise ScheduleError(
            f"{field.name} field: beginning of range ({start}) below minimum ({field.low}): {part}"
        )
    if end > field.high:
        raise ScheduleError(
            f"{field.name} field: end of range ({end}) above maximum ({field.high}): {part}"
        )
    if start > end:
        raise ScheduleError(
            f"{field.name} field: beginning of range ({start}) beyond end of range ({end}): {part}"
        )
    if start == end:
        return str(start), False, bool(slash)
    if step == 1:
        return f"{start}-{end}", False, bool(slash)
    return f"{start}-{end}/{step}", False, True


def _field(text: str, field: _Field) -> tuple[str, bool, bool]:
    out: list[str] = []
    star = periodic = False
    for part in text.split(","):
        piece, part_star, part_periodic = _part(part, field)
        out.append(piece)
        star = star or part_star
        periodic = periodic or part_periodic
    # A `*` anywhere in a list covers the whole field.
    return ("*" if star else ",".join(out)), star, periodic


def normalize(fields: list[str]) -> NormalizedExpression:
    """Validate six robfig/cron fields and rewrite them for croniter."""
    if len(fields) != len(_FIELDS):
        raise ScheduleError(
            f"expected exactly {len(_FIELDS)} fields, found {len(fields)}: [{' '.join(fields)}]"
        )
    texts: list[str] = []
    stars: list[bool] = []
    periodic: list[bool] = []
    for text, field in zip(fields, _FIELDS, strict=True):
        out, star, is_periodic = _field(text, field)
        texts.append(out)
        stars.append(star)
        periodic.append(is_periodic)
    return NormalizedExpression(
        text=" ".join(texts),
        day_or=not (stars[3] or stars[5]),
        wall_clock=not (periodic[1] or periodic[2]),
    )
