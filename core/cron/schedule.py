"""Dkron schedule specs: cron fields (via croniter), descriptors, @every, @at, @manually.

Every cron-style schedule is evaluated against wall-clock time in a zone, with two DST
policies (the Debian cron / cronsim rule):

* **wall clock** — minute and hour are fixed values (``0 30 2 * * *``, ``@daily``): the job
  names a time of day. In a fall-back hour it fires once, at the first occurrence; a time
  skipped by spring-forward fires once, at the transition instant.
* **real time** — minute or hour is ``*`` or a step (``@hourly``, ``0 */15 * * * *``): the job
  names a rhythm. It fires at every real instant whose local time matches, so both passes
  of a repeated hour fire and skipped local times do not.

croniter is only ever asked about naive wall-clock times (as seconds, where it has no DST
to get wrong); the mapping to real instants is done here with the zone's transitions.
"""

from __future__ import annotations

import functools
import re
import threading
import zlib
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import timezone as fixed_offset
from typing import Protocol
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from core.cron import _tz
from core.cron._fields import apply_hash, normalize
from core.cron.errors import ScheduleError
from plugin_sdk.gocompat import parse_go_duration

__all__ = [
    "AfterSchedule",
    "AtSchedule",
    "CronSchedule",
    "EverySchedule",
    "ManualSchedule",
    "Schedule",
    "parse_iso_duration",
    "parse_schedule",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_NS_PER_S = 1_000_000_000

_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
    "@minutely": "0 * * * * *",
}
_TZ_PREFIXES = ("CRON_TZ=", "TZ=")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|([+-])(\d{2}):(\d{2}))"
)
_RFC3339_LAYOUT = "2006-01-02T15:04:05Z07:00"


class Schedule(Protocol):
    """A parsed schedule. ``spec`` is the text it was parsed from."""

    spec: str

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (aware), in UTC; None = never again."""
        ...


def _require_aware(after: datetime) -> None:
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"next_after() needs a timezone-aware datetime, got naive {after}")


def _from_ts(ts: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _floor_ts(after: datetime) -> int:
    # Fire times are whole seconds, so "strictly after `after`" == "strictly after its floor".
    return (after - _EPOCH) // _SECOND


class ManualSchedule:
    """``@manually``: never fires on its own."""

    __slots__ = ("spec",)

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def next_after(self, after: datetime) -> datetime | None:
        _require_aware(after)
        return None

    def __repr__(self) -> str:
        return f"ManualSchedule({self.spec!r})"


class AtSchedule:
    """``@at <RFC3339>``: one shot at an instant; a past instant never fires."""

    __slots__ = ("at", "spec")

    def __init__(self, spec: str, at: datetime) -> None:
        self.spec = spec
        self.at = at.astimezone(UTC)

    def next_after(self, after: datetime) -> datetime | None:
        _require_aware(after)
        return self.at if self.at > after else None

    def __repr__(self) -> str:
        return f"AtSchedule({self.spec!r}, at={self.at.isoformat()})"


class AfterSchedule(AtSchedule):
    """``@after <RFC3339> [<ISO-8601 duration>]`` (Dkron 4.1): one shot at an instant,
    like ``@at``, and also at once when the job arrives within ``grace`` after it (a
    deploy that comes a little late still runs its one-shot job); later, never."""

    __slots__ = ("grace",)

    def __init__(self, spec: str, at: datetime, grace: timedelta) -> None:
        super().__init__(spec, at)
        self.grace = grace

    def owed(self, now: datetime, launched: datetime | None) -> datetime | None:
        """The instant to fire at once, if ``now`` is within the grace and the shot has
        not been launched (``launched``: the job's latest launched fire)."""
        if launched is not None and launched >= self.at:
            return None
        return self.at if self.at <= now < self.at + self.grace else None

    def __repr__(self) -> str:
        return f"AfterSchedule({self.spec!r}, at={self.at.isoformat()}, grace={self.grace})"


_ISO_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def parse_iso_duration(text: str) -> timedelta:
    """An ISO-8601 duration of weeks, days, hours, minutes and seconds (``PT30M``,
    ``P1DT2H``). Years and months have no fixed length and are refused."""
    m = _ISO_DURATION.fullmatch(text)
    if m is None or text in ("P", "PT") or text.endswith("T"):
        if re.fullmatch(r"P.*\d+[YM].*", text.split("T")[0]):
            raise ScheduleError(
                f"grace {text!r}: years and months have no fixed length; give days (P30D)"
            )
        raise ScheduleError(f"grace {text!r} is not an ISO-8601 duration such as PT30M")
    parts = {k: float(v) for k, v in m.groupdict().items() if v is not None}
    return timedelta(**parts)


class EverySchedule:
    """``@every <duration>``: fires at ``anchor + k * period`` for integer k.

    Dkron counts from whenever the entry was (re)added, so every job update and leader
    change shifts the phase. Here the anchor is fixed — the Unix epoch plus a stable hash
    of the job name modulo the period — so the phase survives restarts and re-saves, and
    many jobs with the same period are spread over it instead of firing together.
    """

    __slots__ = ("job_name", "period", "phase", "spec")

    def __init__(self, spec: str, period_seconds: int, job_name: str) -> None:
        self.spec = spec
        self.job_name = job_name
        self.period = period_seconds
        self.phase = zlib.crc32(job_name.encode("utf-8")) % period_seconds

    def next_after(self, after: datetime) -> datetime | None:
        _require_aware(after)
        s = _floor_ts(after)
        k = (s - self.phase) // self.period + 1
        return _from_ts(self.phase + k * self.period)

    def __repr__(self) -> str:
        return f"EverySchedule({self.spec!r}, period={self.period}s, phase={self.phase}s)"


class _WallClock:
    """One compiled croniter expression, asked only about naive wall-clock seconds.

    Shared by every schedule with the same normalized expression (wall-clock answers do
    not depend on the zone), with a one-entry memo: for any base in ``[lo, hi)`` the next
    match is ``hi``, which makes repeated questions about the same slot nearly free.
    """

    def __init__(self, expression: str, day_or: bool) -> None:
        try:
            self._cron = croniter(expression, 0.0, second_at_beginning=True, day_or=day_or)
        except (CroniterError, ValueError, TypeError) as exc:
            raise ScheduleError(f"invalid cron expression {expression!r}: {exc}") from None
        self._lock = threading.Lock()
        self._memo: tuple[int, int] = (1, 0)  # empty interval
        self._never_from: int | None = None

    def next_wall(self, base: int) -> int | None:
        """The first matching wall time (seconds since the naive epoch) after ``base``."""
        lo, hi = self._memo
        if lo <= base < hi:
            return hi
        never = self._never_from
        if never is not None and base >= never:
            return None
        with self._lock:
            try:
                found = self._cron.get_next(float, start_time=float(base))
            except CroniterBadDateError:
                # Nothing within croniter's 50-year horizon (e.g. 30 February).
                self._never_from = base if never is None else min(base, never)
                return None
            except (OverflowError, ValueError, OSError):
                return None
        result = int(found)
        self._memo = (base, result)
        return result


@functools.lru_cache(maxsize=8192)
def _compile(expression: str, day_or: bool) -> _WallClock:
    return _WallClock(expression, day_or)


def _wall_seconds(local: datetime) -> int:
    return (local.replace(tzinfo=None) - _EPOCH_NAIVE) // _SECOND


class CronSchedule:
    """Six cron fields (or a descriptor such as ``@daily``) evaluated in a time zone."""

    __slots__ = ("_clock", "expression", "spec", "tz", "wall_clock")

    def __init__(self, spec: str, fields: list[str], tz: tzinfo) -> None:
        normalized = normalize(fields)
        self.spec = spec
        self.tz = tz
        self.expression = normalized.text
        self.wall_clock = normalized.wall_clock
        self._clock = _compile(normalized.text, normalized.day_or)

    def next_after(self, after: datetime) -> datetime | None:
        _require_aware(after)
        s = _floor_ts(after)
        try:
            ts = self._next_wall_clock(s) if self.wall_clock else self._next_real_time(s)
        except (OverflowError, OSError, ValueError):
            return None
        return None if ts is None else _from_ts(ts)

    def _next_wall_clock(self, s: int) -> int | None:
        tz = self.tz
        local = datetime.fromtimestamp(s, tz)
        base = _wall_seconds(local)
        if local.fold:
            # `s` is in the second pass of a repeated hour. Wall times up to the end of that
            # hour already fired in the first pass, so look from the hour's end.
            t = _tz.prev_transition(tz, s)
            if t is not None:
                base = max(base, t + _tz.offset_at(tz, t - 1) - 1)
        while True:
            w = self._clock.next_wall(base)
            if w is None:
                return None
            # fold=0 picks the first pass of a repeated time; a skipped time is read with
            # the offset from before the gap, landing just after the transition.
            ts = int((_EPOCH_NAIVE + timedelta(seconds=w)).replace(tzinfo=tz).timestamp())
            if _wall_seconds(datetime.fromtimestamp(ts, tz)) != w:
                t = _tz.prev_transition(tz, ts)
                if t is not None:
                    ts = t
            if ts > s:
                return ts
            base = w  # cannot happen for real zones; keeps the search moving regardless

    def _next_real_time(self, s: int) -> int | None:
        tz = self.tz
        lo = s  # exclusive lower bound on the answer
        # Within a stretch of constant UTC offset, instant == wall time - offset. Find the
        # next match in the current stretch; if a transition comes first, restart there.
        for _ in range(10_000):
            off = _tz.offset_at(tz, lo + 1)
            w = self._clock.next_wall(lo + off)
            if w is None:
                return None
            ts = w - off
            t = _tz.next_transition(tz, lo + 1, ts)
            if t is None:
                return ts
            lo = t - 1
        return None

    def __repr__(self) -> str:
        return f"CronSchedule({self.spec!r}, expression={self.expression!r}, tz={self.tz})"


def _parse_at(spec: str, text: str) -> AtSchedule:
    def fail(detail: str) -> ScheduleError:
        return ScheduleError(f"failed to parse date {spec}: {detail}")

    m = _RFC3339.fullmatch(text)
    if m is None:
        raise fail(f"parsing time {text!r}: expected RFC3339 ({_RFC3339_LAYOUT})")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micro = int((m.group(7) or "").ljust(6, "0")[:6])
    try:
        if m.group(8) == "Z":
            zone: tzinfo = UTC
        else:
            sign = -1 if m.group(9) == "-" else 1
            oh, om = int(m.group(10)), int(m.group(11))
            if oh > 23 or om > 59:
                raise ValueError(f"time zone offset out of range: {m.group(8)}")
            zone = fixed_offset(sign * timedelta(hours=oh, minutes=om))
        at = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    except ValueError as exc:
        raise fail(f"parsing time {text!r}: {exc}") from None
    return AtSchedule(spec, at)


def _parse_after(spec: str, text: str) -> AfterSchedule:
    instant, _, grace_text = text.partition(" ")
    grace = timedelta(0)
    grace_text = grace_text.strip()
    if grace_text:
        if not grace_text.startswith("<"):
            raise ScheduleError(
                f"failed to parse {spec}: the grace period is written <DURATION, e.g. <PT30M"
            )
        grace = parse_iso_duration(grace_text[1:].strip())
    at = _parse_at(spec, instant).at
    return AfterSchedule(spec, at, grace)


def _parse_every(spec: str, text: str, job_name: str) -> EverySchedule:
    try:
        ns = parse_go_duration(text)
    except ValueError as exc:
        raise ScheduleError(f"failed to parse duration {spec}: {exc}") from None
    if ns <= 0:
        raise ScheduleError(f"failed to parse duration {spec}: the interval must be positive")
    seconds = max(1, -(-ns // _NS_PER_S))  # whole seconds, rounded up
    return EverySchedule(spec, seconds, job_name)


def parse_schedule(spec: str, *, timezone: str = "", job_name: str = "") -> Schedule:
    """Parse a Dkron schedule.

    ``timezone`` is the job's zone (``""`` = the machine's local zone); a ``CRON_TZ=<zone>``
    or ``TZ=<zone>`` prefix in ``spec`` overrides it. ``job_name`` drives ``~`` hashing and
    the phase of ``@every``. Raises ``ScheduleError`` with a message for bad input.
    """
    text = spec.strip()
    if not text:
        raise ScheduleError("empty spec string")

    # The job's zone is validated even when a prefix overrides it: it is stored with the job.
    zone: ZoneInfo = _tz.validate_timezone(timezone)
    for prefix in _TZ_PREFIXES:
        if text.startswith(prefix):
            name, _, rest = text[len(prefix) :].partition(" ")
            if not name:
                raise ScheduleError(f"provided bad location: {prefix} names no time zone")
            try:
                zone = _tz.validate_timezone(name)
            except ScheduleError as exc:
                raise ScheduleError(f"provided bad location {name}: {exc}") from None
            text = rest.strip()
            if not text:
                raise ScheduleError(f"no schedule after {prefix}{name}")
            break

    if text.startswith("@"):
        if text == "@manually":
            return ManualSchedule(spec)
        if text.startswith("@at ") or text == "@at":
            return _parse_at(spec, text[4:].strip())
        if text.startswith("@after ") or text == "@after":
            return _parse_after(spec, text[7:].strip())
        if text.startswith("@every ") or text == "@every":
            return _parse_every(spec, text[7:].strip(), job_name)
        expression = _DESCRIPTORS.get(text)
        if expression is None:
            raise ScheduleError(f"unrecognized descriptor: {text}")
        return CronSchedule(spec, expression.split(), zone)

    fields = apply_hash(text.split(), job_name)
    return CronSchedule(spec, fields, zone)
