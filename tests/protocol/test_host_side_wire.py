"""The host side on the wire: our PluginClient against hand-written raw plugins.

The fake (tests/fakes/recorder.py) does not use plugin_sdk's server; it reports
in each ExecuteResponse what it saw of the host: the environment, every ConnInfo
on the broker stream, how many StartStreams were opened, and every method called.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from plugin_sdk.protocol import DKRON_HANDSHAKE, PluginClient

FAKES_DIR = Path(__file__).resolve().parent.parent / "fakes"
RECORDER = str(FAKES_DIR / "recorder.py")


async def _launch(tmp_path: Path, *args: str, **env: str) -> PluginClient:
    return await PluginClient.launch(
        [sys.executable, RECORDER, *args],
        name="recorder",
        env={**os.environ, "FAKE_SHUTDOWN_FILE": str(tmp_path / "shutdown.json"), **env},
        start_timeout=10.0,
    )


async def _execute(client: PluginClient, job: str) -> tuple[dict[str, Any], list[Any]]:
    updates: list[tuple[bytes, bool]] = []

    def collect(chunk: bytes, is_error: bool) -> None:
        updates.append((chunk, is_error))

    response = await client.execute(job, {"job": job}, on_update=collect, timeout=10.0)
    assert response.error == ""
    return json.loads(response.output), updates


async def test_launch_environment_overrides_inherited_values(tmp_path: Path) -> None:
    client = await _launch(
        tmp_path,
        FAKE_INHERITED="kept",
        DKRON_PLUGIN_MAGIC_COOKIE="stale",
        PLUGIN_MIN_PORT="1",
        PLUGIN_MAX_PORT="2",
        PLUGIN_PROTOCOL_VERSIONS="7",
    )
    try:
        report, _ = await _execute(client, "env")
    finally:
        await client.shutdown()
    assert report["env"] == {
        "DKRON_PLUGIN_MAGIC_COOKIE": DKRON_HANDSHAKE.cookie_value,
        "PLUGIN_MIN_PORT": "10000",
        "PLUGIN_MAX_PORT": "25000",
        "PLUGIN_PROTOCOL_VERSIONS": "1",
        "FAKE_INHERITED": "kept",
    }


async def test_broker_traffic_per_execute(tmp_path: Path) -> None:
    client = await _launch(tmp_path)
    try:
        reports = []
        for n in range(1, 4):
            report, updates = await _execute(client, f"job-{n}")
            reports.append(report)
            # The fake's Update reached our StatusHelper while Execute was in flight.
            assert updates == [(f"live job-{n}".encode(), True)]
            assert report["update_r"] == 0
    finally:
        await client.shutdown()
    for n, report in enumerate(reports, start=1):
        assert report["status_server"] == n
        assert [entry[0] for entry in report["announced"]] == list(range(1, n + 1))
        assert report["knocks"] == [False] * n
        # One StartStream for the client's whole life, still open at every Execute.
        assert (report["streams_opened"], report["streams_open"]) == (1, 1)
        assert report["config"] == {"job": f"job-{n}"}
    for service_id, network, address in reports[-1]["announced"]:
        assert network == "unix"
        assert os.path.isabs(address)
        assert len(address.encode()) < 108, f"id {service_id}: sun_path overflow {address}"
    methods = reports[-1]["methods"]
    assert methods.count("/plugin.GRPCBroker/StartStream") == 1
    assert methods.count("/types.v1.ExecutorService/Execute") == 3
    assert "/types.Executor/Execute" not in methods


async def test_a_repeated_burst_reuses_its_status_servers(tmp_path: Path) -> None:
    # 40 executions at once, twice: the second burst is served by the first burst's
    # StatusHelper servers (the pool keeps as many idle as were recently in use), not
    # by servers started and stopped again (a fixed pool of 32 would start 8 anew).
    import asyncio

    client = await _launch(tmp_path)
    burst = 40
    try:
        for round_ in range(2):
            results = await asyncio.gather(
                *(_execute(client, f"job-{round_}-{n}") for n in range(burst))
            )
        announced = max((report["announced"] for report, _ in results), key=len)
    finally:
        await client.shutdown()
    first = {address for _, _, address in announced[:burst]}
    second = {address for _, _, address in announced[burst : 2 * burst]}
    assert len(announced) == 2 * burst and len(first) == burst
    assert second <= first, f"{len(second - first)} servers started anew for the second burst"


async def test_shutdown_goes_through_grpc_controller(tmp_path: Path) -> None:
    client = await _launch(tmp_path)
    await _execute(client, "once")
    await client.shutdown()
    # The fake exits 0 only from its Shutdown handler; SIGKILL would give -9.
    assert client.process.returncode == 0
    methods = json.loads((tmp_path / "shutdown.json").read_text())
    assert methods[-1] == "/plugin.GRPCController/Shutdown"
    assert methods.count("/plugin.GRPCController/Shutdown") == 1


async def test_legacy_only_plugin_gets_legacy_names(tmp_path: Path) -> None:
    client = await _launch(tmp_path, "--legacy")
    try:
        first, first_updates = await _execute(client, "old-1")
        second, second_updates = await _execute(client, "old-2")
    finally:
        await client.shutdown()
    # The fake called /types.StatusHelper/Update: the host serves the legacy name too.
    assert first_updates == [(b"live old-1", True)]
    assert second_updates == [(b"live old-2", True)]
    assert first["methods"][-2:] == ["/types.v1.ExecutorService/Execute", "/types.Executor/Execute"]
    # The fallback is remembered: the second execution goes straight to the legacy name.
    assert second["methods"][-1] == "/types.Executor/Execute"
    assert second["methods"].count("/types.v1.ExecutorService/Execute") == 1
    assert second["status_server"] == 2


async def test_ping_is_a_health_check(tmp_path: Path) -> None:
    client = await _launch(tmp_path)
    try:
        assert await client.ping()
        report, _ = await _execute(client, "after-ping")
    finally:
        await client.shutdown()
    assert "/grpc.health.v1.Health/Check" in report["methods"]
    assert not await client.ping()  # a shut-down plugin is not pingable


def test_fakes_are_not_built_on_plugin_sdk() -> None:
    # The wire tests are only meaningful if the fake shares no code with our protocol.
    for fake in FAKES_DIR.glob("*.py"):
        assert not re.search(r"^\s*(from|import) plugin_sdk", fake.read_text(), re.M), fake.name
