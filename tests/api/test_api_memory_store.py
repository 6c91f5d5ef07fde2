"""The API over a node on the in-memory store: the same answers without Raft."""

from __future__ import annotations

from pathlib import Path

from api_helpers import running_api, shell_job
from support import wait_for


async def test_jobs_runs_and_node_routes_without_raft(tmp_path: Path) -> None:
    async with running_api(tmp_path / "data", memory=True) as api:
        assert not (tmp_path / "data" / "raft").exists()
        await api.create(shell_job("hello", "echo hi"))
        listed = await api.get("/v1/jobs")
        assert listed.status == 200 and listed.headers["X-Total-Count"] == "1"
        assert [j["name"] for j in listed.json()] == ["hello"]

        ran = await api.post("/v1/jobs/hello/run")
        assert ran.status == 200, ran.text
        runs = await wait_for(lambda: api.executions("hello"), timeout=10)
        await wait_for(
            lambda: all(e.finished_at for e in api.server.executions("hello")), timeout=10
        )
        assert runs[0]["job_name"] == "hello"
        [done] = await api.executions("hello")
        assert done["success"] and done["output"] == "hi\n"

        toggled = await api.post("/v1/jobs/hello/toggle")
        assert toggled.status == 200 and toggled.json()["disabled"] is True
        assert (await api.get("/v1/isleader")).json() == "I am a leader"
        health = await api.get("/health")
        assert health.json() == {"status": "healthy", "leader": True}
        assert (await api.call("DELETE", "/v1/jobs/hello")).status == 200
        assert (await api.get("/v1/jobs/hello")).status == 404
