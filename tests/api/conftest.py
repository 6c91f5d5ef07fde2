"""A real DkronServer (pysyncobj on disk, real plugin processes) behind the real API.

Each test module shares one server (``api`` fixture, module-scoped event loop); a module
that needs a pristine store is its own module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from api_helpers import Api, server_config, wait_leader

from core.api import build_app
from core.server import DkronServer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    data_dir = tmp_path_factory.mktemp("dkron")
    server = DkronServer(server_config(data_dir))
    await server.start()
    runner: web.AppRunner | None = None
    try:
        await wait_leader(server)
        runner = web.AppRunner(build_app(server), shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            yield Api(server, f"http://127.0.0.1:{port}", session)
    finally:
        if runner is not None:
            await runner.cleanup()
        await server.stop(drain_timeout=5)
