"""Bad or unusual input at the API: refused at submit with a reason, never accepted and
broken later; long request lines served as Go serves them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from api_helpers import Api, running_api

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_api(tmp_path_factory.mktemp("input")) as value:
        yield value


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def strict_api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_api(tmp_path_factory.mktemp("strict"), strict_job_fields=True) as value:
        yield value


def job(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "schedule": "@manually", "executor": "shell",
            "executor_config": {"command": "true"}, **fields}  # fmt: skip


async def test_a_name_too_long_to_fetch_is_refused_at_submit(api: Api) -> None:
    reply = await api.post("/v1/jobs", json=job("n" * 100_000))
    assert reply.status == 400
    assert "name is 100000 characters long; at most 256 are allowed" in reply.text
    assert (await api.post("/v1/jobs", json=job("n" * 256))).status == 201
    assert (await api.get("/v1/jobs/" + "n" * 256)).status == 200
    assert (await api.call("DELETE", "/v1/jobs/" + "n" * 256)).status == 200


async def test_request_lines_up_to_a_megabyte_are_served(api: Api) -> None:
    await api.create(job("findme", metadata={"k0": "v0"}))
    long_q = await api.get("/v1/jobs", params={"q": "findme" + "x" * 200_000})
    assert long_q.status == 200 and long_q.json() == []
    filters = {f"metadata[k{i}]": f"v{i}" for i in range(3_000)}  # ~60 kB of query
    many = await api.get("/v1/jobs", params=filters)
    assert many.status == 200 and many.json() == []
    one = await api.get("/v1/jobs", params={"metadata[k0]": "v0"})
    assert [j["name"] for j in one.json()] == ["findme"]


async def test_a_malformed_multipart_restore_gets_a_reason_not_a_500(api: Api) -> None:
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="file"\x01; filename="a.json"\r\n\r\n'
        b"[]\r\n--XX--\r\n"
    )
    reply = await api.post(
        "/v1/restore", data=body, headers={"Content-Type": "multipart/form-data; boundary=XX"}
    )
    assert reply.status == 404
    assert "malformed multipart body" in reply.text


async def test_an_executor_no_member_offers_is_refused_with_the_offers(api: Api) -> None:
    reply = await api.post("/v1/jobs", json=job("nowhere", executor="shel"))
    assert reply.status == 400
    assert "executor 'shel' is not offered by any live member" in reply.text
    assert "api-node offers http, shell" in reply.text
    assert api.server.get_job("nowhere") is None
    members = (await api.get("/v1/members")).json()
    assert members[0]["Tags"]["executors"] == "http,shell"


async def test_a_misspelt_key_is_named(api: Api) -> None:
    body = job("typo")
    body["schedul"] = body.pop("schedule")
    reply = await api.post("/v1/jobs", json=body)
    assert reply.status == 400
    assert "empty spec string" in reply.text
    assert "unknown key 'schedul' (did you mean 'schedule'?), ignored" in reply.text


async def test_unknown_keys_get_a_warning_header(api: Api) -> None:
    reply = await api.post("/v1/jobs", json={**job("warned"), "colour": "blue"})
    assert reply.status == 201
    assert reply.headers["Warning"] == "299 dkron-py \"unknown key 'colour', ignored\""
    clean = await api.post("/v1/jobs", json=job("clean"))
    assert "Warning" not in clean.headers


async def test_strict_mode_refuses_unknown_keys(strict_api: Api) -> None:
    reply = await strict_api.post("/v1/jobs", json={**job("strict"), "colour": "blue"})
    assert reply.status == 400 and "unknown key 'colour'" in reply.text
    assert strict_api.server.get_job("strict") is None
    assert (await strict_api.post("/v1/jobs", json=job("strict"))).status == 201


async def test_dkron_job_ids_are_names(api: Api) -> None:
    reply = await api.post("/v1/jobs", json={**job("named"), "id": "something-else"})
    assert reply.status == 201 and reply.json()["id"] == "named"  # Dkron 4.1, #2002
    assert (await api.get("/v1/jobs/named")).json()["id"] == "named"
