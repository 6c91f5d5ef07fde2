"""Time-zone lookup with Go's error text, and the UTC-offset transitions of a zone.

zoneinfo does not expose a zone's transition table, yet the schedule code needs the exact
instant of each offset change (the "transition instant" a skipped wall time fires at, the
end of a repeated hour). They are found by probing the offset once a day and bisecting
to the second, and cached per (zone, year).
"""

from __future__ import annotations

import bisect
import functools
import os
import time
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.cron.errors import ScheduleError

__all__ = [
    "local_zone",
    "next_transition",
    "offset_at",
    "prev_transition",
    "validate_timezone",
]

_DAY = 86_400
# Offsets can only be probed for instants datetime can represent.
_MIN_YEAR = 2
_MAX_YEAR = 9998


def validate_timezone(name: str) -> ZoneInfo:
    """Resolve an IANA zone name the way Go's ``time.LoadLocation`` would.

    ``""`` and ``"Local"`` mean the machine's local zone (Dkron runs a job without a
    ``timezone`` in the leader's local time). Anything else must name a zone in the tz
    database; otherwise ``ScheduleError("unknown time zone <name>")``.
    """
    if name in ("", "Local"):
        return local_zone()
    if name == "UTC":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: absolute or escaping paths, NUL bytes, files that are not TZif.
        # OSError: directory names such as "America".
        raise ScheduleError(f"unknown time zone {name}") from None


def local_zone() -> ZoneInfo:
    """The machine's local zone, following Go's rules for ``time.Local``."""
    return _local_zone_for(os.environ.get("TZ"))


@functools.lru_cache(maxsize=8)
def _local_zone_for(tz_env: str | None) -> ZoneInfo:
    # Keyed on $TZ so a changed environment is honoured without re-reading files per call.
    if tz_env is not None:
        # Go: TZ="" means UTC; an unloadable TZ also falls back to UTC.
        name = tz_env.removeprefix(":")
        if not name:
            return ZoneInfo("UTC")
        try:
            if name.startswith("/"):
                with open(name, "rb") as fh:
                    return ZoneInfo.from_file(fh, key=name)
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            return ZoneInfo("UTC")
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
        marker = "/zoneinfo/"
        if marker in target:
            return ZoneInfo(target.split(marker, 1)[1])
        with localtime.open("rb") as fh:
            return ZoneInfo.from_file(fh, key="Local")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return ZoneInfo("UTC")


def offset_at(tz: tzinfo, ts: int) -> int:
    """UTC offset of ``tz`` in seconds at the Unix instant ``ts``."""
    offset = datetime.fromtimestamp(ts, tz).utcoffset()
    return 0 if offset is None else offset.days * _DAY + offset.seconds


@functools.lru_cache(maxsize=4096)
def _transitions(tz: tzinfo, year: int) -> tuple[int, ...]:
    """Instants ``t`` in UTC year ``year`` where the offset at ``t`` differs from ``t - 1``.

    Assumes a zone changes offset at most once per day, which holds for every rule in
    the tz database since the 1990s.
    """
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found: list[int] = []
    prev_ts = start - 1
    prev_off = offset_at(tz, prev_ts)
    probe = prev_ts
    while probe < end - 1:
        probe = min(probe + _DAY, end - 1)
        off = offset_at(tz, probe)
        if off != prev_off:
            lo, hi = prev_ts, probe  # offset(lo) == prev_off != offset(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset_at(tz, mid) == prev_off:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
        prev_ts, prev_off = probe, off
    return tuple(found)


def _year_of(ts: int) -> int:
    return time.gmtime(ts).tm_year


def next_transition(tz: tzinfo, after: int, until: int) -> int | None:
    """The first transition ``t`` with ``after < t <= until``, if any."""
    if after >= until:
        return None
    first = max(_year_of(after), _MIN_YEAR)
    last = min(_year_of(until), _MAX_YEAR)
    for year in range(first, last + 1):
        table = _transitions(tz, year)
        i = bisect.bisect_right(table, after)
        if i < len(table):
            return table[i] if table[i] <= until else None
    return None


def prev_transition(tz: tzinfo, at: int) -> int | None:
    """The last transition ``t <= at`` within the current or previous UTC year."""
    year = _year_of(at)
    for y in (year, year - 1):
        if not _MIN_YEAR <= y <= _MAX_YEAR:
            continue
        table = _transitions(tz, y)
        i = bisect.bisect_right(table, at)
        if i:
            return table[i - 1]
    return None
