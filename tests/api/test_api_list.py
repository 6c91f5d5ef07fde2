"""GET /v1/jobs: filters, sorting, slicing, X-Total-Count, and 400s for bad parameters."""

from __future__ import annotations

import pytest
import pytest_asyncio
from api_helpers import Api, shell_job

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def jobs(api: Api) -> Api:
    # This module's server holds exactly these four jobs.
    await api.create(
        shell_job("alpha", "true", displayname="zulu", metadata={"team": "a", "tier": "1"})
    )
    await api.create(shell_job("bravo", "true", displayname="yankee", metadata={"team": "a"}))
    await api.create(shell_job("charlie", "true", disabled=True, metadata={"team": "b"}))
    await api.create(shell_job("delta", "true", displayname="alpha-like"))
    return api


async def names(api: Api, query: str) -> tuple[list[str], str]:
    reply = await api.get("/v1/jobs" + query)
    assert reply.status == 200, reply.text
    return [job["name"] for job in reply.json()], reply.headers["X-Total-Count"]


@pytest.mark.parametrize(
    ("query", "expected", "total"),
    [
        ("", ["alpha", "bravo", "charlie", "delta"], "4"),
        ("?_sort=id&_order=DESC", ["delta", "charlie", "bravo", "alpha"], "4"),
        ("?_order=desc", ["alpha", "bravo", "charlie", "delta"], "4"),  # only DESC descends
        ("?_sort=displayname", ["charlie", "delta", "bravo", "alpha"], "4"),
        ("?metadata[team]=a", ["alpha", "bravo"], "2"),
        ("?metadata[team]=a&metadata[tier]=1", ["alpha"], "1"),
        ("?metadata[team]=c", [], "0"),
        ("?q=alpha", ["alpha", "delta"], "2"),  # name or displayname, case-sensitive
        ("?q=ALPHA", [], "0"),
        ("?disabled=true", ["charlie"], "1"),
        ("?disabled=false", ["alpha", "bravo", "delta"], "3"),
        ("?status=untriggered", ["alpha", "bravo", "charlie", "delta"], "4"),
        ("?status=success", [], "0"),
        ("?_start=1&_end=3", ["bravo", "charlie"], "4"),
        ("?_start=2", ["charlie", "delta"], "4"),
        ("?_end=10", ["alpha", "bravo", "charlie", "delta"], "4"),
        ("?_start=0&_end=0", [], "4"),
        ("?_start=4", [], "4"),
        ("?q=a&_sort=name&_order=DESC&_start=1&_end=2", ["charlie"], "4"),
        ("?metadata[team]=a&_start=1", ["bravo"], "2"),
    ],
)
async def test_filters_sort_and_slices(
    jobs: Api, query: str, expected: list[str], total: str
) -> None:
    assert await names(jobs, query) == (expected, total)


async def test_empty_result_is_an_empty_array(jobs: Api) -> None:
    reply = await jobs.get("/v1/jobs?q=nothing-matches")
    assert reply.body == b"[]"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?_sort=owner", "cannot sort by 'owner'"),
        ("?_start=3&_end=1", "_start (3) is greater than _end (1)"),
        ("?_start=-1", "_start must not be negative, got -1"),
        ("?_end=-2", "_end must not be negative, got -2"),
        ("?_start=abc", "_start must be a whole number, got 'abc'"),
        ("?_end=1.5", "_end must be a whole number, got '1.5'"),
        ("?_start=9", "_start (9) is past _end (4)"),
        ("?disabled=yes", 'disabled must be "true" or "false"'),
    ],
)
async def test_bad_parameters_are_400_not_500(jobs: Api, query: str, message: str) -> None:
    reply = await jobs.get("/v1/jobs" + query)
    assert reply.status == 400
    assert message in reply.text
