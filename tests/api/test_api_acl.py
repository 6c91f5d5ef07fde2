"""The REST API with ACLs on: who gets in (401), what each token may do (403), and
that nothing of a secret but its hash is kept. ACLs off is every other API test."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from api_helpers import Api, running_api

pytestmark = pytest.mark.asyncio(loop_scope="module")

JOB = {
    "name": "acl-job",
    "schedule": "@manually",
    "executor": "shell",
    "executor_config": {"command": "echo acl"},
}
READONLY = {
    "path": {
        "/v1/jobs": {"capabilities": ["list", "read"]},
        "/v1/jobs/*": {"capabilities": ["read"]},
        "/v1/jobs/*/executions*": {"capabilities": ["read"]},
    }
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    key = base64.b64encode(os.urandom(16)).decode()
    async with running_api(tmp_path_factory.mktemp("acl"), acl_enabled=True, encrypt=key) as value:
        yield value


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class Tokens:
    management = ""
    default = ""
    readonly = ""
    readonly_accessor = ""


async def test_nothing_but_health_before_bootstrap(api: Api) -> None:
    assert (await api.get("/health")).status == 200
    reply = await api.get("/v1/jobs")
    assert reply.status == 401 and "not bootstrapped" in reply.text
    reply = await api.get("/debug/vars")
    assert reply.status == 401


async def test_bootstrap_once(api: Api) -> None:
    reply = await api.post("/v1/acl/bootstrap")
    assert reply.status == 201, reply.text
    token = reply.json()
    assert token["type"] == "management" and token["name"] == "bootstrap"
    assert token["policies"] == ["default"]
    Tokens.management = token["secret"]
    again = await api.post("/v1/acl/bootstrap")
    assert again.status == 409 and "already done" in again.text


async def test_a_request_without_a_valid_token_is_refused(api: Api) -> None:
    missing = await api.get("/v1/jobs")
    assert missing.status == 401 and "token missing" in missing.text
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await api.get("/v1/jobs", headers=bearer("not-a-secret"))
    assert wrong.status == 401 and "not found" in wrong.text
    # Dkron Pro's OpenAPI names this header too.
    other = await api.get("/v1/jobs", headers={"X-Dkron-Token": Tokens.management})
    assert other.status == 200
    # Refused before the route runs: a write without a token changes nothing.
    write = await api.post("/v1/jobs", json={**JOB, "name": "sneaky"})
    assert write.status == 401
    assert api.server.get_job("sneaky") is None


async def test_management_token_may_do_anything(api: Api) -> None:
    headers = bearer(Tokens.management)
    assert (await api.post("/v1/jobs", json=JOB, headers=headers)).status == 201
    for path in ("/v1/", "/debug/vars", "/v1/members", "/v1/acl/policies", "/v1/acl/tokens"):
        reply = await api.get(path, headers=headers)
        assert reply.status == 200, (path, reply.text)
    policy = await api.post("/v1/acl/policies/readonly", json=READONLY, headers=headers)
    assert policy.status == 200 and policy.json()["rules"] == READONLY
    for policies, slot in ((["default"], "default"), (["readonly"], "readonly")):
        reply = await api.post(
            "/v1/acl/tokens",
            json={"name": f"{slot}-user", "type": "client", "policies": policies},
            headers=headers,
        )
        assert reply.status == 201, reply.text
        setattr(Tokens, slot, reply.json()["secret"])
        if slot == "readonly":
            Tokens.readonly_accessor = reply.json()["accessor_id"]
    listed = (await api.get("/v1/acl/tokens", headers=headers)).json()
    assert {t["name"] for t in listed} == {"bootstrap", "default-user", "readonly-user"}
    assert all("secret" not in t for t in listed)


async def test_the_default_policy_runs_jobs_but_does_not_administer(api: Api) -> None:
    headers = bearer(Tokens.default)
    assert (
        await api.post("/v1/jobs", json={**JOB, "name": "by-default"}, headers=headers)
    ).status == 201
    assert (await api.get("/v1/jobs/by-default", headers=headers)).status == 200
    assert (await api.post("/v1/jobs/by-default/run", headers=headers)).status == 200
    assert (await api.get("/v1/jobs/by-default/executions", headers=headers)).status == 200
    assert (await api.get("/v1/busy", headers=headers)).status == 200
    assert (await api.post("/v1/jobs/by-default/toggle", headers=headers)).status == 200
    for path in ("/v1/", "/debug/vars", "/v1/acl/policies", "/v1/acl/tokens"):
        reply = await api.get(path, headers=headers)
        assert reply.status == 403, (path, reply.status)
    own = await api.get("/v1/acl/token/self", headers=headers)
    assert own.status == 200 and own.json()["name"] == "default-user"


async def test_a_readonly_token_reads_and_may_not_write(api: Api) -> None:
    headers = bearer(Tokens.readonly)
    assert (await api.get("/v1/jobs", headers=headers)).status == 200
    assert (await api.get("/v1/jobs/acl-job", headers=headers)).status == 200
    assert (await api.get("/v1/jobs/acl-job/executions", headers=headers)).status == 200
    refused: list[tuple[str, str, Any]] = [
        ("POST", "/v1/jobs", {**JOB, "name": "by-readonly"}),
        ("POST", "/v1/jobs/acl-job/run", None),
        ("DELETE", "/v1/jobs/acl-job", None),
        ("POST", "/v1/jobs/acl-job/toggle", None),
        ("GET", "/v1/members", None),
    ]
    for method, path, body in refused:
        reply = await api.call(method, path, json=body, headers=headers)
        assert reply.status == 403, (method, path, reply.status)
        assert "readonly-user" in reply.text and path in reply.text
    assert api.server.get_job("by-readonly") is None
    assert not api.server.get_job("acl-job").disabled  # type: ignore[union-attr]


async def test_a_revoked_token_is_refused_at_once(api: Api) -> None:
    headers = bearer(Tokens.readonly)
    assert (await api.get("/v1/jobs", headers=headers)).status == 200
    revoke = await api.call(
        "DELETE", f"/v1/acl/tokens/{Tokens.readonly_accessor}", headers=bearer(Tokens.management)
    )
    assert revoke.status == 204
    reply = await api.get("/v1/jobs", headers=headers)
    assert reply.status == 401


async def test_bad_policies_and_tokens_get_a_reason(api: Api) -> None:
    headers = bearer(Tokens.management)
    wrapped = await api.post("/v1/acl/policies/bad", json={"rules": READONLY}, headers=headers)
    assert wrapped.status == 400 and "'path' at its top level" in wrapped.text
    unknown = await api.post(
        "/v1/acl/policies/bad",
        json={"path": {"/v1/jobs": {"capabilities": ["execute"]}}},
        headers=headers,
    )
    assert unknown.status == 400 and "unknown capability 'execute'" in unknown.text
    missing = await api.post(
        "/v1/acl/tokens", json={"name": "x", "policies": ["nope"]}, headers=headers
    )
    assert missing.status == 400 and "no such policy: nope" in missing.text


async def test_only_hashes_of_secrets_are_stored(api: Api) -> None:
    server = api.server
    server.store.compact_now()
    data_dir = server.config.data_dir
    assert data_dir is not None

    def files_hold(secret: str) -> list[str]:
        found = []
        for path in data_dir.rglob("*"):
            if path.is_file() and secret.encode() in path.read_bytes():
                found.append(str(path))
        return found

    async def snapshot_written() -> bool:
        return (data_dir / "raft" / "snapshot.bin").exists()

    from support import wait_for

    await wait_for(snapshot_written, timeout=20)
    for secret in (Tokens.management, Tokens.default, Tokens.readonly):
        assert files_hold(secret) == []
    assert api.server.acl.resolve(Tokens.management) is not None
