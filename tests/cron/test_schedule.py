"""core.cron: Dkron's schedule syntax, its errors, hashing, @every/@at/@manually and zones."""

from __future__ import annotations

import time
import zlib
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.cron import Schedule, ScheduleError, parse_schedule, validate_timezone


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def fires(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    t = start
    for _ in range(count):
        nxt = schedule.next_after(t)
        assert nxt is not None
        assert nxt > t
        assert nxt.utcoffset() == timedelta(0)
        out.append(nxt)
        t = nxt
    return out


def cron(spec: str, tz: str = "UTC", job: str = "") -> Schedule:
    return parse_schedule(spec, timezone=tz, job_name=job)


START = utc(2024, 1, 1)  # a Monday


# --- descriptors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("@yearly", [utc(2025, 1, 1), utc(2026, 1, 1)]),
        ("@annually", [utc(2025, 1, 1), utc(2026, 1, 1)]),
        ("@monthly", [utc(2024, 2, 1), utc(2024, 3, 1)]),
        ("@weekly", [utc(2024, 1, 7), utc(2024, 1, 14)]),  # Sundays
        ("@daily", [utc(2024, 1, 2), utc(2024, 1, 3)]),
        ("@midnight", [utc(2024, 1, 2), utc(2024, 1, 3)]),
        ("@hourly", [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2)]),
        ("@minutely", [utc(2024, 1, 1, 0, 1), utc(2024, 1, 1, 0, 2)]),
    ],
)
def test_descriptors(spec: str, expected: list[datetime]) -> None:
    assert fires(cron(spec), START, 2) == expected


def test_minutely_is_second_zero_of_every_minute() -> None:
    a, b = cron("@minutely"), cron("0 * * * * *")
    t = utc(2024, 5, 6, 7, 8, 9, 123)
    for _ in range(5):
        assert a.next_after(t) == b.next_after(t)
        t = a.next_after(t) or t


def test_manually_never_fires() -> None:
    schedule = cron("@manually")
    assert schedule.spec == "@manually"
    for t in (utc(1970, 1, 1), START, utc(9000, 1, 1)):
        assert schedule.next_after(t) is None


def test_unknown_descriptor() -> None:
    with pytest.raises(ScheduleError, match=r"^unrecognized descriptor: @fortnightly$"):
        cron("@fortnightly")
    # Descriptors are case-sensitive, as in robfig/cron.
    with pytest.raises(ScheduleError, match="unrecognized descriptor: @Daily"):
        cron("@Daily")


# --- @at -----------------------------------------------------------------------------


def test_at_future_fires_once() -> None:
    schedule = cron("@at 2030-01-02T03:04:05Z")
    assert schedule.next_after(START) == utc(2030, 1, 2, 3, 4, 5)
    assert schedule.next_after(utc(2030, 1, 2, 3, 4, 4)) == utc(2030, 1, 2, 3, 4, 5)
    # Strictly after: at or past the instant, it never fires again.
    assert schedule.next_after(utc(2030, 1, 2, 3, 4, 5)) is None
    assert schedule.next_after(utc(2031, 1, 1)) is None


def test_at_past_never_fires() -> None:
    assert cron("@at 2000-01-01T00:00:00Z").next_after(START) is None


def test_at_with_offset_and_fraction() -> None:
    schedule = cron("@at 2030-06-01T10:00:00+02:00")
    assert schedule.next_after(START) == utc(2030, 6, 1, 8)
    assert cron("@at 2030-06-01T10:00:00-05:30").next_after(START) == utc(2030, 6, 1, 15, 30)
    fractional = cron("@at 2030-06-01T10:00:00.25Z").next_after(START)
    assert fractional == utc(2030, 6, 1, 10, 0, 0, 250_000)
    # The job's zone is irrelevant for an absolute instant.
    assert cron("@at 2030-06-01T10:00:00Z", tz="Asia/Tokyo").next_after(START) == utc(
        2030, 6, 1, 10
    )


@pytest.mark.parametrize(
    "spec",
    [
        "@at badtime",
        "@at 2030-01-01",  # no time
        "@at 2030-01-01T10:00:00",  # no offset
        "@at 2030-01-01 10:00:00Z",  # space instead of T
        "@at 2030-13-01T10:00:00Z",  # month 13
        "@at 2030-02-30T10:00:00Z",  # 30 February
        "@at 2030-01-01T24:00:00Z",
        "@at 2030-01-01T10:00:00+24:00",
        "@at",
    ],
)
def test_at_bad_date(spec: str) -> None:
    with pytest.raises(ScheduleError) as info:
        cron(spec)
    assert str(info.value).startswith(f"failed to parse date {spec}: ")


def test_at_bad_date_detail() -> None:
    with pytest.raises(ScheduleError, match=r"day is out of range for month"):
        cron("@at 2030-02-30T10:00:00Z")


# --- @every --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        ("1s", 1),
        ("90s", 90),
        ("1m", 60),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2h45m30s", 9930),
        ("500ms", 1),  # rounded up to the 1 s minimum
        ("1500ms", 2),  # rounded up, never down
        ("1.2s", 2),
        ("1s1ns", 2),
        ("10us", 1),
        ("3\u00b5s", 1),
        ("+30s", 30),
    ],
)
def test_every_period(duration: str, seconds: int) -> None:
    schedule = cron(f"@every {duration}", job="job")
    a = schedule.next_after(START)
    assert a is not None
    b = schedule.next_after(a)
    assert b is not None
    assert (b - a).total_seconds() == seconds
    assert a - START <= timedelta(seconds=seconds)


def test_every_phase_is_a_stable_hash_of_the_job_name() -> None:
    first = cron("@every 1m", job="backup")
    second = cron("@every 1m", job="backup")  # e.g. after a restart or a re-save
    phase = zlib.crc32(b"backup") % 60
    t = utc(2024, 3, 4, 5, 6, 7, 89)
    got = first.next_after(t)
    assert got == second.next_after(t)
    assert got is not None
    assert int(got.timestamp()) % 60 == phase
    # Independent of when you ask: every instant in the same period maps to one fire.
    assert got is not None
    for back in (1, 17, 59):
        assert first.next_after(got - timedelta(seconds=back)) == got
    assert first.next_after(got) == got + timedelta(minutes=1)


def test_every_spreads_jobs_with_the_same_period() -> None:
    names = [f"job-{i}" for i in range(50)]
    seconds = {
        int(s.timestamp()) % 60
        for s in (cron("@every 1m", job=n).next_after(START) for n in names)
        if s is not None
    }
    # 50 jobs must not all share second 0; crc32 spreads them widely.
    assert len(seconds) > 20


def test_every_ignores_zone() -> None:
    assert cron("@every 1h", tz="Asia/Tokyo", job="j").next_after(START) == cron(
        "@every 1h", tz="UTC", job="j"
    ).next_after(START)


@pytest.mark.parametrize(
    ("spec", "detail"),
    [
        ("@every 10", 'time: missing unit in duration "10"'),
        ("@every 5x", 'time: unknown unit "x" in duration "5x"'),
        ("@every abc", 'time: invalid duration "abc"'),
        ("@every .s", 'time: invalid duration ".s"'),
        ("@every", 'time: invalid duration ""'),
        ("@every 1h-5m", 'time: unknown unit "h-" in duration "1h-5m"'),
        ("@every 3000000h", 'time: invalid duration "3000000h"'),  # beyond int64 ns
        ("@every -5s", "the interval must be positive"),
        ("@every 0s", "the interval must be positive"),
        ("@every 0", "the interval must be positive"),
    ],
)
def test_every_bad_duration(spec: str, detail: str) -> None:
    with pytest.raises(ScheduleError) as info:
        cron(spec)
    assert str(info.value) == f"failed to parse duration {spec}: {detail}"


# --- field syntax --------------------------------------------------------------------


def test_seconds_come_first() -> None:
    assert fires(cron("15 30 10 * * *"), START, 2) == [
        utc(2024, 1, 1, 10, 30, 15),
        utc(2024, 1, 2, 10, 30, 15),
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("*/20 * * * * *", [utc(2024, 1, 1, 0, 0, 20), utc(2024, 1, 1, 0, 0, 40)]),
        ("5/20 * * * * *", [utc(2024, 1, 1, 0, 0, 5), utc(2024, 1, 1, 0, 0, 25)]),
        ("0 10-12 * * * *", [utc(2024, 1, 1, 0, 10), utc(2024, 1, 1, 0, 11)]),
        ("0 0 9,17 * * *", [utc(2024, 1, 1, 9), utc(2024, 1, 1, 17)]),
        ("0 0 0 * JAN,mar *", [utc(2024, 1, 2), utc(2024, 1, 3)]),
        ("0 0 12 * FEB-MAR MON", [utc(2024, 2, 5, 12), utc(2024, 2, 12, 12)]),
        ("0 0 12 * * fri-sat", [utc(2024, 1, 5, 12), utc(2024, 1, 6, 12)]),
        ("0 0 0 ? * 5", [utc(2024, 1, 5), utc(2024, 1, 12)]),
        ("0 0 0 1 * ?", [utc(2024, 2, 1), utc(2024, 3, 1)]),
        ("0 0 ? * * *", [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2)]),  # `?` is `*` everywhere
        ("0 0 0 29 2 *", [utc(2024, 2, 29), utc(2028, 2, 29)]),
        # robfig: "59/15" is 59 alone; croniter would otherwise read 59-59 as the whole cycle
        ("59/15 0 0 * * *", [utc(2024, 1, 1, 0, 0, 59), utc(2024, 1, 2, 0, 0, 59)]),
        ("0 0 5-5 * * *", [utc(2024, 1, 1, 5), utc(2024, 1, 2, 5)]),
        ("0 0 0 * * 1-1", [utc(2024, 1, 8), utc(2024, 1, 15)]),
        ("0 0 1,* * * *", [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2)]),
        ("  0 0 12  * *  *  ", [utc(2024, 1, 1, 12), utc(2024, 1, 2, 12)]),
    ],
)
def test_field_syntax(spec: str, expected: list[datetime]) -> None:
    assert fires(cron(spec), START, 2) == expected


def test_dom_and_dow_are_ored_when_both_restricted() -> None:
    # The 13th OR any Friday (2024-01-05 is a Friday).
    assert fires(cron("0 0 0 13 * 5"), START, 4) == [
        utc(2024, 1, 5),
        utc(2024, 1, 12),
        utc(2024, 1, 13),
        utc(2024, 1, 19),
    ]
    # A step is a restriction too: odd days OR Mondays.
    assert fires(cron("0 0 0 */2 * 1"), utc(2024, 1, 2), 4) == [
        utc(2024, 1, 3),
        utc(2024, 1, 5),
        utc(2024, 1, 7),
        utc(2024, 1, 8),
    ]


def test_dom_and_dow_are_anded_when_either_is_a_wildcard() -> None:
    # `*` / `?` / `*/1` in one day field → the other one alone decides.
    assert fires(cron("0 0 0 * * 5"), START, 2) == [utc(2024, 1, 5), utc(2024, 1, 12)]
    assert fires(cron("0 0 0 1-7 * */1"), START, 2) == [utc(2024, 1, 2), utc(2024, 1, 3)]
    assert fires(cron("0 0 0 */1 * 5"), START, 2) == [utc(2024, 1, 5), utc(2024, 1, 12)]


def test_impossible_date_never_fires() -> None:
    schedule = cron("0 0 0 30 2 *")
    assert schedule.next_after(START) is None
    assert schedule.next_after(utc(2030, 1, 1)) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("   ", "empty spec string"),
        ("0 * * * *", r"expected exactly 6 fields, found 5: [0 * * * *]"),
        ("0 0 * * * * 2024", r"expected exactly 6 fields, found 7: [0 0 * * * * 2024]"),
        ("60 * * * * *", "second field: end of range (60) above maximum (59): 60"),
        ("0 60 * * * *", "minute field: end of range (60) above maximum (59): 60"),
        ("0 0 24 * * *", "hour field: end of range (24) above maximum (23): 24"),
        ("0 0 0 0 * *", "day-of-month field: beginning of range (0) below minimum (1): 0"),
        ("0 0 0 32 * *", "day-of-month field: end of range (32) above maximum (31): 32"),
        ("0 0 0 * 13 *", "month field: end of range (13) above maximum (12): 13"),
        ("0 0 0 * 0 *", "month field: beginning of range (0) below minimum (1): 0"),
        ("0 0 0 * * 7", "day-of-week field: end of range (7) above maximum (6): 7"),
        ("0 0 5-1 * * *", "hour field: beginning of range (5) beyond end of range (1): 5-1"),
        # No wrap-around (croniter would wrap): SUN is 0, as in robfig/cron.
        (
            "0 0 0 * * SAT-SUN",
            "day-of-week field: beginning of range (6) beyond end of range (0): SAT-SUN",
        ),
        ("*/0 * * * * *", "second field: step of range should be a positive number: */0"),
        ("1/2/3 * * * * *", "second field: too many slashes: 1/2/3"),
        ("1-2-3 * * * * *", "second field: too many hyphens: 1-2-3"),
        ("0 0 0 L * *", "day-of-month field: failed to parse int from 'L'"),
        ("0 0 0 15W * *", "day-of-month field: failed to parse int from '15W'"),
        ("0 0 0 * * 1#2", "day-of-week field: failed to parse int from '1#2'"),
        ("H * * * * *", "second field: failed to parse int from 'H'"),
        ("0 0 0 * MON *", "month field: failed to parse int from 'MON'"),
        ("0 0 0 * * JAN", "day-of-week field: failed to parse int from 'JAN'"),
        ("0 0 0 * * MONDAY", "day-of-week field: failed to parse int from 'MONDAY'"),
        ("0 0 1,,2 * * *", "hour field: failed to parse int from ''"),
        ("0 0 -1 * * *", "hour field: failed to parse int from ''"),
        ("0 0 */x * * *", "hour field: failed to parse int from 'x'"),
        ("0 0 \u0663 * * *", "hour field: failed to parse int from '\u0663'"),  # Arabic 3
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        cron(spec)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


# --- `~` hashing ---------------------------------------------------------------------


def test_hash_dkron_example() -> None:
    # Dkron's Test_scheduleHash: job `test_job` turns `0 0 ~ * * *` into `0 0 18 * * *`.
    hashed = cron("0 0 ~ * * *", job="test_job")
    assert getattr(hashed, "expression", None) == "0 0 18 * * *"
    assert fires(hashed, START, 2) == [utc(2024, 1, 1, 18), utc(2024, 1, 2, 18)]


def test_hash_modulus_per_field() -> None:
    # "a" sums to 97: sec/min 97%60=37, hour 97%24=1, dom 97%28+1=14, month 97%12+1=2, dow 97%7=6.
    hashed = cron("~ ~ ~ ~ ~ ~", job="a")
    assert getattr(hashed, "expression", None) == "37 37 1 14 2 6"
    explicit = cron("37 37 1 14 2 6")
    t = START
    for _ in range(4):
        got = hashed.next_after(t)
        assert got == explicit.next_after(t)
        assert got is not None
        t = got
    # Feb 14 OR Saturdays in February, at 01:37:37.
    assert fires(hashed, START, 3) == [
        utc(2024, 2, 3, 1, 37, 37),
        utc(2024, 2, 10, 1, 37, 37),
        utc(2024, 2, 14, 1, 37, 37),
    ]


def test_hash_uses_code_points_and_works_inside_expressions() -> None:
    # "é" is U+00E9 = 233: minute 233 % 60 = 53.
    assert getattr(cron("0 ~ * * * *", job="é"), "expression", None) == "0 53 * * * *"
    assert getattr(cron("0 ~/20 * * * *", job="é"), "expression", None) == "0 53-59/20 * * * *"
    # Different jobs get different slots, the same job always the same one.
    assert cron("0 0 ~ * * *", job="nightly-a").next_after(START) == cron(
        "0 0 ~ * * *", job="nightly-a"
    ).next_after(START)


def test_hash_skips_tz_prefix_and_ignores_descriptors() -> None:
    hashed = cron("TZ=UTC 0 0 ~ * * *", tz="Asia/Tokyo", job="test_job")
    assert getattr(hashed, "expression", None) == "0 0 18 * * *"
    assert hashed.next_after(START) == utc(2024, 1, 1, 18)
    # `@…` specs are left untouched, so a `~` there is simply invalid.
    with pytest.raises(ScheduleError, match=r"^failed to parse duration @every ~: time: invalid"):
        cron("@every ~", job="test_job")


# --- time zones ----------------------------------------------------------------------


def test_descriptor_runs_in_the_job_zone() -> None:
    # Tokyo midnight is 15:00 UTC the day before (no DST).
    assert fires(cron("@daily", tz="Asia/Tokyo"), START, 2) == [
        utc(2024, 1, 1, 15),
        utc(2024, 1, 2, 15),
    ]
    assert cron("@weekly", tz="America/New_York").next_after(START) == utc(2024, 1, 7, 5)


def test_cron_in_the_job_zone() -> None:
    assert cron("0 0 9 * * MON-FRI", tz="Europe/Berlin").next_after(START) == utc(2024, 1, 1, 8)


def test_cron_tz_prefix_wins_over_job_zone() -> None:
    for prefix in ("CRON_TZ=UTC ", "TZ=UTC "):
        schedule = cron(prefix + "0 0 0 * * *", tz="Asia/Tokyo")
        assert schedule.next_after(START) == utc(2024, 1, 2)
        assert schedule.spec == prefix + "0 0 0 * * *"
    assert cron("CRON_TZ=Asia/Tokyo @daily", tz="UTC").next_after(START) == utc(2024, 1, 1, 15)


def test_bad_prefix_zone() -> None:
    with pytest.raises(ScheduleError) as info:
        cron("CRON_TZ=Mars/Olympus 0 0 0 * * *")
    assert str(info.value) == "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"
    with pytest.raises(ScheduleError, match=r"^no schedule after TZ=UTC$"):
        cron("TZ=UTC")
    with pytest.raises(ScheduleError, match="names no time zone"):
        cron("TZ= 0 0 0 * * *")
    # The job's own zone is checked even when the prefix overrides it.
    with pytest.raises(ScheduleError, match=r"^unknown time zone Nowhere$"):
        cron("CRON_TZ=UTC 0 0 0 * * *", tz="Nowhere")


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "America", "/etc/passwd", "../etc", "utc", "a\0b"]
)
def test_validate_timezone_rejects(name: str) -> None:
    with pytest.raises(ScheduleError) as info:
        validate_timezone(name)
    assert str(info.value) == f"unknown time zone {name}"
    with pytest.raises(ScheduleError) as info:
        cron("@daily", tz=name)
    assert str(info.value) == f"unknown time zone {name}"


def test_validate_timezone_accepts() -> None:
    assert validate_timezone("Europe/Berlin") == ZoneInfo("Europe/Berlin")
    assert validate_timezone("UTC").utcoffset(datetime(2024, 6, 1)) == timedelta(0)


def test_empty_zone_is_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert validate_timezone("") == ZoneInfo("America/New_York")
    assert validate_timezone("Local") == ZoneInfo("America/New_York")
    assert cron("@daily", tz="").next_after(START) == utc(2024, 1, 1, 5)
    monkeypatch.setenv("TZ", ":Asia/Tokyo")
    assert cron("@daily", tz="").next_after(START) == utc(2024, 1, 1, 15)
    # Go: an empty TZ means UTC.
    monkeypatch.setenv("TZ", "")
    assert cron("@daily", tz="").next_after(START) == utc(2024, 1, 2)


# --- next_after contract -------------------------------------------------------------


def test_next_after_is_strict_and_returns_utc() -> None:
    schedule = cron("0 0 12 * * *", tz="Europe/Berlin")
    noon = schedule.next_after(START)
    assert noon == utc(2024, 1, 1, 11)
    assert noon is not None
    assert noon.tzinfo is UTC
    assert schedule.next_after(noon) == utc(2024, 1, 2, 11)
    assert schedule.next_after(noon - timedelta(microseconds=1)) == noon
    # Any aware input works, whatever its zone.
    berlin_midnight = datetime(2024, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    assert schedule.next_after(berlin_midnight) == noon
    plus_five = datetime(2024, 1, 1, 15, 59, 59, tzinfo=timezone(timedelta(hours=5)))
    assert schedule.next_after(plus_five) == noon


@pytest.mark.parametrize(
    "spec", ["0 0 12 * * *", "@every 1m", "@at 2030-01-01T00:00:00Z", "@manually"]
)
def test_next_after_rejects_naive(spec: str) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cron(spec).next_after(datetime(2024, 1, 1))


def test_next_after_is_fast() -> None:
    # The scheduler asks for 100k jobs; a regression to per-call compilation would be
    # ~10x slower than this bound. Distinct instants defeat the one-entry memo.
    schedule = cron("0 30 2 * * 1-5", tz="America/New_York")
    n = 500
    begin = time.perf_counter()
    for i in range(n):
        assert schedule.next_after(START + timedelta(seconds=4_001 * i)) is not None
    per_call = (time.perf_counter() - begin) / n
    assert per_call < 1e-3, f"{per_call * 1e6:.0f} µs per call"
