"""DST behaviour of core.cron, checked against cronsim as an independent oracle.

cronsim implements Debian cron's rules, which are the ones core.cron promises:

* fixed-time jobs (minute and hour are plain values) follow the wall clock: once in a
  fall-back hour, and a skipped time fires at the transition. cronsim applies this only
  to 5-field expressions, so the oracle asks it about ``minute hour dom month dow`` and
  adds the seconds field itself — except for a time moved out of a gap, which fires at
  the transition instant exactly (core.cron's choice: a ``02:30:15`` job fires at 03:00:00
  so that fire times never go backwards within the gap);
* jobs whose minute or hour is ``*`` or a step follow real time. cronsim evaluates
  6-field expressions that way (it walks real seconds and matches local fields).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.cron import parse_schedule

# Santiago springs forward at midnight, so `@daily` itself lands in a gap there.
SANTIAGO = "America/Santiago"
DST_ZONES = ["America/New_York", "Europe/Berlin", "Australia/Sydney", SANTIAGO]
FIXED_ZONES = ["Asia/Tokyo", "UTC"]
ALL_ZONES = DST_ZONES + FIXED_ZONES
START = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
END = int(datetime(2031, 1, 1, tzinfo=UTC).timestamp())


@functools.cache
def transitions(zone: str) -> tuple[int, ...]:
    """Offset changes of `zone` in 2020-2030, found by hourly probing (sampling aid only)."""
    tz = ZoneInfo(zone)
    found = []
    prev = datetime.fromtimestamp(START, tz).utcoffset()
    for ts in range(START + 3600, END, 3600):
        off = datetime.fromtimestamp(ts, tz).utcoffset()
        if off != prev:
            found.append(ts)  # all transitions in these zones are on the hour (UTC)
        prev = off
    return tuple(found)


def test_sampling_aid_finds_the_transitions() -> None:
    # Two changes a year for 11 years in each DST zone; none in the fixed zones.
    for zone in DST_ZONES:
        assert len(transitions(zone)) == 22, zone
    for zone in FIXED_ZONES:
        assert transitions(zone) == ()


@st.composite
def zone_and_instant(draw: st.DrawFn, zones: list[str]) -> tuple[str, datetime]:
    zone = draw(st.sampled_from(zones))
    near = transitions(zone)
    if near and draw(st.booleans()):
        # Half the draws land within a few hours of a transition, where the bugs live.
        ts = draw(st.sampled_from(near)) + draw(st.integers(-4 * 3600, 4 * 3600))
    else:
        ts = draw(st.integers(START, END))
    micro = draw(st.sampled_from([0, 0, 1, 500_000, 999_999]))
    return zone, datetime.fromtimestamp(ts, UTC) + timedelta(microseconds=micro)


def to_utc(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.astimezone(UTC)


def oracle_wall_clock(
    second: int, minute: int, hour: int, dom: str, month: str, dow: str, zone: str, after: datetime
) -> datetime | None:
    tz = ZoneInfo(zone)
    try:
        # Start a day early: cronsim walks naive wall time, which can trail `after`.
        it = CronSim(
            f"{minute} {hour} {dom} {month} {dow}", (after - timedelta(days=1)).astimezone(tz)
        )
    except CronSimError:
        return None  # cronsim proves no date matches (e.g. 31 April)
    for _ in range(1000):
        try:
            minute_fire = next(it)
        except StopIteration:
            return None
        if (minute_fire.hour, minute_fire.minute) == (hour, minute):
            fire = minute_fire + timedelta(seconds=second)
        else:
            fire = minute_fire  # moved out of a spring-forward gap
        if fire.astimezone(UTC) > after:
            return fire.astimezone(UTC)
    raise AssertionError("oracle did not converge")


def oracle_real_time(expr: str, zone: str, after: datetime) -> datetime | None:
    tz = ZoneInfo(zone)
    try:
        return to_utc(next(CronSim(expr, after.astimezone(tz))))
    except (CronSimError, StopIteration):
        return None


hours = st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(0, 23))
doms = st.one_of(st.just("*"), st.integers(1, 31).map(str))
months = st.one_of(st.just("*"), st.just("*"), st.integers(1, 12).map(str))
dows = st.one_of(st.just("*"), st.integers(0, 6).map(str))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    second=st.integers(0, 59),
    minute=st.one_of(st.sampled_from([0, 30]), st.integers(0, 59)),
    hour=hours,
    dom=doms,
    month=months,
    dow=dows,
    where=zone_and_instant(ALL_ZONES),
)
# A skipped time (02:30 on New York's spring-forward day) fires at the transition.
@example(15, 30, 2, "*", "*", "*", ("America/New_York", datetime(2024, 3, 10, 5, tzinfo=UTC)))
# A repeated time fires once: from inside the second pass, the next one is tomorrow.
@example(0, 30, 1, "*", "*", "*", ("America/New_York", datetime(2024, 11, 3, 6, 10, tzinfo=UTC)))
@example(0, 30, 2, "*", "*", "*", ("Europe/Berlin", datetime(2024, 10, 27, 0, 45, tzinfo=UTC)))
@example(0, 30, 2, "*", "*", "*", ("Australia/Sydney", datetime(2024, 4, 6, 15, 45, tzinfo=UTC)))
def test_fixed_time_specs_match_cronsim(
    second: int,
    minute: int,
    hour: int,
    dom: str,
    month: str,
    dow: str,
    where: tuple[str, datetime],
) -> None:
    zone, after = where
    spec = f"{second} {minute} {hour} {dom} {month} {dow}"
    got = parse_schedule(spec, timezone=zone).next_after(after)
    want = oracle_wall_clock(second, minute, hour, dom, month, dow, zone, after)
    assert got == want, f"{spec} in {zone} after {after.isoformat()}"


seconds_field = st.one_of(st.integers(0, 59).map(str), st.sampled_from(["*/15", "*/20", "*"]))
periodic = st.sampled_from(["*", "*/15", "*/2", "*/5"])


@st.composite
def real_time_spec(draw: st.DrawFn) -> str:
    minute = draw(st.one_of(periodic, st.integers(0, 59).map(str)))
    hour = draw(st.one_of(periodic, hours.map(str)))
    if not (minute.startswith("*") or hour.startswith("*")):
        hour = "*"
    return " ".join([draw(seconds_field), minute, hour, draw(doms), draw(months), draw(dows)])


@settings(max_examples=200, deadline=None, derandomize=True)
# Not Santiago: for a day that starts in a gap, cronsim's real-time walk matches hour 0 on
# the nonexistent midnight and returns 01:00, which a `*/15` hour field does not name.
@given(spec=real_time_spec(), where=zone_and_instant([z for z in ALL_ZONES if z != SANTIAGO]))
@example("0 0 * * * *", ("America/New_York", datetime(2024, 11, 3, 5, 30, tzinfo=UTC)))
@example("0 30 * * * *", ("America/New_York", datetime(2024, 11, 3, 5, 50, tzinfo=UTC)))
@example("*/15 * * * * *", ("Europe/Berlin", datetime(2024, 3, 31, 0, 59, 50, tzinfo=UTC)))
def test_periodic_specs_match_cronsim(spec: str, where: tuple[str, datetime]) -> None:
    zone, after = where
    got = parse_schedule(spec, timezone=zone).next_after(after)
    assert got == oracle_real_time(spec, zone, after), f"{spec} in {zone} after {after.isoformat()}"


# --- explicit transitions ------------------------------------------------------------


def fires(spec: str, zone: str, start: datetime, count: int) -> list[datetime]:
    schedule = parse_schedule(spec, timezone=zone)
    out: list[datetime] = []
    t: datetime | None = start
    for _ in range(count):
        assert t is not None
        t = schedule.next_after(t)
        assert t is not None
        assert t.tzinfo is UTC
        out.append(t)
    return out


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


NY = "America/New_York"
BERLIN = "Europe/Berlin"


def test_new_york_spring_forward_2024_03_10() -> None:
    # 02:00 EST (07:00Z) jumps to 03:00 EDT.
    start = utc(2024, 3, 9, 12)
    assert fires("0 30 2 * * *", NY, start, 2) == [utc(2024, 3, 10, 7), utc(2024, 3, 11, 6, 30)]
    assert fires("0 30 1 * * *", NY, start, 2) == [utc(2024, 3, 10, 6, 30), utc(2024, 3, 11, 5, 30)]
    assert fires("0 30 3 * * *", NY, start, 1) == [utc(2024, 3, 10, 7, 30)]
    # @hourly keeps real hours: 01:00 EST, then 03:00 EDT one hour later.
    assert fires("@hourly", NY, utc(2024, 3, 10, 5, 30), 3) == [
        utc(2024, 3, 10, 6),
        utc(2024, 3, 10, 7),
        utc(2024, 3, 10, 8),
    ]
    # Sub-hour jobs do not notice.
    assert fires("*/15 * * * * *", NY, utc(2024, 3, 10, 6, 59, 30), 4) == [
        utc(2024, 3, 10, 6, 59, 45),
        utc(2024, 3, 10, 7),
        utc(2024, 3, 10, 7, 0, 15),
        utc(2024, 3, 10, 7, 0, 30),
    ]
    # Two skipped times (02:15, 02:45) collapse into one fire at the transition.
    assert fires("0 15,45 2 * * *", NY, start, 2) == [utc(2024, 3, 10, 7), utc(2024, 3, 11, 6, 15)]


def test_new_york_fall_back_2024_11_03() -> None:
    # 02:00 EDT (06:00Z) falls back to 01:00 EST; 01:00-01:59 happens twice.
    start = utc(2024, 11, 2, 12)
    assert fires("0 30 1 * * *", NY, start, 2) == [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]
    # Asked from inside the second 01:xx, the 01:30 of today is already spent.
    assert fires("0 30 1 * * *", NY, utc(2024, 11, 3, 6, 10), 1) == [utc(2024, 11, 4, 6, 30)]
    # …but a time after the repeated hour still fires today.
    assert fires("0 30 2 * * *", NY, utc(2024, 11, 3, 6, 10), 1) == [utc(2024, 11, 3, 7, 30)]
    assert fires("@daily", NY, start, 2) == [utc(2024, 11, 3, 4), utc(2024, 11, 4, 5)]
    # Real-time jobs fire in both passes.
    assert fires("@hourly", NY, utc(2024, 11, 3, 4, 30), 3) == [
        utc(2024, 11, 3, 5),
        utc(2024, 11, 3, 6),
        utc(2024, 11, 3, 7),
    ]
    assert fires("0 30 * * * *", NY, utc(2024, 11, 3, 5, 50), 2) == [
        utc(2024, 11, 3, 6, 30),
        utc(2024, 11, 3, 7, 30),
    ]
    assert fires("*/15 * * * * *", NY, utc(2024, 11, 3, 5, 59, 30), 3) == [
        utc(2024, 11, 3, 5, 59, 45),
        utc(2024, 11, 3, 6),
        utc(2024, 11, 3, 6, 0, 15),
    ]


def test_berlin_spring_forward_2024_03_31() -> None:
    # 02:00 CET (01:00Z) jumps to 03:00 CEST.
    start = utc(2024, 3, 30, 12)
    assert fires("0 30 2 * * *", BERLIN, start, 2) == [utc(2024, 3, 31, 1), utc(2024, 4, 1, 0, 30)]
    assert fires("0 0 2 * * *", BERLIN, start, 1) == [utc(2024, 3, 31, 1)]
    assert fires("0 0 0 * * *", BERLIN, start, 2) == [utc(2024, 3, 30, 23), utc(2024, 3, 31, 22)]


def test_berlin_fall_back_2024_10_27() -> None:
    # 03:00 CEST (01:00Z) falls back to 02:00 CET; 02:00-02:59 happens twice.
    start = utc(2024, 10, 26, 12)
    assert fires("0 30 2 * * *", BERLIN, start, 2) == [
        utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 28, 1, 30),
    ]
    assert fires("0 0 * * * *", BERLIN, utc(2024, 10, 27, 0, 30), 3) == [
        utc(2024, 10, 27, 1),
        utc(2024, 10, 27, 2),
        utc(2024, 10, 27, 3),
    ]


def test_santiago_midnight_gap_2024_09_08() -> None:
    # Midnight does not exist on 2024-09-08 (00:00 -04 jumps to 01:00 -03): fire at 01:00.
    assert fires("@daily", SANTIAGO, utc(2024, 9, 6, 12), 3) == [
        utc(2024, 9, 7, 4),
        utc(2024, 9, 8, 4),
        utc(2024, 9, 9, 3),
    ]


@pytest.mark.parametrize(
    ("spec", "zone", "after"),
    [
        ("0 30 2 * * *", NY, utc(2024, 3, 10, 6)),
        ("0 30 1 * * *", NY, utc(2024, 11, 3, 5, 45)),
        ("0 30 2 * * *", BERLIN, utc(2024, 3, 31, 0, 45)),
        ("0 30 2 * * *", BERLIN, utc(2024, 10, 27, 1, 15)),
    ],
)
def test_explicit_cases_agree_with_oracle(spec: str, zone: str, after: datetime) -> None:
    second, minute, hour, dom, month, dow = spec.split()
    want = oracle_wall_clock(int(second), int(minute), int(hour), dom, month, dow, zone, after)
    assert want is not None
    assert parse_schedule(spec, timezone=zone).next_after(after) == want
