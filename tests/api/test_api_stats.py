"""GET /v1/stats, Dkron 4.1's: executions finished per UTC day, for its UI's dashboard."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from api_helpers import running_api, shell_job
from support import wait_for


async def test_stats_count_each_day_and_survive_a_restart(tmp_path: Path) -> None:
    today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
    async with running_api(tmp_path / "data") as api:
        reply = await api.get("/v1/stats")
        assert reply.status == 200
        empty = reply.json()["stats"]
        # 30 days by default, oldest first, each a whole UTC day, zeros where nothing ran.
        assert len(empty) == 30 and empty[-1]["date"] == today
        assert all(day == {**day, "success_count": 0, "failed_count": 0} for day in empty)
        first = datetime.strptime(empty[0]["date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert first == datetime.now(UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        ) - timedelta(days=29)

        await api.create(shell_job("ok", "true"))
        await api.create(shell_job("bad", "false"))
        for name in ("ok", "ok", "bad"):
            assert (await api.post(f"/v1/jobs/{name}/run")).status == 200

        async def counted() -> dict[str, object] | None:
            last = (await api.get("/v1/stats?days=1")).json()["stats"]
            return last[0] if last[0]["success_count"] + last[0]["failed_count"] == 3 else None

        assert await wait_for(counted) == {"date": today, "success_count": 2, "failed_count": 1}
        # Dkron's bounds: at most 365 days; a bad or non-positive value means 30.
        assert len((await api.get("/v1/stats?days=1000")).json()["stats"]) == 365
        for bad in ("0", "-3", "soon"):
            assert len((await api.get(f"/v1/stats?days={bad}")).json()["stats"]) == 30
    # The counts are replicated state: a restart (journal replay) keeps them.
    async with running_api(tmp_path / "data") as api:
        again = (await api.get("/v1/stats?days=1")).json()["stats"]
        assert again == [{"date": today, "success_count": 2, "failed_count": 1}]


async def test_next_fire_times_in_the_jobs_zone(tmp_path: Path) -> None:
    async with running_api(tmp_path / "data") as api:
        hourly = {**shell_job("hourly", "true"), "schedule": "0 30 * * * *"}
        await api.create({**hourly, "timezone": "Asia/Kolkata"})
        reply = await api.get("/v1/jobs/hourly/next?n=3")
        assert reply.status == 200
        shown = reply.json()["next"]
        moments = [datetime.fromisoformat(t) for t in shown]
        # In the job's zone (+05:30): its minute 30 is UTC's minute 0; an hour apart, ahead.
        assert len(moments) == 3 and all(t.endswith("+05:30") for t in shown)
        assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(moments))
        assert all(m.minute == 30 and m.astimezone(UTC).minute == 0 for m in moments)
        assert all(m > datetime.now(UTC) for m in moments)
        assert len((await api.get("/v1/jobs/hourly/next")).json()["next"]) == 5

        await api.create(shell_job("manual", "true"))  # @manually: never fires by itself
        assert (await api.get("/v1/jobs/manual/next")).json() == {"next": []}
        assert (await api.post("/v1/jobs/hourly/toggle")).status == 200  # disabled
        assert (await api.get("/v1/jobs/hourly/next")).json() == {"next": []}
        for bad in ("0", "101", "x"):
            assert (await api.get(f"/v1/jobs/hourly/next?n={bad}")).status == 400
        assert (await api.get("/v1/jobs/nope/next")).status == 404
