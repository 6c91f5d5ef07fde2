"""A real DkronServer (pysyncobj on disk, real plugin processes) behind the real API.

Each test module shares one server (``api`` fixture, module-scoped event loop); a module
that needs a pristine store is its own module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from api_helpers import Api, running_api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_api(tmp_path_factory.mktemp("dkron")) as value:
        yield value
