"""Schedules as a real agent runs them: ``@every``, ``@at``, job time zones and DST."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from e2e_helpers import ZERO, Api, parse_time, shell_job, wait_for


@pytest.fixture
def cleanup(api: Api) -> Iterator[list[str]]:
    """Names of scheduled jobs to delete after the test, so they stop firing."""
    names: list[str] = []
    yield names
    for name in names:
        api.delete(f"/v1/jobs/{name}")


def next_wall_time(
    zone: ZoneInfo, at: time, after: datetime, month_day: tuple[int, int] | None = None
) -> datetime:
    """The first instant strictly after ``after`` whose local time in ``zone`` is ``at``
    (on ``month_day`` when given), in UTC; an independent oracle built on zoneinfo."""
    local = after.astimezone(zone)
    if month_day is None:
        candidates = (local.date() + timedelta(days=d) for d in range(3))
    else:
        candidates = (
            local.date().replace(year=local.year + y, month=month_day[0], day=month_day[1])
            for y in range(2)
        )
    for day in candidates:
        moment = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
        if moment > after:
            return moment
    raise AssertionError("no candidate found")


def test_every_second_job_records_executions_with_output(api: Api, cleanup: list[str]) -> None:
    cleanup.append("ticker")
    api.create(shell_job("ticker", "echo tick", "@every 1s"))
    first, second = api.wait_done("ticker", 2, timeout=10)[:2]
    for execution in (first, second):
        assert execution["success"] is True
        assert execution["output"] == "tick\n"
        assert execution["attempt"] == 1
        assert execution["node_name"] == api.agent.node_name
    # Consecutive fires of one rhythm: whole seconds, one second apart.
    assert parse_time(second["scheduled_at"]) - parse_time(first["scheduled_at"]) == timedelta(
        seconds=1
    )
    job = api.job("ticker")
    assert job["status"] == "success"
    assert job["success_count"] >= 2
    assert job["error_count"] == 0
    assert parse_time(job["next"]) > parse_time(second["scheduled_at"])


def test_at_fires_exactly_once_then_next_is_zero(api: Api) -> None:
    at = datetime.fromtimestamp(math.ceil(datetime.now(UTC).timestamp()) + 2, UTC)
    spec = "@at " + at.strftime("%Y-%m-%dT%H:%M:%SZ")
    api.create(shell_job("once", "echo once", spec))
    assert parse_time(api.job("once")["next"]) == at

    (execution,) = api.wait_done("once", 1, timeout=10)
    assert execution["success"] is True
    assert execution["output"] == "once\n"
    assert parse_time(execution["scheduled_at"]) == at
    assert parse_time(execution["started_at"]) >= at
    wait_for(lambda: api.job("once")["next"] == ZERO, timeout=5)
    # With next at the zero time the scheduler holds no entry: nothing can fire again.
    assert "once" not in api.get("/debug/vars").json()["cron_entries"]
    assert len(api.executions("once")) == 1
    assert api.job("once")["success_count"] == 1


def test_tokyo_nine_am_is_midnight_utc(api: Api) -> None:
    before = datetime.now(UTC)
    api.create(shell_job("tokyo", "true", "0 0 9 * * *", timezone="Asia/Tokyo"))
    after = datetime.now(UTC)
    expected = {
        datetime.combine(moment.date() + timedelta(days=1), time(0), tzinfo=UTC)
        for moment in (before, after)
    }
    next_fire = parse_time(api.job("tokyo")["next"])
    assert next_fire in expected
    assert api.job("tokyo")["next"].endswith("T00:00:00Z")


def test_daily_in_new_york_is_local_midnight(api: Api) -> None:
    zone = ZoneInfo("America/New_York")
    before = datetime.now(UTC)
    api.create(shell_job("ny-daily", "true", "@daily", timezone="America/New_York"))
    after = datetime.now(UTC)
    expected = {next_wall_time(zone, time(0), m) for m in (before, after)}
    next_fire = parse_time(api.job("ny-daily")["next"])
    assert next_fire in expected
    assert next_fire.hour in (4, 5)  # EDT or EST midnight
    assert next_fire.astimezone(zone).time() == time(0)


def test_next_across_a_dst_boundary_uses_the_offset_of_the_fire_date(api: Api) -> None:
    # 12:30 on 1 July (EDT, UTC-4) and on 1 January (EST, UTC-5): whatever today is, one
    # of the two next fires lies beyond the zone's next DST transition.
    zone = ZoneInfo("America/New_York")
    now = datetime.now(UTC)
    summer = {"schedule": "0 30 12 1 7 *", "timezone": "America/New_York"}
    winter = {"schedule": "0 30 12 1 1 *", "timezone": "America/New_York"}
    api.create({**shell_job("ny-summer", "true"), **summer})
    api.create({**shell_job("ny-winter", "true"), **winter})
    summer_next = parse_time(api.job("ny-summer")["next"])
    winter_next = parse_time(api.job("ny-winter")["next"])
    assert summer_next == next_wall_time(zone, time(12, 30), now, (7, 1))
    assert winter_next == next_wall_time(zone, time(12, 30), now, (1, 1))
    assert (summer_next.hour, summer_next.minute) == (16, 30)
    assert (winter_next.hour, winter_next.minute) == (17, 30)


@pytest.mark.parametrize("zone_name", ["Asia/Tokyo", "America/New_York"])
def test_execution_times_carry_the_job_timezone_offset(api: Api, zone_name: str) -> None:
    name = "zoned-" + zone_name.split("/")[1].lower()
    api.create(shell_job(name, "echo zoned", timezone=zone_name))
    api.run(name)
    (execution,) = api.wait_done(name, 1)
    started = parse_time(execution["started_at"])
    offset = started.astimezone(ZoneInfo(zone_name)).strftime("%z")
    expected_suffix = f"{offset[:3]}:{offset[3:]}"
    assert execution["started_at"].endswith(expected_suffix)
    assert execution["finished_at"].endswith(expected_suffix)
    # The single-execution GET shows the same instants in UTC.
    single = api.get(f"/v1/jobs/{name}/executions/{execution['id']}").json()
    assert single["started_at"].endswith("Z")
    assert parse_time(single["started_at"]) == started
