"""Dkron 4.1's one-shot ``@after <RFC3339> <ISO-8601 duration>`` (Dkron #1883)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.cron import AfterSchedule, ScheduleError, parse_schedule
from core.cron.schedule import parse_iso_duration
from core.jobs.model import Job
from core.scheduler.scheduler import Scheduler

AT = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
SPEC = "@after 2024-01-01T09:00:00Z <PT30M"


def test_it_parses_the_instant_and_the_grace() -> None:
    schedule = parse_schedule(SPEC)
    assert isinstance(schedule, AfterSchedule)
    assert schedule.at == AT and schedule.grace == timedelta(minutes=30)
    offset = parse_schedule("@after 2024-01-01T10:00:00+01:00")
    assert isinstance(offset, AfterSchedule) and offset.at == AT and not offset.grace


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT30M", timedelta(minutes=30)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("P2W", timedelta(weeks=2)),
        ("PT0.5S", timedelta(seconds=0.5)),
    ],
)
def test_iso_durations(text: str, expected: timedelta) -> None:
    assert parse_iso_duration(text) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("@after", "failed to parse date"),
        ("@after tomorrow", "expected RFC3339"),
        ("@after 2024-01-01T09:00:00Z PT30M", "the grace period is written <DURATION"),
        ("@after 2024-01-01T09:00:00Z <30m", "not an ISO-8601 duration"),
        ("@after 2024-01-01T09:00:00Z <P1M", "years and months have no fixed length"),
    ],
)
def test_bad_specs_say_why(spec: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(spec)


async def _fired(now: datetime, launched: datetime | None = None) -> tuple[object, list[object]]:
    async def on_fire(_fires: list[object]) -> None:
        return None

    scheduler = Scheduler(on_fire, clock=lambda: now)
    job = Job(name="once", schedule=SPEC, executor="shell")
    moment = scheduler.set_job(job, launched)
    return moment, scheduler._due(now)


async def test_created_before_the_instant_it_fires_at_the_instant() -> None:
    moment, due = await _fired(AT - timedelta(hours=1))
    assert moment == AT and due == []


async def test_created_within_the_grace_it_fires_at_once_as_the_instant() -> None:
    moment, due = await _fired(AT + timedelta(minutes=10))
    assert moment == AT
    [fire] = due
    assert fire.job_name == "once" and fire.scheduled_at == AT  # type: ignore[attr-defined]


async def test_created_after_the_grace_it_never_fires() -> None:
    moment, due = await _fired(AT + timedelta(minutes=31))
    assert moment is None and due == []


async def test_it_fires_once_only() -> None:
    # Saved again within the grace, after it was launched: nothing more.
    moment, due = await _fired(AT + timedelta(minutes=10), launched=AT)
    assert moment is None and due == []
