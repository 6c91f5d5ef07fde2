"""One hand-written fake plugin per fault (tests/fakes/), driven by our host client.

For each fault: the right exception class, a message naming the plugin and the
cause, and no process left behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugin_sdk.goplugin import PluginCallError, PluginCrashed, PluginStartError, PluginTimeout
from plugin_sdk.protocol import PluginClient

FAKES_DIR = Path(__file__).resolve().parent.parent / "fakes"
DEADLINE = 10.0


def _fake(name: str) -> list[str]:
    return [sys.executable, str(FAKES_DIR / f"{name}.py")]


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pid"
    yield path
    # Belt and braces: a failing assertion must not leave the fake running.
    if path.exists() and path.read_text():
        pid = int(path.read_text())
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, 9)


async def _start_fails(fake: str, pid_file: Path, start_timeout: float = DEADLINE) -> str:
    with pytest.raises(PluginStartError) as caught:
        await PluginClient.launch(
            _fake(fake),
            name=fake,
            env={**os.environ, "FAKE_PID_FILE": str(pid_file)},
            start_timeout=start_timeout,
        )
    message = str(caught.value)
    assert message.startswith(f"plugin {fake!r}: "), message
    assert caught.value.plugin == fake
    pid = int(pid_file.read_text())  # every fake records its PID before it misbehaves
    # launch() killed and reaped its child before raising: not even a zombie is left.
    assert not Path(f"/proc/{pid}").exists(), f"{fake} (pid {pid}) was left behind"
    return message


@pytest.mark.parametrize(
    ("fake", "cause"),
    [
        ("garbage_first_line", "Unrecognized remote plugin message: 'Starting my awesome plugin"),
        ("wrong_core_version", "incompatible core API version with plugin. Plugin version: 2"),
        ("wrong_app_version", "incompatible API version with plugin. Plugin version: 5"),
        ("netrpc_protocol", 'unsupported plugin protocol "netrpc"'),
        ("missing_protocol", 'unsupported plugin protocol "netrpc"'),
        ("unknown_network", "unknown address type 'carrier-pigeon'"),
        ("long_stdout_line", "first stdout line over 64 KiB"),
    ],
)
async def test_bad_handshake(fake: str, cause: str, pid_file: Path) -> None:
    assert cause in await _start_fails(fake, pid_file)


async def test_exits_at_start_reports_status_and_stderr(pid_file: Path) -> None:
    message = await _start_fails("exits_at_start", pid_file)
    assert "plugin exited before we could connect (exit status 3)" in message
    assert "fatal: cannot read /etc/fake-plugin.conf: no such file" in message


async def test_never_handshakes_times_out(pid_file: Path) -> None:
    began = time.monotonic()
    message = await _start_fails("never_handshakes", pid_file, start_timeout=0.5)
    assert "timeout while waiting for plugin to start (0.5s" in message
    assert time.monotonic() - began < 3.0


async def test_handshake_to_a_dead_socket(pid_file: Path) -> None:
    began = time.monotonic()
    message = await _start_fails("dead_socket", pid_file)
    assert "fake-nobody-home" in message
    assert "nothing accepts connections there" in message
    assert time.monotonic() - began < 3.0, "a refused connection should fail fast"


async def _launch(fake: str, **options: int) -> PluginClient:
    return await PluginClient.launch(_fake(fake), name=fake, start_timeout=DEADLINE, **options)


async def test_crash_mid_execution() -> None:
    client = await _launch("crash_mid_execute")
    try:
        with pytest.raises(PluginCrashed) as caught:
            await client.execute("doomed", {}, timeout=DEADLINE)
    finally:
        await client.shutdown()
        assert client.handshake is not None
        Path(client.handshake.address).unlink(missing_ok=True)  # a crash cannot clean up
    message = str(caught.value)
    assert message.startswith("plugin 'crash_mid_execute': plugin crashed during Execute")
    assert client.process.returncode == 7
    with pytest.raises(PluginCrashed, match="not running"):
        await client.execute("again", {})


async def test_hung_execute_times_out() -> None:
    client = await _launch("hang_execute")
    try:
        with pytest.raises(PluginTimeout) as caught:
            await client.execute("stuck", {}, timeout=0.5)
        assert str(caught.value) == "plugin 'hang_execute': Execute did not finish within 0.5s"
        assert await client.ping(), "a hung Execute must not take the plugin down"
    finally:
        await client.shutdown()
    assert client.process.returncode is not None


async def test_oversized_response_is_refused() -> None:
    client = await _launch("oversized_output", receive_limit=1024 * 1024)
    try:
        with pytest.raises(PluginCallError) as caught:
            await client.execute("big", {}, timeout=DEADLINE)
        assert await client.ping(), "one oversized response must not poison the connection"
    finally:
        await client.shutdown()
    message = str(caught.value)
    assert message.startswith("plugin 'oversized_output': Execute response too large")
    assert "larger than max" in message and "vs. 1048576" in message
    assert client.process.returncode is not None


class _LastLine(logging.Handler):
    """Sets ``seen`` once the fake's last stderr line has been logged."""

    def __init__(self, last: str) -> None:
        super().__init__(logging.DEBUG)
        self.last = last
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.last:
            self.seen.set()


async def test_stderr_is_logged_with_hclog_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dkron.plugin.hclog_stderr")
    watcher = _LastLine("goroutine 1 [running]:")
    logging.getLogger("dkron.plugin.hclog_stderr").addHandler(watcher)
    client = await _launch("hclog_stderr")
    try:
        # The stderr reader runs on this loop, so wait for the event off the loop.
        assert await asyncio.to_thread(watcher.seen.wait, DEADLINE), "stderr never logged"
        response = await client.execute("after-logs", {}, timeout=DEADLINE)
    finally:
        await client.shutdown()
        logging.getLogger("dkron.plugin.hclog_stderr").removeHandler(watcher)
    assert response.output == b"still alive"  # a non-string @message did not kill the host
    records = {r.getMessage(): r for r in caplog.records if r.name == "dkron.plugin.hclog_stderr"}
    levels = {message: record.levelno for message, record in records.items()}
    assert levels["json info"] == logging.INFO
    assert levels["json warn"] == logging.WARNING
    assert levels["json error"] == logging.ERROR
    assert levels["5"] == logging.INFO
    assert levels["bracket warn"] == logging.WARNING
    assert levels["bracket error"] == logging.ERROR
    assert levels["just some chatter"] == logging.DEBUG
    # A 100 KiB line arrives split at 64 KiB, and the line after it is intact.
    long_parts = [m for m in records if m and set(m) == {"L"}]
    assert sorted(map(len, long_parts)) == [100 * 1024 - 64 * 1024, 64 * 1024]
    assert levels["after the long line"] == logging.DEBUG
    # After a Go panic line everything is an error ("panic mode").
    assert levels["panic: runtime error: index out of range [3] with length 3"] == logging.ERROR
    assert levels["goroutine 1 [running]:"] == logging.ERROR
    info = records["json info"]
    assert (getattr(info, "job", None), getattr(info, "attempt", None)) == ("nightly", 2)
    assert getattr(info, "plugin", None) == "hclog_stderr"
    # Keys that clash with LogRecord attributes are kept under another name.
    assert getattr(records["json error"], "plugin_message", None) == "clash"
