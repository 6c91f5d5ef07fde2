"""Job writes and reads: create/update, validation (Dkron's api_test.go), delete, toggle,
restore."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from api_helpers import Api, shell_job

pytestmark = pytest.mark.asyncio(loop_scope="module")

UNICODE_NAME = "abcdefghijklmnopqrstuvwxyz0123456789-_ßñëäïüøüáéíóýćàèìòùâêîôûæšłç"


async def test_create_then_update_replaces(api: Api) -> None:
    job = shell_job("cu-job", "echo one", disabled=False)
    reply = await api.post("/v1/jobs", json=job)
    assert reply.status == 201
    assert reply.headers["Location"] == "/v1/jobs/cu-job"
    echo = reply.json()
    # The echo is the request as parsed: id is the name (Dkron 4.1, #2002), zero next,
    # null processors.
    assert echo["id"] == "cu-job"
    assert echo["next"] == "0001-01-01T00:00:00Z"
    assert echo["processors"] is None
    assert echo["concurrency"] == "allow"
    assert list(echo)[:3] == ["id", "name", "displayname"]

    stored = (await api.get("/v1/jobs/cu-job")).json()
    assert stored["id"] == "cu-job"
    assert stored["processors"] == {}
    assert stored["executor_config"] == {"command": "echo one", "shell": "true"}

    job = shell_job("cu-job", "echo two", disabled=True)
    assert (await api.post("/v1/jobs", json=job)).status == 201
    stored = (await api.get("/v1/jobs/cu-job")).json()
    assert stored["executor_config"]["command"] == "echo two"
    assert stored["disabled"] is True
    assert (await api.call("DELETE", "/v1/jobs/cu-job")).status == 200


async def test_patch_and_put_are_full_replaces(api: Api) -> None:
    await api.create(shell_job("pp-job", "echo a", metadata={"k": "v"}, retries=2))
    reply = await api.call("PATCH", "/v1/jobs", json=shell_job("pp-job", "echo b"))
    assert reply.status == 201
    stored = (await api.get("/v1/jobs/pp-job")).json()
    assert stored["metadata"] is None and stored["retries"] == 0  # not a merge
    # PUT ignores the name in the path and uses the body's; Location echoes the URI.
    reply = await api.call("PUT", "/v1/jobs/other", json=shell_job("pp-job", "echo c"))
    assert reply.status == 201
    assert reply.headers["Location"] == "/v1/jobs/other/pp-job"
    assert (await api.get("/v1/jobs/other")).status == 404
    assert (await api.get("/v1/jobs/pp-job")).json()["executor_config"]["command"] == "echo c"
    await api.call("DELETE", "/v1/jobs/pp-job")


async def test_location_keeps_the_query_string(api: Api) -> None:
    reply = await api.post("/v1/jobs?pretty", json=shell_job("loc-job", "true"))
    assert reply.status == 201
    assert reply.headers["Location"] == "/v1/jobs?pretty/loc-job"
    assert reply.text.startswith('{\n    "id": "loc-job"')
    await api.call("DELETE", "/v1/jobs/loc-job")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Unable to parse payload: EOF."),
        (b"{", "Unable to parse payload: unexpected EOF."),
        (
            b'{"name": 1}',
            "Unable to parse payload: json: cannot unmarshal number into Go struct field "
            "Job.name of type string.",
        ),
        (
            b'{"name": "x", "retries": -1}',
            "Unable to parse payload: json: cannot unmarshal number -1 into Go struct field "
            "Job.retries of type uint.",
        ),
        (
            b'{"name": "x", "executor_config": {"timeout": 5}}',
            "Unable to parse payload: json: cannot unmarshal number into Go struct field "
            "Job.executor_config of type string.",
        ),
    ],
)
async def test_unparsable_payload(api: Api, body: bytes, message: str) -> None:
    reply = await api.post("/v1/jobs", data=body)
    assert (reply.status, reply.text) == (400, message)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "BAD JOB NAME!"}, "name contains illegal character 'B'"),
        ({"name": ""}, "name cannot be empty"),
        ({"parent_job": "same"}, "the job can not have itself as parent"),
        ({"schedule": "@at badtime"}, "can't parse job schedule: failed to parse date @at badtime"),
        ({"schedule": ""}, "can't parse job schedule: empty spec string"),
        ({"concurrency": "badvalue"}, 'invalid concurrency policy value, use "allow" or "forbid"'),
        ({"timezone": "notatimezone"}, "unknown time zone notatimezone"),
        (
            {"executor_config": {"command": "true", "timeout": "foreverandever"}},
            "Error parsing job timeout value",
        ),
        (
            {"executor_config": {"command": "true", "mem_limit": "0"}},
            "Error parsing job memory limit value: memory limit must be greater than 0",
        ),
    ],
)
async def test_validation_failures(api: Api, fields: dict[str, Any], message: str) -> None:
    job = {**shell_job("same", "true"), **fields}
    reply = await api.post("/v1/jobs", json=job)
    assert reply.status == 400
    assert reply.text.startswith(f"Job validation failed: {message}")
    assert reply.text.endswith(".")
    if job["name"]:
        assert (await api.get(f"/v1/jobs/{job['name']}")).status == 404


async def test_valid_unicode_name(api: Api) -> None:
    reply = await api.post("/v1/jobs", json=shell_job(UNICODE_NAME, "true"))
    assert reply.status == 201
    assert (await api.get(f"/v1/jobs/{UNICODE_NAME}")).json()["name"] == UNICODE_NAME
    assert (await api.call("DELETE", f"/v1/jobs/{UNICODE_NAME}")).status == 200


async def test_missing_parent_is_404_and_not_created(api: Api) -> None:
    job = shell_job("orphan", "true", parent_job="does-not-exist")
    reply = await api.post("/v1/jobs", json=job)
    assert (reply.status, reply.text) == (404, "specified parent job not found")
    assert (await api.get("/v1/jobs/orphan")).status == 404


async def test_parent_keeps_dependents_and_cannot_be_deleted_first(api: Api) -> None:
    await api.create(shell_job("parent", "true"))
    await api.create(shell_job("child", "true", schedule="", parent_job="parent"))
    assert (await api.get("/v1/jobs/parent")).json()["dependent_jobs"] == ["child"]
    await api.create(shell_job("parent", "echo updated"))  # re-POST without dependent_jobs
    assert (await api.get("/v1/jobs/parent")).json()["dependent_jobs"] == ["child"]

    reply = await api.call("DELETE", "/v1/jobs/parent")
    assert reply.status == 404
    assert "delete children first" in reply.text
    assert (await api.get("/v1/jobs/parent")).status == 200

    deleted = await api.call("DELETE", "/v1/jobs/child")
    assert (deleted.status, deleted.json()["name"]) == (200, "child")
    assert (await api.get("/v1/jobs/parent")).json()["dependent_jobs"] is None
    assert (await api.call("DELETE", "/v1/jobs/parent")).status == 200


async def test_get_and_delete_unknown(api: Api) -> None:
    reply = await api.get("/v1/jobs/nope")
    assert reply.status == 404
    assert "not found" in reply.text
    reply = await api.call("DELETE", "/v1/jobs/nope")
    assert reply.status == 404
    assert "not found" in reply.text


async def test_delete_returns_the_job(api: Api) -> None:
    await api.create(shell_job("del-job", "true", owner="me"))
    reply = await api.call("DELETE", "/v1/jobs/del-job")
    assert reply.status == 200
    assert reply.json()["owner"] == "me"
    assert reply.json()["id"] == "del-job"
    assert (await api.get("/v1/jobs/del-job")).status == 404


async def test_toggle(api: Api) -> None:
    await api.create(shell_job("tog-job", "true", schedule="@every 1h"))
    reply = await api.post("/v1/jobs/tog-job/toggle")
    assert reply.status == 200
    assert reply.headers["Location"] == "/v1/jobs/tog-job/toggle"
    assert reply.json()["disabled"] is True
    assert reply.json()["next"] == "0001-01-01T00:00:00Z"  # unscheduled while disabled
    reply = await api.post("/v1/jobs/tog-job/toggle")
    assert reply.json()["disabled"] is False
    assert reply.json()["next"] != "0001-01-01T00:00:00Z"
    assert (await api.post("/v1/jobs/nope/toggle")).status == 404
    await api.call("DELETE", "/v1/jobs/tog-job")


async def test_run_unknown_or_disabled_job_is_404(api: Api) -> None:
    assert (await api.post("/v1/jobs/nope")).status == 404
    assert (await api.post("/v1/jobs/nope/run")).status == 404
    await api.create(shell_job("off-job", "true", disabled=True))
    reply = await api.post("/v1/jobs/off-job/run")
    assert reply.status == 404
    assert "disabled" in reply.text
    assert await api.executions("off-job") == []
    await api.call("DELETE", "/v1/jobs/off-job")


# -- restore ----------------------------------------------------------------------------------


def _upload(content: bytes | str, field: str = "file") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(field, content, filename="backup.json", content_type="application/json")
    return form


async def test_restore_parents_first(api: Api) -> None:
    # The child comes first in the file; it must still be created after its parent.
    backup = [
        shell_job("r-child", "true", schedule="", parent_job="r-parent"),
        shell_job("r-parent", "echo parent", success_count=7),
        shell_job("r-solo", "true", metadata={"from": "backup"}),
    ]
    reply = await api.post("/v1/restore", data=_upload(json.dumps(backup)))
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    encoded = reply.json()
    assert isinstance(encoded, str)  # Dkron's double-encoded array
    results = json.loads(encoded)
    assert sorted(results) == sorted(
        ["success create r-parent", "success create r-child", "success create r-solo"]
    )
    assert results.index("success create r-parent") < results.index("success create r-child")
    parent = (await api.get("/v1/jobs/r-parent")).json()
    assert parent["dependent_jobs"] == ["r-child"]
    assert parent["success_count"] == 7
    assert (await api.get("/v1/jobs/r-solo")).json()["metadata"] == {"from": "backup"}

    # A GET /v1/jobs listing restores as is (overwriting the existing jobs).
    listing = await api.get("/v1/jobs")
    reply = await api.post("/v1/restore", data=_upload(listing.body))
    assert reply.status == 200
    assert "fail" not in reply.text
    for name in ("r-child", "r-parent", "r-solo"):
        assert (await api.call("DELETE", f"/v1/jobs/{name}")).status == 200


@pytest.mark.parametrize(
    ("content", "status", "fragment"),
    [
        ("[{", 400, "Unable to parse backup file"),
        ('{"name": "x"}', 400, "Unable to parse backup file"),
        ('[{"name": "Bad Name", "schedule": "@manually"}]', 400, "illegal character 'B'"),
        (
            '[{"name": "ok-one", "schedule": "@manually"}, {"name": "kid", "parent_job": "ghost"}]',
            400,
            "'ghost' is not in the file",
        ),
    ],
)
async def test_restore_rejects_bad_files_and_stores_nothing(
    api: Api, content: str, status: int, fragment: str
) -> None:
    reply = await api.post("/v1/restore", data=_upload(content))
    assert reply.status == status
    assert fragment in reply.text
    assert (await api.get("/v1/jobs/ok-one")).status == 404


async def test_restore_without_file_is_404(api: Api) -> None:
    reply = await api.post("/v1/restore", data=_upload("[]", field="other"))
    assert reply.status == 404
    assert '"file"' in reply.text
    reply = await api.post("/v1/restore", json=[])
    assert reply.status == 404


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ],
)
async def test_restore_with_a_malformed_form_is_404_not_500(api: Api, content_type: str) -> None:
    reply = await api.post(
        "/v1/restore", data=b"file=garbage\r\n--xyz", headers={"Content-Type": content_type}
    )
    assert reply.status == 404
    assert '"file"' in reply.text
