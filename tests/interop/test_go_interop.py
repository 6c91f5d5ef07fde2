"""Wire compatibility with real Go go-plugin code, in both directions.

A Go executor plugin written like Dkron's runs under our host (PluginClient), and
our SDK plugins run under a Go go-plugin host that executes jobs like a Dkron
agent. The Go side is Debian's go-plugin 1.0.1 (see go-plugin-protocol.md §12),
built by tests/interop/go/build.sh; .ci/install-go-interop.sh installs it.

Without the Go toolchain or the protobuf plugins the build needs, the tests that need
Go skip with build.sh's reason; with DKRON_REQUIRE_GO_INTEROP=1 (CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from support import installed_script

from plugin_sdk.goplugin import PluginCrashed
from plugin_sdk.protocol import PluginClient

GO_DIR = Path(__file__).resolve().parent / "go"
# build.sh's exit status when a prerequisite is missing (its message names it).
BUILD_SKIPPED = 77
# CI sets it so that a machine without the toolchain cannot pass without the wire check.
REQUIRE_GO = os.environ.get("DKRON_REQUIRE_GO_INTEROP") == "1"
BUILD_TIMEOUT = 600.0  # a cold build compiles grpc-go from source
HOST_TIMEOUT = 30.0
# PluginClient.shutdown's default grace period before SIGKILL.
SHUTDOWN_GRACE = 2.0


def _unavailable(reason: str) -> NoReturn:
    if REQUIRE_GO:
        pytest.fail(f"{reason} (DKRON_REQUIRE_GO_INTEROP=1 makes this a failure)")
    pytest.skip(reason)


@dataclass(frozen=True)
class GoBinaries:
    plugin: Path
    legacy_plugin: Path
    host: Path


@pytest.fixture(scope="session")
def go_bins(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> GoBinaries:
    build_dir = tmp_path_factory.mktemp("go-interop")
    env = dict(os.environ)
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        # Go's build cache is content-addressed; sharing it across runs only saves time.
        env["INTEROP_GOCACHE"] = str(cache.mkdir("go-interop-gocache"))
    try:
        result = subprocess.run(
            ["bash", str(GO_DIR / "build.sh"), str(build_dir)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"building the Go interop binaries took over {BUILD_TIMEOUT:g}s")
    if result.returncode == BUILD_SKIPPED:
        lines = result.stderr.strip().splitlines()
        _unavailable(lines[-1] if lines else "go interop build: a prerequisite is missing")
    if result.returncode != 0:
        pytest.fail(
            f"building the Go interop binaries failed (exit {result.returncode}):\n"
            f"{result.stderr[-4000:]}"
        )
    bin_dir = build_dir / "bin"
    return GoBinaries(
        plugin=bin_dir / "dkron-executor-gointerop",
        legacy_plugin=bin_dir / "dkron-executor-gointerop-legacy",
        host=bin_dir / "gointerop-host",
    )


# -- a Go plugin under our host ------------------------------------------------------------


@contextlib.asynccontextmanager
async def launched(path: Path) -> AsyncIterator[PluginClient]:
    client = await PluginClient.launch([str(path)], start_timeout=20.0)
    try:
        yield client
    finally:
        await client.shutdown()
        assert client.process.returncode is not None


class Updates:
    def __init__(self) -> None:
        self.chunks: list[tuple[bytes, bool]] = []

    def __call__(self, chunk: bytes, is_error: bool) -> None:
        self.chunks.append((chunk, is_error))


def expected_updates(job: str) -> list[tuple[bytes, bool]]:
    return [
        (f"starting {job}\n".encode(), False),
        (f"warning from {job}\n".encode(), True),
        (f"finishing {job}\n".encode(), False),
    ]


async def test_go_plugin_streams_through_our_broker(go_bins: GoBinaries) -> None:
    async with launched(go_bins.plugin) as client:
        assert await client.ping()
        # Two executions: the broker id advances and each gets its own status server.
        for job in ("first-job", "second-job"):
            updates = Updates()
            response = await client.execute(
                job, {"b": "two", "a": "1"}, on_update=updates, timeout=15
            )
            assert updates.chunks == expected_updates(job)
            assert response.output == f"job={job} generation=v1 config=a=1,b=two\n".encode()
            assert response.error == ""


async def test_go_plugin_failure_is_surfaced(go_bins: GoBinaries) -> None:
    async with launched(go_bins.plugin) as client:
        updates = Updates()
        response = await client.execute(
            "failing-job", {"fail": "disk full"}, on_update=updates, timeout=15
        )
        assert response.error == "failed on request: disk full"
        assert response.output == b"job=failing-job generation=v1 config=fail=disk full\n"
        assert updates.chunks == expected_updates("failing-job")


async def test_go_plugin_crash_raises_plugin_crashed(go_bins: GoBinaries) -> None:
    async with launched(go_bins.plugin) as client:
        updates = Updates()
        with pytest.raises(PluginCrashed) as raised:
            await client.execute("crashing-job", {"crash": "yes"}, on_update=updates, timeout=15)
        message = str(raised.value)
        assert "dkron-executor-gointerop" in message
        assert "crashed during Execute" in message
        # The cause is named; the exit status itself is there once the exit was seen.
        assert "(exit status 3)" in message or "(connection lost)" in message
        # The chunk sent before the crash made it through the broker.
        assert updates.chunks == [(b"starting crashing-job\n", False)]
        await asyncio.wait_for(client.exited.wait(), 5)
        assert client.process.returncode == 3
        assert not client.alive
        with pytest.raises(PluginCrashed, match="not running"):
            await client.execute("after-crash", {}, timeout=5)


async def test_legacy_go_plugin_falls_back_to_types_executor(go_bins: GoBinaries) -> None:
    async with launched(go_bins.legacy_plugin) as client:
        for job in ("legacy-one", "legacy-two"):
            updates = Updates()
            response = await client.execute(job, {"k": "v"}, on_update=updates, timeout=15)
            # Streaming works only if our host served the legacy types.StatusHelper too.
            assert updates.chunks == expected_updates(job)
            assert response.output == f"job={job} generation=legacy config=k=v\n".encode()
            assert response.error == ""


async def test_shutdown_makes_go_plugin_exit(go_bins: GoBinaries) -> None:
    client = await PluginClient.launch([str(go_bins.plugin)], start_timeout=20.0)
    try:
        await client.execute("before-shutdown", {}, timeout=15)
        started = time.monotonic()
        await client.shutdown(grace=SHUTDOWN_GRACE)
        elapsed = time.monotonic() - started
    finally:
        await client.kill()
    assert client.process.returncode is not None
    # Exit status 0 within the grace period: GRPCController.Shutdown worked, no SIGKILL.
    assert client.process.returncode == 0
    assert elapsed < SHUTDOWN_GRACE


# -- our plugins under a Go host -----------------------------------------------------------


def run_go_host(go_bins: GoBinaries, plugin: str | Path, *config: str) -> dict[str, Any]:
    """Run one execution through the Go host; return its JSON result."""
    # A session of its own, so a hung host and its plugin can be killed as one group.
    process = subprocess.Popen(
        [str(go_bins.host), str(plugin), *config],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=HOST_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"the Go host did not finish within {HOST_TIMEOUT:g}s")
    leftovers = _group_alive(process.pid)
    if leftovers:
        os.killpg(process.pid, signal.SIGKILL)
    assert not leftovers, "the Go host left its plugin running"
    assert process.returncode == 0, f"Go host exit {process.returncode}:\n{stderr[-4000:]}"
    lines = stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {stdout!r}"
    result: dict[str, Any] = json.loads(lines[0])
    return result


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


SDK_PLUGIN = """\
from plugin_sdk import ExecuteResponse, serve


def execute(request, status):
    status.update(f"first chunk for {request.job_name}\\n")
    status.update("second chunk\\n", is_error=True)
    if "exit" in request.config:
        import os

        os._exit(int(request.config["exit"]))
    output = f"ran {request.job_name} with greeting={request.config.get('greeting')}\\n"
    return ExecuteResponse(output=output.encode(), error=request.config.get("fail", ""))


if __name__ == "__main__":
    serve(execute)
"""

SDK_UPDATES = [
    {"output": "first chunk for interop-job\n", "error": False},
    {"output": "second chunk\n", "error": True},
]


@pytest.fixture
def sdk_plugin(python_plugin: Callable[[str, str], Path]) -> Path:
    return python_plugin("dkron-executor-sdkinterop", SDK_PLUGIN)


def test_sdk_plugin_under_go_host(go_bins: GoBinaries, sdk_plugin: Path) -> None:
    result = run_go_host(go_bins, sdk_plugin, "greeting=hi")
    assert result == {
        "output": "ran interop-job with greeting=hi\n",
        "error": "",
        "updates": SDK_UPDATES,
        "rpc_error": "",
    }


def test_sdk_plugin_error_under_go_host(go_bins: GoBinaries, sdk_plugin: Path) -> None:
    result = run_go_host(go_bins, sdk_plugin, "greeting=hi", "fail=no space left")
    assert result["error"] == "no space left"
    assert result["output"] == "ran interop-job with greeting=hi\n"
    assert result["updates"] == SDK_UPDATES
    assert result["rpc_error"] == ""


def test_sdk_plugin_crash_under_go_host(go_bins: GoBinaries, sdk_plugin: Path) -> None:
    result = run_go_host(go_bins, sdk_plugin, "exit=4")
    # The Go host sees the dead transport as an RPC error, as Dkron would.
    assert "Unavailable" in result["rpc_error"]
    assert result["output"] == ""
    assert result["updates"] == SDK_UPDATES


def test_shell_plugin_under_go_host(go_bins: GoBinaries) -> None:
    shell = installed_script("dkron-executor-shell")
    result = run_go_host(go_bins, shell, "command=echo hello")
    assert result["rpc_error"] == ""
    assert result["error"] == ""
    assert result["output"] == "hello\n"
    # Dkron's shell executor streams every write of the child through Update.
    assert "".join(u["output"] for u in result["updates"]) == "hello\n"
    assert all(u["error"] is False for u in result["updates"])


def test_sdk_plugin_without_cookie_explains_itself(sdk_plugin: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DKRON_PLUGIN_MAGIC_COOKIE"}
    result = subprocess.run(
        [sys.executable, str(sdk_plugin)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=HOST_TIMEOUT,
    )
    assert result.returncode == 1
    assert result.stdout == b""
    assert b"This binary is a plugin. These are not meant to be executed directly." in (
        result.stderr
    )
