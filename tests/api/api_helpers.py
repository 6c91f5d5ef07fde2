"""Helpers shared by the API tests: a real-HTTP client wrapper and polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from support import free_port

from core.api import serve_api
from core.api.app import api_port
from core.node import DkronServer, ServerConfig, memory_store
from core.plugins.runtime import RuntimeSettings

NODE = "api-node"


def server_config(data_dir: Path, **overrides: Any) -> ServerConfig:
    return ServerConfig(
        node_name=NODE,
        data_dir=data_dir,
        rpc_port=0,
        raft_port=free_port(),
        plugins=RuntimeSettings(plugin_dir=data_dir / "plugins", load_entry_points=False),
        **overrides,
    )


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """Talks real HTTP to the API of ``server``."""

    def __init__(self, server: DkronServer, base: str, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.base = base
        self.session = session

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        kwargs.setdefault("allow_redirects", False)
        async with self.session.request(method, self.base + path, **kwargs) as response:
            return Reply(response.status, response.headers, await response.read())

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("POST", path, **kwargs)

    async def create(self, job: Mapping[str, Any], query: str = "") -> Reply:
        reply = await self.post("/v1/jobs" + query, json=job)
        assert reply.status == 201, reply.text
        return reply

    async def executions(self, job: str, query: str = "") -> list[dict[str, Any]]:
        reply = await self.get(f"/v1/jobs/{job}/executions{query}")
        assert reply.status == 200, reply.text
        found: list[dict[str, Any]] = reply.json()
        return found


def shell_job(name: str, command: str, **fields: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": name,
        "schedule": "@manually",
        "executor": "shell",
        "executor_config": {"command": command, "shell": "true"},
    }
    job.update(fields)
    return job


async def wait_leader(server: DkronServer, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not server.is_leader:
        if loop.time() > deadline:
            raise AssertionError("the single node never became raft leader")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_api(
    data_dir: Path, *, memory: bool = False, **overrides: Any
) -> AsyncIterator[Api]:
    """A real server on ``data_dir`` behind the real API (``serve_api``, as the agent
    serves it), stopped at the end; ``memory``: over the in-memory store, no Raft."""
    config = server_config(data_dir, **overrides)
    server = DkronServer(config, store=memory_store(config) if memory else None)
    await server.start()
    runner = None
    try:
        await wait_leader(server)
        runner = await serve_api(server, "127.0.0.1", 0)
        async with aiohttp.ClientSession() as session:
            yield Api(server, f"http://127.0.0.1:{api_port(runner)}", session)
    finally:
        if runner is not None:
            await runner.cleanup()
        await server.stop(drain_timeout=5)
