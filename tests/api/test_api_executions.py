"""Runs and executions over HTTP: non-blocking runs, listing, truncation, partial output,
the SSE stream, a scheduled job, deleting history."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_helpers import NODE, Api, shell_job
from support import wait_for

from core.api import api_port, serve_api

pytestmark = pytest.mark.asyncio(loop_scope="module")

ZERO = "0001-01-01T00:00:00Z"


def is_running(execution: dict[str, Any]) -> bool:
    # Go's zero time; in a job's timezone the list shows it shifted (e.g. +05:53 LMT).
    return str(execution["finished_at"]).startswith("0001-01-01T")


async def finished(api: Api, job: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
    async def probe() -> list[Any] | None:
        done = [e for e in await api.executions(job) if not is_running(e)]
        return done if len(done) >= count else None

    result: list[Any] = await wait_for(probe, timeout)
    return result


async def running(api: Api, job: str, output: str = "") -> dict[str, Any]:
    """Wait for a running execution of ``job`` whose partial output is ``output``."""

    async def probe() -> dict[str, Any] | None:
        for execution in await api.executions(job):
            if is_running(execution) and execution.get("output", "") == output:
                return execution
        return None

    result: dict[str, Any] = await wait_for(probe)
    return result


def blocking_job(name: str, release: Path) -> dict[str, Any]:
    # Prints a line, then blocks until the test creates `release`, then prints another.
    command = f"echo first; while [ ! -e {release} ]; do sleep 0.02; done; echo second"
    return shell_job(name, command)


async def test_runs_do_not_hold_the_request(api: Api) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    reply = await api.post("/v1/jobs?runoncreate", json=shell_job("roc-job", "sleep 2; echo slept"))
    assert reply.status == 201
    assert reply.headers["Location"] == "/v1/jobs?runoncreate/roc-job"
    await api.create(shell_job("manual-job", "sleep 2; echo manual"))
    reply = await api.post("/v1/jobs/manual-job/run")
    # Both answers came back while the 2-second runs were still going.
    assert loop.time() - began < 1.5
    assert reply.status == 200  # what Dkron's clients actually receive
    assert reply.headers["Location"] == "/v1/jobs/manual-job/run"
    assert reply.json()["name"] == "manual-job"

    reply = await api.post("/v1/jobs/manual-job")  # the other manual-run route
    assert reply.status == 200
    assert loop.time() - began < 1.5

    await running(api, "roc-job")
    [roc] = await finished(api, "roc-job")
    assert roc["output"] == "slept\n" and roc["success"] is True
    manual = await finished(api, "manual-job", count=2)
    assert {e["output"] for e in manual} == {"manual\n"}
    assert loop.time() - began >= 2.0


async def test_list_order_truncation_and_single_get(api: Api) -> None:
    await api.create(shell_job("trunc-job", "printf abcdefghij"))
    reply = await api.get("/v1/jobs/trunc-job/executions")
    assert (reply.status, reply.body, reply.headers["X-Total-Count"]) == (200, b"[]", "0")

    for count in (1, 2):
        assert (await api.post("/v1/jobs/trunc-job/run")).status == 200
        await finished(api, "trunc-job", count=count)

    newest_first = await api.executions("trunc-job")
    assert len(newest_first) == 2
    assert newest_first[0]["started_at"] > newest_first[1]["started_at"]
    assert [e["id"] for e in await api.executions("trunc-job", "?_order=ASC")] == [
        e["id"] for e in reversed(newest_first)
    ]
    for sort in ("id", "started_at", "finished_at", "attempt"):
        listed = await api.executions("trunc-job", f"?_sort={sort}")
        assert len(listed) == 2, sort
    first = newest_first[0]
    assert list(first)[:10] == [
        "id",
        "job_name",
        "started_at",
        "finished_at",
        "success",
        "output",
        "node_name",
        "group",
        "attempt",
        "output_truncated",
    ]
    assert first["id"].endswith(f"-{NODE}")
    assert (first["output"], first["output_truncated"]) == ("abcdefghij", False)

    limited = await api.executions("trunc-job", "?output_size_limit=5")
    assert [(e["output"], e["output_truncated"]) for e in limited] == [("fghij", True)] * 2
    roomy = await api.executions("trunc-job", "?output_size_limit=10")
    assert {e["output_truncated"] for e in roomy} == {False}

    reply = await api.get(f"/v1/jobs/trunc-job/executions/{first['id']}")
    assert reply.status == 200
    single = reply.json()
    assert single["output"] == "abcdefghij"
    assert "output_truncated" not in single
    assert single["started_at"].endswith("Z")

    slash = await api.get("/v1/jobs/trunc-job/executions/")
    assert (slash.status, slash.headers["X-Total-Count"]) == (200, "2")


async def test_execution_errors(api: Api) -> None:
    await api.create(shell_job("err-job", "true"))
    assert (await api.get("/v1/jobs/nope/executions")).status == 404
    assert (await api.get("/v1/jobs/err-job/executions/123-nobody")).status == 404
    assert (await api.get("/v1/jobs/nope/executions/123-nobody")).status == 404
    reply = await api.get("/v1/jobs/err-job/executions?_sort=output")
    assert reply.status == 400
    assert "cannot sort executions by 'output'" in reply.text
    reply = await api.get("/v1/jobs/err-job/executions?output_size_limit=lots")
    assert reply.status == 400
    assert "output_size_limit" in reply.text
    reply = await api.get("/v1/jobs/nope/executions/1-x/stream")
    assert reply.status == 404
    assert (await api.call("DELETE", "/v1/jobs/nope/executions")).status == 404


async def test_list_times_are_in_the_job_timezone(api: Api) -> None:
    await api.create(shell_job("tz-job", "true", timezone="Asia/Kolkata"))
    assert (await api.post("/v1/jobs/tz-job/run")).status == 200
    [execution] = await finished(api, "tz-job")
    assert execution["started_at"].endswith("+05:30")
    assert execution["finished_at"].endswith("+05:30")
    single = (await api.get(f"/v1/jobs/tz-job/executions/{execution['id']}")).json()
    assert single["started_at"].endswith("Z")


async def test_partial_output_while_running(api: Api, tmp_path: Path) -> None:
    release = tmp_path / "release"
    await api.create(blocking_job("partial-job", release))
    assert (await api.post("/v1/jobs/partial-job/run")).status == 200
    listed = await running(api, "partial-job", "first\n")

    reply = await api.get(f"/v1/jobs/partial-job/executions/{listed['id']}")
    single = reply.json()
    assert (single["output"], single["finished_at"]) == ("first\n", ZERO)
    busy = await api.get("/v1/busy")
    assert busy.headers["X-Total-Count"] == "1"
    [active] = busy.json()
    assert (active["id"], active["output"]) == (listed["id"], "first\n")

    release.touch()
    [done] = await finished(api, "partial-job")
    assert (done["output"], done["success"]) == ("first\nsecond\n", True)
    assert (await api.get("/v1/busy")).body == b"[]"


async def next_event(response: aiohttp.ClientResponse) -> tuple[str, Any]:
    """Read one Server-Sent Event: (event name, decoded JSON data)."""
    event, data = "message", []
    while True:
        line = await asyncio.wait_for(response.content.readline(), 10)
        assert line, "the event stream ended early"
        line = line.rstrip(b"\n")
        if not line:
            if data:
                return event, json.loads("\n".join(data))
            continue
        name, _, value = line.decode("utf-8").partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


async def test_stream_delivers_chunks_live_then_done(api: Api, tmp_path: Path) -> None:
    release = tmp_path / "release"
    await api.create(blocking_job("sse-job", release))
    assert (await api.post("/v1/jobs/sse-job/run")).status == 200
    execution = await running(api, "sse-job", "first\n")
    url = f"{api.base}/v1/jobs/sse-job/executions/{execution['id']}/stream"
    async with api.session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["X-Whom"] == NODE
        # Received while the job is still blocked: the stream is live.
        assert await next_event(response) == ("message", {"output": "first\n"})
        release.touch()
        assert await next_event(response) == ("message", {"output": "second\n"})
        name, final = await next_event(response)
        assert name == "done"
        assert final["id"] == execution["id"]
        assert (final["output"], final["success"]) == ("first\nsecond\n", True)
        assert final["finished_at"] != ZERO
        assert await response.content.read() == b""  # the stream closes after `done`


async def test_stream_of_a_finished_execution(api: Api) -> None:
    await api.create(shell_job("sse-done-job", "printf 'line one\\nline two\\n'"))
    assert (await api.post("/v1/jobs/sse-done-job/run")).status == 200
    [execution] = await finished(api, "sse-done-job")
    url = f"{api.base}/v1/jobs/sse-done-job/executions/{execution['id']}/stream"
    async with api.session.get(url) as response:
        assert await next_event(response) == ("message", {"output": "line one\nline two\n"})
        name, final = await next_event(response)
        assert (name, final["output"], final["success"]) == ("done", "line one\nline two\n", True)


async def test_every_second_job_records_executions(api: Api) -> None:
    await api.create(shell_job("tick-job", "echo tick", schedule="@every 1s"))
    try:
        ticks = await finished(api, "tick-job", count=2, timeout=8)
        assert all(e["output"] == "tick\n" and e["success"] for e in ticks)
        assert len({e["group"] for e in ticks}) == len(ticks)  # separate fires
        job = (await api.get("/v1/jobs/tick-job")).json()
        assert job["success_count"] >= 2
        assert job["status"] == "success"
        assert job["last_success"] is not None
        assert job["next"] != ZERO
    finally:
        assert (await api.call("DELETE", "/v1/jobs/tick-job")).status == 200


async def test_delete_executions_resets_counters(api: Api) -> None:
    await api.create(shell_job("reset-job", "true"))
    assert (await api.post("/v1/jobs/reset-job/run")).status == 200
    await finished(api, "reset-job")
    job = await wait_for(
        lambda: _job_with(api, "reset-job", lambda j: j["success_count"] == 1 and j["status"])
    )
    assert job["last_success"] is not None
    reply = await api.call("DELETE", "/v1/jobs/reset-job/executions")
    assert reply.status == 200
    body = reply.json()
    assert (body["success_count"], body["error_count"]) == (0, 0)
    assert (body["last_success"], body["last_error"]) == (None, None)
    assert body["status"] == "success"  # left alone, as in Dkron
    assert await api.executions("reset-job") == []


async def _job_with(api: Api, name: str, check: Any) -> dict[str, Any] | None:
    job: dict[str, Any] = (await api.get(f"/v1/jobs/{name}")).json()
    return job if check(job) else None


async def test_shutdown_ends_open_streams(api: Api, tmp_path: Path) -> None:
    release = tmp_path / "release"
    await api.create(blocking_job("sse-stop-job", release))
    assert (await api.post("/v1/jobs/sse-stop-job/run")).status == 200
    execution = await running(api, "sse-stop-job", "first\n")
    runner = await serve_api(api.server, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{api_port(runner)}/v1/jobs/sse-stop-job/executions/"
    try:
        async with api.session.get(url + f"{execution['id']}/stream") as response:
            assert await next_event(response) == ("message", {"output": "first\n"})
            loop = asyncio.get_running_loop()
            began = loop.time()
            await runner.cleanup()  # must not wait for the still-blocked run
            assert loop.time() - began < 2.0
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(response.content.read(), 5)
    finally:
        release.touch()
    [done] = await finished(api, "sse-stop-job")
    assert done["output"] == "first\nsecond\n"
