"""The executor side of the plugin runtime against real plugin processes.

Every fault must come back as a failed outcome naming the plugin and the cause,
leave the other plugins alone, and never leave a process behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from plugin_host_helpers import install, recorded_pids, still_running, wait_gone

from core.plugins.runtime import PluginRuntime, RuntimeSettings
from core.plugins.supervisor import Backoff

BACKOFF = Backoff(initial=0.05, maximum=0.2)


@pytest.fixture
def pid_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pids"
    folder.mkdir()
    monkeypatch.setenv("CORE_FAKE_PID_DIR", str(folder))
    return folder


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    return folder


def settings(plugin_dir: Path, **overrides: Any) -> RuntimeSettings:
    base = RuntimeSettings(
        plugin_dir=plugin_dir, backoff=BACKOFF, load_entry_points=False, start_timeout=10.0
    )
    return dataclasses.replace(base, **overrides)


def runtime_for(plugin_dir: Path, **overrides: Any) -> PluginRuntime:
    return PluginRuntime(settings(plugin_dir, **overrides), search_path=[plugin_dir])


@pytest.fixture
async def good(plugin_dir: Path, pid_dir: Path) -> AsyncIterator[PluginRuntime]:
    install(plugin_dir, "executor", "fake", "executor")
    async with runtime_for(plugin_dir) as runtime:
        yield runtime
    assert wait_gone(recorded_pids(pid_dir)) == []


def pid_of(output: bytes) -> int:
    fields = dict(part.split("=", 1) for part in output.decode().split())
    return int(fields["pid"])


async def test_execution_succeeds_and_reuses_the_process(good: PluginRuntime) -> None:
    first = await good.execute("fake", "job-1", {})
    second = await good.execute("fake", "job-2", {})
    assert first.success and second.success, (first, second)
    assert first.error == "" and not first.truncated
    assert pid_of(first.output) == pid_of(second.output) == good.executors["fake"].state.pid
    assert good.executors["fake"].state.starts == 1


async def test_a_plugin_error_is_a_failed_outcome_with_its_output(good: PluginRuntime) -> None:
    outcome = await good.execute("fake", "job", {"fail": "disk full"})
    assert not outcome.success
    assert outcome.error == "disk full"
    # Dkron's layout: the error line, then what the plugin produced.
    assert outcome.output == b"disk full\npartial work\n"


async def test_output_streams_live_and_is_reported(good: PluginRuntime) -> None:
    chunks: list[tuple[bytes, bool]] = []
    outcome = await good.execute(
        "fake",
        "job",
        {"stream": "live\n", "output": "final\n"},
        on_output=lambda c, e: chunks.append((c, e)),
    )
    assert outcome.success and outcome.output == b"final\n"
    assert chunks == [(b"live\n", False)]


async def test_crash_mid_execution_keeps_streamed_output_and_restarts(
    good: PluginRuntime,
) -> None:
    plugin = good.executors["fake"]
    before = pid_of((await good.execute("fake", "job", {})).output)

    crashed = await good.execute("fake", "job", {"stream": "got this far\n", "crash": "3"})
    assert not crashed.success
    assert "'fake'" in crashed.error and "crashed" in crashed.error, crashed.error
    assert "exit status 3" in crashed.error, crashed.error
    assert crashed.output == crashed.error.encode() + b"\ngot this far\n"
    assert wait_gone([before]) == []  # reaped, not a zombie

    after = await good.execute("fake", "job", {})
    assert after.success, after.error
    assert pid_of(after.output) != before
    assert plugin.state.starts == 2 and plugin.state.running


async def test_restart_waits_out_the_backoff(plugin_dir: Path, pid_dir: Path) -> None:
    delay = 0.3
    install(plugin_dir, "executor", "fake", "executor")
    backoff = Backoff(initial=delay, maximum=10.0)
    async with runtime_for(plugin_dir, backoff=backoff) as runtime:
        crashed = await runtime.execute("fake", "job", {"crash": "9"})
        noticed = time.monotonic()
        assert not crashed.success
        restarted = await runtime.execute("fake", "job", {})
        assert restarted.success, restarted.error
        # CLOCK_MONOTONIC is system-wide, so the plugin's own start time compares.
        fields = dict(p.split("=", 1) for p in restarted.output.decode().split())
        assert float(fields["started"]) - noticed >= delay
        assert runtime.executors["fake"].state.starts == 2

        crashed = await runtime.execute("fake", "job", {"crash": "9"})
        noticed = time.monotonic()
        restarted = await runtime.execute("fake", "job", {})
        fields = dict(p.split("=", 1) for p in restarted.output.decode().split())
        # A second failure in a row doubles the wait.
        assert float(fields["started"]) - noticed >= 2 * delay
        assert runtime.executors["fake"].state.starts == 3


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=0.1, maximum=0.5)
    assert [backoff.delay(n) for n in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.5, 0.5]


async def test_binary_deleted_after_a_crash(good: PluginRuntime, plugin_dir: Path) -> None:
    crashed = await good.execute("fake", "job", {"crash": "1"})
    assert not crashed.success
    (plugin_dir / "dkron-executor-fake").unlink()

    gone = await good.execute("fake", "job", {})

    assert not gone.success
    assert "'fake'" in gone.error and "cannot execute" in gone.error, gone.error
    assert str(plugin_dir / "dkron-executor-fake") in gone.error
    assert gone.output.startswith(gone.error.encode() + b"\n")


async def test_timeout_on_a_plugin_that_still_answers_health(good: PluginRuntime) -> None:
    plugin = good.executors["fake"]
    before = plugin.state.pid
    started = time.monotonic()

    outcome = await good.execute("fake", "job", {"stream": "working\n", "hang": "1"}, timeout=0.5)

    assert time.monotonic() - started < 3.0
    assert not outcome.success
    assert "'fake'" in outcome.error and "within 0.5s" in outcome.error, outcome.error
    assert outcome.output == outcome.error.encode() + b"\nworking\n"
    # The job was slow, the plugin is fine: kept, and it serves the next run.
    assert plugin.state.pid == before and plugin.state.starts == 1
    assert (await good.execute("fake", "job", {})).success


async def test_a_hung_plugin_that_stops_answering_health_is_killed(
    good: PluginRuntime,
) -> None:
    plugin = good.executors["fake"]
    stopped = plugin.state.pid
    assert stopped is not None

    outcome = await good.execute("fake", "job", {"sigstop": "1"}, timeout=0.5)

    assert not outcome.success and "within 0.5s" in outcome.error, outcome.error
    # SIGKILL works on a stopped process; it must be reaped too.
    assert wait_gone([stopped]) == []
    assert plugin.state.running is False
    assert "unresponsive" in plugin.state.last_error
    after = await good.execute("fake", "job", {})
    assert after.success, after.error
    assert pid_of(after.output) != stopped and plugin.state.starts == 2


async def test_output_cap_keeps_the_last_bytes(plugin_dir: Path, pid_dir: Path) -> None:
    install(plugin_dir, "executor", "fake", "executor")
    async with runtime_for(plugin_dir, output_limit=1000) as runtime:
        outcome = await runtime.execute("fake", "job", {"lines": "1000"})
        expected = "".join(f"{i:06d}\n" for i in range(1000)).encode()
        assert outcome.success
        assert outcome.truncated
        assert outcome.output == expected[-1000:]

        small = await runtime.execute("fake", "job", {"lines": "10"})
        assert not small.truncated and small.output == expected[:70]

        # Streamed output before a crash is capped the same way, the error line last in.
        crashed = await runtime.execute("fake", "job", {"stream": expected.decode(), "crash": "2"})
        assert not crashed.success and crashed.truncated
        assert len(crashed.output) == 1000
        assert crashed.output.endswith(expected[-200:])


async def test_unknown_executor_names_the_search_path(
    good: PluginRuntime, plugin_dir: Path
) -> None:
    outcome = await good.execute("nope", "job", {})
    assert not outcome.success
    assert "'nope'" in outcome.error and str(plugin_dir) in outcome.error, outcome.error
    assert "fake" in outcome.error  # what is available instead
    assert outcome.output == outcome.error.encode() + b"\n"


@pytest.mark.parametrize(
    ("fake", "cause"),
    [
        ("garbage", "Unrecognized remote plugin message"),
        ("exits", "exited before we could connect (exit status 4)"),
        ("silent", "timeout while waiting for plugin to start"),
    ],
)
async def test_start_faults_fail_only_that_plugin(
    plugin_dir: Path, pid_dir: Path, fake: str, cause: str
) -> None:
    install(plugin_dir, "executor", "fake", "executor")
    install(plugin_dir, "executor", "broken", fake)
    async with runtime_for(plugin_dir, start_timeout=0.5) as runtime:
        good_pid = runtime.executors["fake"].state.pid
        assert good_pid is not None
        # The eager start already tried and failed; nothing of it is left running.
        assert wait_gone(recorded_pids(pid_dir, "dkron-executor-broken")) == []

        outcome = await runtime.execute("broken", "job", {})

        assert not outcome.success
        assert "'broken'" in outcome.error and cause in outcome.error, outcome.error
        if fake == "exits":
            assert "cannot open /nonexistent/config.yml" in outcome.error  # stderr hint
        assert runtime.executors["broken"].state.running is False
        assert runtime.executors["broken"].state.failures == 2
        assert wait_gone(recorded_pids(pid_dir, "dkron-executor-broken")) == []
        ok = await runtime.execute("fake", "job", {})
        assert ok.success and pid_of(ok.output) == good_pid
    assert wait_gone(recorded_pids(pid_dir)) == []


async def test_a_plugin_fixed_on_disk_recovers(plugin_dir: Path, pid_dir: Path) -> None:
    install(plugin_dir, "executor", "flaky", "exits")
    async with runtime_for(plugin_dir, eager=False) as runtime:
        assert not (await runtime.execute("flaky", "job", {})).success
        install(plugin_dir, "executor", "flaky", "executor")
        fixed = await runtime.execute("flaky", "job", {})
        assert fixed.success, fixed.error
        assert runtime.executors["flaky"].state.starts == 1


async def test_close_leaves_no_process(plugin_dir: Path, pid_dir: Path) -> None:
    for name in ("a", "b", "c"):
        install(plugin_dir, "executor", name, "executor")
    install(plugin_dir, "processor", "p", "processor")
    runtime = runtime_for(plugin_dir)
    try:
        await runtime.start()
        plugins = [*runtime.executors.values(), *runtime.binary_processors.values()]
        clients = [await p.client() for p in plugins]
        pids = {c.process.pid for c in clients}
        assert len(pids) == 4 and still_running(pids) == sorted(pids)
    finally:
        await runtime.close()

    assert wait_gone(pids) == []
    # Controller.Shutdown was enough: every plugin exited on its own, status 0.
    assert [c.process.returncode for c in clients] == [0, 0, 0, 0]
    late = await runtime.execute("a", "job", {})
    assert not late.success and "shutting down" in late.error


async def test_close_on_the_error_path(plugin_dir: Path, pid_dir: Path) -> None:
    install(plugin_dir, "executor", "fake", "executor")
    with pytest.raises(RuntimeError, match="agent failed"):
        async with runtime_for(plugin_dir) as runtime:
            assert (await runtime.execute("fake", "job", {})).success
            raise RuntimeError("agent failed")
    pids = recorded_pids(pid_dir)
    assert len(pids) == 1 and wait_gone(pids) == []


async def test_close_while_an_execution_hangs(plugin_dir: Path, pid_dir: Path) -> None:
    install(plugin_dir, "executor", "fake", "executor")
    runtime = runtime_for(plugin_dir)
    try:
        await runtime.start()
        running = asyncio.create_task(runtime.execute("fake", "job", {"hang": "1"}))
        pid = runtime.executors["fake"].state.pid
        assert pid is not None
    finally:
        await runtime.close()
    outcome = await asyncio.wait_for(running, 5.0)

    assert not outcome.success
    assert "'fake'" in outcome.error and "shut down during the execution" in outcome.error
    assert wait_gone([pid]) == []


async def test_cancelling_an_execution_is_not_a_plugin_fault(good: PluginRuntime) -> None:
    plugin = good.executors["fake"]
    streamed = asyncio.Event()
    running = asyncio.create_task(
        good.execute(
            "fake", "job", {"stream": "x", "hang": "1"}, on_output=lambda c, e: streamed.set()
        )
    )
    await asyncio.wait_for(streamed.wait(), 5.0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # The caller gave up, the plugin did nothing wrong: same process serves on.
    assert plugin.state.failures == 0
    after = await good.execute("fake", "job", {})
    assert after.success and pid_of(after.output) == plugin.state.pid
    assert plugin.state.starts == 1


async def test_a_plugin_ignoring_shutdown_is_killed_after_the_grace(
    plugin_dir: Path, pid_dir: Path
) -> None:
    install(plugin_dir, "executor", "stubborn", "stubborn")
    install(plugin_dir, "executor", "fake", "executor")
    grace = 0.3
    runtime = runtime_for(plugin_dir, shutdown_grace=grace)
    try:
        await runtime.start()
        stubborn = await runtime.executors["stubborn"].client()
        polite = await runtime.executors["fake"].client()
        started = time.monotonic()
    finally:
        await runtime.close()
    took = time.monotonic() - started

    assert stubborn.process.returncode == -9  # SIGKILL
    assert polite.process.returncode == 0
    assert grace <= took < grace + 2.0
    asked = pid_dir / f"dkron-executor-stubborn.{stubborn.process.pid}.shutdown"
    assert asked.exists(), "the host must send Controller.Shutdown before killing"
    assert wait_gone(recorded_pids(pid_dir)) == []


async def test_with_two_processes_a_second_run_in_flight_goes_to_the_other(
    plugin_dir: Path, pid_dir: Path, tmp_path: Path
) -> None:
    install(plugin_dir, "executor", "fake", "executor")
    go = tmp_path / "go"
    async with runtime_for(plugin_dir, executor_processes=2) as runtime:
        # Both processes are started with the agent, not on the first burst.
        assert len(recorded_pids(pid_dir)) == 2
        running = asyncio.Event()

        def on_output(chunk: bytes, is_error: bool) -> None:
            running.set()

        busy = asyncio.ensure_future(
            runtime.execute(
                "fake", "busy", {"wait_file": str(go), "stream": "up\n"}, on_output=on_output
            )
        )
        await asyncio.wait_for(running.wait(), 10)
        # The held run is in flight: the next one must go to the idle process.
        second = await runtime.execute("fake", "second", {})
        go.touch()
        held = await busy
        # Nothing in flight: ties go to the first process, so a quiet agent uses one.
        third = await runtime.execute("fake", "third", {})
    assert held.success and second.success and third.success
    primary = pid_of(third.output)
    assert pid_of(second.output) != primary
    assert pid_of(held.output) == primary
    assert wait_gone(recorded_pids(pid_dir)) == []
