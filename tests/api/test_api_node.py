"""Node-level routes: health, info, members, leadership, pause, leave, CORS, routing, docs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest
from api_helpers import NODE, Api, server_config, shell_job

from core.api import api_port, build_app, serve_api
from core.api.app import ROUTES
from core.node import DkronServer

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_health_has_no_whom_and_no_cors(api: Api) -> None:
    reply = await api.get("/health", headers={"Origin": "http://ui.example"})
    assert reply.status == 200
    assert reply.body == b'{"status":"healthy","leader":true}'
    assert "X-Whom" not in reply.headers
    assert "Access-Control-Allow-Origin" not in reply.headers


@pytest.mark.parametrize("path", ["/v1", "/v1/"])
async def test_index(api: Api, path: str) -> None:
    reply = await api.get(path)
    assert reply.status == 200
    assert reply.headers["X-Whom"] == NODE
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    body = reply.json()
    assert list(body) == ["agent", "serf", "tags"]
    assert body["agent"]["name"] == NODE
    assert body["agent"]["version"]
    assert body["serf"]["members"] == "1"
    assert all(isinstance(v, str) for v in body["serf"].values())
    assert body["tags"]["role"] == "dkron"
    assert body["tags"]["server"] == "true"
    assert body["tags"]["rpc_addr"] == api.server.rpc_address


async def test_pretty_indents_with_four_spaces(api: Api) -> None:
    compact = await api.get("/v1/pause")
    pretty = await api.get("/v1/pause?pretty")
    assert compact.body == b'{"paused":false}'
    assert pretty.body == b'{\n    "paused": false\n}'


async def test_members(api: Api) -> None:
    reply = await api.get("/v1/members")
    assert reply.status == 200
    assert reply.headers["X-Total-Count"] == "1"
    [member] = reply.json()
    assert member["Name"] == NODE
    assert member["Status"] == 1
    assert member["statusText"] == "alive"
    assert re.fullmatch(r"[0-9a-f-]{36}", member["id"])
    again = (await api.get("/v1/members")).json()[0]
    assert again["id"] != member["id"]  # Dkron makes a new UUID on every request


async def test_leader_and_isleader(api: Api) -> None:
    reply = await api.get("/v1/leader")
    assert reply.status == 200
    leader = reply.json()
    assert leader["Name"] == NODE
    assert "id" not in leader and "statusText" not in leader
    reply = await api.get("/v1/isleader")
    assert (reply.status, reply.json()) == (200, "I am a leader")


async def test_no_leader_gives_500_null_and_follower(tmp_path: Path) -> None:
    # A node whose Raft never started has no leader: Dkron's 500 with a `null` body.
    server = DkronServer(server_config(tmp_path))
    runner = await serve_api(server, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{api_port(runner)}"
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/v1/leader") as response:
                assert response.status == 500
                assert await response.read() == b"null"
            async with session.get(base + "/v1/isleader") as response:
                assert response.status == 404
                assert await response.json() == "I am a follower"
    finally:
        await runner.cleanup()
        await server.store.close()


async def test_busy_empty(api: Api) -> None:
    reply = await api.get("/v1/busy")
    assert reply.status == 200
    assert reply.body == b"[]"
    assert reply.headers["X-Total-Count"] == "0"


async def test_pause_blocks_writes_until_unpaused(api: Api) -> None:
    job = shell_job("paused-job", "true")
    assert (await api.get("/v1/pause")).json() == {"paused": False}
    reply = await api.post("/v1/pause")
    assert (reply.status, reply.json()) == (200, {"paused": True})
    assert (await api.get("/v1/pause")).json() == {"paused": True}
    for method, path in (("POST", "/v1/jobs"), ("PATCH", "/v1/jobs"), ("PUT", "/v1/jobs/x")):
        reply = await api.call(method, path, json=job)
        assert (reply.status, reply.text) == (503, "New job submissions are currently paused")
    assert (await api.get("/v1/jobs/paused-job")).status == 404
    reply = await api.post("/v1/unpause")
    assert (reply.status, reply.json()) == (200, {"paused": False})
    reply = await api.post("/v1/jobs", json=job)
    assert reply.status == 201
    assert (await api.call("DELETE", "/v1/jobs/paused-job")).status == 200


async def test_cors_headers_and_preflight(api: Api) -> None:
    origin = {"Origin": "http://ui.example"}
    reply = await api.get("/v1/jobs", headers=origin)
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert reply.headers["Access-Control-Expose-Headers"] == "*"
    preflight = await api.call(
        "OPTIONS",
        "/v1/jobs/some-job",
        headers={**origin, "Access-Control-Request-Method": "DELETE"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Methods"] == "*"
    assert preflight.headers["Access-Control-Allow-Headers"] == "*"
    assert preflight.headers["X-Whom"] == NODE


async def test_whom_on_errors_too(api: Api) -> None:
    reply = await api.get("/v1/nothing-here")
    assert reply.status == 404
    assert reply.headers["X-Whom"] == NODE


async def test_trailing_slash_variants(api: Api) -> None:
    for path in ("/v1/jobs", "/v1/jobs/"):
        reply = await api.get(path)
        assert reply.status == 200, path
        assert reply.headers["X-Total-Count"].isdigit()
    # Other routes redirect the way gin's RedirectTrailingSlash does.
    reply = await api.get("/v1/members/?pretty")
    assert (reply.status, reply.headers["Location"]) == (301, "/v1/members?pretty")
    reply = await api.post("/v1/pause/")
    assert (reply.status, reply.headers["Location"]) == (307, "/v1/pause")
    assert (await api.get("/v1/pause")).json() == {"paused": False}


async def test_wrong_method_is_refused(api: Api) -> None:
    reply = await api.call("DELETE", "/v1/members")
    assert reply.status == 405
    assert "GET" in reply.headers["Allow"]


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (None, 303),
        ("*/*", 303),
        ("text/html,application/xhtml+xml", 303),
        ("application/json", 404),
    ],
)
async def test_root_redirects_to_ui(api: Api, accept: str | None, status: int) -> None:
    headers = {} if accept is None else {"Accept": accept}
    # aiohttp adds Accept: */* unless told otherwise; skip_auto_headers sends none.
    reply = await api.get("/", headers=headers, skip_auto_headers=["Accept"])
    assert reply.status == status
    if status == 303:
        assert reply.headers["Location"] == "/ui/"


async def test_debug_vars(api: Api) -> None:
    await api.create(shell_job("vars-job", "true", schedule="@every 1h"))
    try:
        body = (await api.get("/debug/vars")).json()
        assert body["node"] == NODE
        assert body["scheduler_started"] == 1
        assert body["cron_entries"]["vars-job"]["schedule"] == "@every 1h"
    finally:
        await api.call("DELETE", "/v1/jobs/vars-job")


async def test_metrics_not_enabled(api: Api) -> None:
    assert (await api.get("/metrics")).status == 404


async def test_openapi_describes_every_route(api: Api) -> None:
    reply = await api.get("/v1/openapi.json")
    assert reply.status == 200
    document = reply.json()
    assert document["openapi"].startswith("3.1")
    app = build_app(api.server)
    registered = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    assert len(registered) == len(ROUTES)
    described = {
        (method, path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert registered == described
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    refs = re.findall(r'"#/components/schemas/(\w+)"', reply.text)
    assert set(refs) <= set(document["components"]["schemas"])


async def test_leave_answers_then_stops(api: Api) -> None:
    # The callback does what `dkronctl agent` does: shut this node's API down. The
    # client must still get its complete answer, and the port must close afterwards.
    stopped = asyncio.Event()
    calls = 0

    async def on_leave() -> None:
        nonlocal calls
        calls += 1
        await runner.cleanup()
        stopped.set()

    runner = await serve_api(api.server, "127.0.0.1", 0, on_leave=on_leave)
    url = f"http://127.0.0.1:{api_port(runner)}/v1/leave"
    try:
        async with aiohttp.ClientSession() as session, session.post(url) as response:
            assert response.status == 200
            assert response.headers["X-Whom"] == NODE
            peers = await response.json()
        [part] = peers["global"]
        assert part["Name"] == NODE
        assert part["Region"] == "global"
        assert part["RPCAddr"]["Port"] == int(api.server.rpc_address.rsplit(":", 1)[1])
        await asyncio.wait_for(stopped.wait(), 5)
        assert calls == 1
        with pytest.raises(aiohttp.ClientConnectorError):
            async with aiohttp.ClientSession() as session:
                await session.get(url.replace("/v1/leave", "/health"))
    finally:
        if not stopped.is_set():
            await runner.cleanup()
