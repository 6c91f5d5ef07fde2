"""The plugin side on the wire: a real SDK plugin driven by raw gRPC, without our host.

Everything here talks to the plugin process the way a Go host would: a raw
first stdout line, a plain sync channel, a hand-fed GRPCBroker stream and our
own StatusHelper server. The host client in plugin_sdk is deliberately unused.
"""

from __future__ import annotations

import os
import queue
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dkron_pb.plugin import grpc_broker_pb2 as broker_pb
from dkron_pb.plugin import grpc_broker_pb2_grpc as broker_grpc
from dkron_pb.plugin import grpc_controller_pb2 as controller_pb
from dkron_pb.plugin import grpc_controller_pb2_grpc as controller_grpc
from dkron_pb.plugin import grpc_stdio_pb2 as stdio_pb
from dkron_pb.plugin import grpc_stdio_pb2_grpc as stdio_grpc
from dkron_pb.types.legacy import executor_legacy_pb2_grpc as legacy_grpc
from dkron_pb.types.v1 import executor_pb2 as pb
from dkron_pb.types.v1 import executor_pb2_grpc as v1_grpc
from plugin_sdk.protocol import DKRON_HANDSHAKE

COOKIE = {DKRON_HANDSHAKE.cookie_key: DKRON_HANDSHAKE.cookie_value}
DEADLINE = 10.0
UNIX_LINE = re.compile(r"1\|1\|unix\|(/[^|]+)\|grpc\|\n")

EXECUTOR = """
import sys

from plugin_sdk import ExecuteResponse, serve


def execute(request, status):
    mode = request.config.get("mode", "")
    if mode == "raise":
        raise ValueError("kaboom from the executor")
    if mode == "print":
        print(request.config["text"])
        sys.stdout.flush()
    replies = [status.update(b"first chunk"), status.update("second chunk", is_error=True)]
    return ExecuteResponse(output=f"done {request.job_name} {replies}".encode())


serve(execute)
"""


def _read_line(stream: IO[bytes], timeout: float = DEADLINE) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no stdout line within {timeout}s"
    return stream.readline()


@dataclass
class Plugin:
    process: subprocess.Popen[bytes]
    stderr_path: Path
    line: str = ""
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def socket_path(self) -> str:
        fields = self.line.split("|")
        assert fields[2] == "unix", f"not a unix handshake: {self.line!r}"
        return fields[3]

    def channel(self, target: str | None = None) -> grpc.Channel:
        channel = grpc.insecure_channel(target or f"unix:{self.socket_path}")
        grpc.channel_ready_future(channel).result(timeout=DEADLINE)
        self.channels.append(channel)
        return channel

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@pytest.fixture
def plugin_script(python_plugin: Callable[[str, str], Path]) -> Path:
    return python_plugin("dkron-executor-wire", EXECUTOR)


@pytest.fixture
def start(plugin_script: Path, tmp_path: Path) -> Iterator[Callable[..., Plugin]]:
    started: list[Plugin] = []

    def launch(env: dict[str, str] | None = None, *, handshake: bool = True) -> Plugin:
        stderr_path = tmp_path / f"stderr-{len(started)}"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [str(plugin_script)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, **(COOKIE if env is None else env)},
            )
        plugin = Plugin(process, stderr_path)
        started.append(plugin)
        if handshake:
            assert process.stdout is not None
            plugin.line = _read_line(process.stdout).decode()
        return plugin

    yield launch
    for plugin in started:
        for channel in plugin.channels:
            channel.close()
        if plugin.process.poll() is None:
            plugin.process.terminate()  # SIGTERM: the plugin removes its socket file
            try:
                plugin.process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                plugin.process.kill()
        plugin.process.wait(timeout=DEADLINE)
        if plugin.line.startswith("1|1|unix|"):
            assert not os.path.exists(plugin.socket_path), "plugin left its socket behind"
        if plugin.process.stdout is not None:
            plugin.process.stdout.close()


class RawBrokerStream:
    """The host's end of StartStream, fed from a queue so it never half-closes."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._outgoing: queue.Queue[broker_pb.ConnInfo | None] = queue.Queue()
        self.incoming: queue.Queue[broker_pb.ConnInfo] = queue.Queue()
        self._call = broker_grpc.GRPCBrokerStub(channel).StartStream(self._requests())
        threading.Thread(target=self._read, daemon=True).start()

    def _requests(self) -> Iterator[broker_pb.ConnInfo]:
        while True:
            item = self._outgoing.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for info in self._call:
                self.incoming.put(info)
        except grpc.RpcError:
            pass

    def send(self, info: broker_pb.ConnInfo) -> None:
        self._outgoing.put(info)

    def close(self) -> None:
        self._outgoing.put(None)
        self._call.cancel()


class StatusRecorder:
    """A host-side StatusHelper on its own unix socket, the way a Go host serves it."""

    def __init__(self, *, legacy: bool) -> None:
        self.updates: list[tuple[bytes, bool]] = []
        self.got_two = threading.Event()
        self.folder = tempfile.mkdtemp(prefix="wire-")  # short: sun_path is 108 bytes
        self.path = os.path.join(self.folder, "status")
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        if legacy:
            legacy_grpc.add_StatusHelperServicer_to_server(self, self.server)
        else:
            v1_grpc.add_StatusHelperServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix:{self.path}")
        self.server.start()

    def Update(
        self, request: pb.StatusUpdateRequest, context: grpc.ServicerContext
    ) -> pb.StatusUpdateResponse:
        self.updates.append((request.output, request.error))
        if len(self.updates) >= 2:
            self.got_two.set()
        return pb.StatusUpdateResponse(r=40 + len(self.updates))

    def stop(self) -> None:
        self.server.stop(None).wait()
        if os.path.exists(self.path):
            os.unlink(self.path)
        os.rmdir(self.folder)


@pytest.fixture
def status_v1() -> Iterator[StatusRecorder]:
    recorder = StatusRecorder(legacy=False)
    yield recorder
    recorder.stop()


@pytest.fixture
def status_legacy() -> Iterator[StatusRecorder]:
    recorder = StatusRecorder(legacy=True)
    yield recorder
    recorder.stop()


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.02)


def _health(channel: grpc.Channel, service: str = "plugin") -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE
    )
    return int(reply.status)


def _announce(stream: RawBrokerStream, service_id: int, path: str) -> None:
    stream.send(broker_pb.ConnInfo(service_id=service_id, network="unix", address=path))


# -- handshake and health -------------------------------------------------------------------


def test_first_stdout_line_is_the_exact_handshake(start: Callable[..., Plugin]) -> None:
    plugin = start()
    match = UNIX_LINE.fullmatch(plugin.line)
    assert match, plugin.line
    assert stat.S_ISSOCK(os.stat(match.group(1)).st_mode)
    # stdout is the handshake's alone: the plugin closes it right after.
    assert plugin.process.stdout is not None
    assert _read_line(plugin.process.stdout) == b""


def test_health_reports_plugin_serving(start: Callable[..., Plugin]) -> None:
    channel = start().channel()
    assert _health(channel, "plugin") == health_pb2.HealthCheckResponse.SERVING
    assert _health(channel, "") == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        _health(channel, "no-such-service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_multiplex_request_gets_a_seventh_field_false(start: Callable[..., Plugin]) -> None:
    plugin = start({**COOKIE, "PLUGIN_MULTIPLEX_GRPC": "true"})
    assert re.fullmatch(r"1\|1\|unix\|/[^|]+\|grpc\|\|false\n", plugin.line), plugin.line


def test_tcp_listener_honours_the_port_range(start: Callable[..., Plugin]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        low = probe.getsockname()[1]
    high = low + 20
    plugin = start(
        {
            **COOKIE,
            "DKRON_PLUGIN_NETWORK": "tcp",
            "PLUGIN_MIN_PORT": str(low),
            "PLUGIN_MAX_PORT": str(high),
        }
    )
    match = re.fullmatch(r"1\|1\|tcp\|127\.0\.0\.1:(\d+)\|grpc\|\n", plugin.line)
    assert match, plugin.line
    assert low <= int(match.group(1)) <= high
    channel = plugin.channel(f"127.0.0.1:{match.group(1)}")
    assert _health(channel) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("cookie", [None, "not-the-cookie"])
def test_missing_or_wrong_cookie_explains_on_stderr_only(
    start: Callable[..., Plugin], cookie: str | None
) -> None:
    env = {} if cookie is None else {DKRON_HANDSHAKE.cookie_key: cookie}
    plugin = start(env, handshake=False)
    stdout, _ = plugin.process.communicate(timeout=DEADLINE)
    assert plugin.process.returncode == 1
    assert stdout == b""
    assert "This binary is a plugin" in plugin.stderr()


def _signal_mask(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = re.search(rf"^{field}:\s*([0-9a-f]+)$", status, re.M)
    assert mask, status
    return int(mask.group(1), 16)


def test_sigint_is_ignored(start: Callable[..., Plugin]) -> None:
    plugin = start()
    channel = plugin.channel()
    pid, bit = plugin.process.pid, 1 << (signal.SIGINT - 1)
    # Not the default action (ignored or caught; SDK plugins catch it so jobs they
    # exec do not inherit an ignored SIGINT).
    assert (_signal_mask(pid, "SigIgn") | _signal_mask(pid, "SigCgt")) & bit
    plugin.process.send_signal(signal.SIGINT)
    assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    reply = v1_grpc.ExecutorServiceStub(channel).Execute(
        pb.ExecuteRequest(job_name="after-sigint"), timeout=DEADLINE
    )
    assert reply.output.startswith(b"done after-sigint")
    # Shutdown makes the main thread run again, and pending Python signal handlers run
    # first: a KeyboardInterrupt there would end the process with -2 or 1, not 0.
    controller_grpc.GRPCControllerStub(channel).Shutdown(controller_pb.Empty(), timeout=DEADLINE)
    assert plugin.process.wait(timeout=DEADLINE) == 0


# -- broker and StatusHelper ------------------------------------------------------------------


def test_execute_streams_to_an_announced_status_helper(
    start: Callable[..., Plugin], status_v1: StatusRecorder
) -> None:
    channel = start().channel()
    stream = RawBrokerStream(channel)
    try:
        _announce(stream, 7, status_v1.path)
        reply = v1_grpc.ExecutorServiceStub(channel).Execute(
            pb.ExecuteRequest(job_name="wired", config={"k": "v"}, status_server=7),
            timeout=DEADLINE,
        )
    finally:
        stream.close()
    assert status_v1.updates == [(b"first chunk", False), (b"second chunk", True)]
    # The plugin hands back what our StatusHelper replied.
    assert reply.output == b"done wired [41, 42]"
    assert reply.error == ""


def test_announcement_may_arrive_after_execute(
    start: Callable[..., Plugin], status_v1: StatusRecorder
) -> None:
    plugin = start({**COOKIE, "DKRON_PLUGIN_LOG_LEVEL": "DEBUG"})
    channel = plugin.channel()
    stream = RawBrokerStream(channel)
    try:
        call = v1_grpc.ExecutorServiceStub(channel).Execute.future(
            pb.ExecuteRequest(job_name="late", status_server=7), timeout=DEADLINE
        )
        # Announce only once the plugin is provably inside Execute, waiting for id 7.
        _wait_until(
            lambda: (
                re.search(r"waiting for connection info.*\"service_id\":7", plugin.stderr())
                is not None
            ),
            "the plugin to wait for broker id 7",
        )
        assert not call.done()
        _announce(stream, 7, status_v1.path)
        reply = call.result(timeout=DEADLINE)
    finally:
        stream.close()
    assert reply.output == b"done late [41, 42]"
    assert [chunk for chunk, _ in status_v1.updates] == [b"first chunk", b"second chunk"]


def test_legacy_names_work_end_to_end(
    start: Callable[..., Plugin], status_legacy: StatusRecorder
) -> None:
    channel = start().channel()
    stream = RawBrokerStream(channel)
    try:
        _announce(stream, 3, status_legacy.path)
        reply = legacy_grpc.ExecutorStub(channel).Execute(
            pb.ExecuteRequest(job_name="old-host", status_server=3), timeout=DEADLINE
        )
    finally:
        stream.close()
    assert status_legacy.updates == [(b"first chunk", False), (b"second chunk", True)]
    assert reply.output == b"done old-host [41, 42]"


def test_knock_is_refused_on_the_stream(start: Callable[..., Plugin]) -> None:
    channel = start().channel()
    stream = RawBrokerStream(channel)
    try:
        stream.send(broker_pb.ConnInfo(service_id=9, knock=broker_pb.ConnInfo.Knock(knock=True)))
        answer = stream.incoming.get(timeout=DEADLINE)
    finally:
        stream.close()
    assert answer.service_id == 9
    assert answer.knock.knock and answer.knock.ack
    assert "multiplexing not supported" in answer.knock.error


def test_executor_exception_becomes_execute_error(start: Callable[..., Plugin]) -> None:
    channel = start().channel()
    reply = v1_grpc.ExecutorServiceStub(channel).Execute(
        pb.ExecuteRequest(job_name="bad", config={"mode": "raise"}), timeout=DEADLINE
    )
    assert reply.error == "executor raised ValueError: kaboom from the executor"
    assert reply.output == b""


# -- stdio and lifecycle ----------------------------------------------------------------------


def test_stdout_after_handshake_goes_to_stream_stdio(start: Callable[..., Plugin]) -> None:
    plugin = start()
    channel = plugin.channel()
    chunks: queue.Queue[stdio_pb.StdioData] = queue.Queue()
    stdio = stdio_grpc.GRPCStdioStub(channel).StreamStdio(empty_pb2.Empty())

    def read() -> None:
        try:
            for data in stdio:
                chunks.put(data)
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    try:
        v1_grpc.ExecutorServiceStub(channel).Execute(
            pb.ExecuteRequest(job_name="p", config={"mode": "print", "text": "hello via stdio"}),
            timeout=DEADLINE,
        )
        received = b""
        while b"hello via stdio\n" not in received:
            data = chunks.get(timeout=DEADLINE)
            assert data.channel == stdio_pb.StdioData.STDOUT
            received += data.data
    finally:
        stdio.cancel()
    assert plugin.process.stdout is not None
    assert _read_line(plugin.process.stdout) == b"", "printed text leaked onto raw stdout"


def test_controller_shutdown_exits_zero_and_removes_the_socket(
    start: Callable[..., Plugin],
) -> None:
    plugin = start()
    channel = plugin.channel()
    stream = RawBrokerStream(channel)  # an open broker stream must not delay the exit
    began = time.monotonic()
    try:
        controller_grpc.GRPCControllerStub(channel).Shutdown(
            controller_pb.Empty(), timeout=DEADLINE
        )
        assert plugin.process.wait(timeout=DEADLINE) == 0
    finally:
        stream.close()
    assert time.monotonic() - began < 2.0
    assert not os.path.exists(plugin.socket_path)


# The subreaper adopts the orphaned plugin, so the test can reap it and read its exit status.
_REAPER = r"""
import ctypes, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
parent = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print("parent", parent.pid, flush=True)
parent.wait()
pid, status = os.wait()
print("reaped", pid, os.waitstatus_to_exitcode(status), flush=True)
"""
_PARENT = r"""
import subprocess, sys
plugin = subprocess.Popen([sys.argv[1]], stdout=subprocess.PIPE)
print("plugin", plugin.pid, plugin.stdout.readline().decode().strip(), flush=True)
plugin.wait()
"""


def test_plugin_exits_when_its_parent_dies(plugin_script: Path, tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("wb") as stderr:
        reaper = subprocess.Popen(
            [sys.executable, "-c", _REAPER, _PARENT, str(plugin_script)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, **COOKIE},
        )
    assert reaper.stdout is not None
    lines: dict[str, list[str]] = {}
    plugin_pid = 0
    try:
        while "parent" not in lines or "plugin" not in lines:
            tag, *rest = _read_line(reaper.stdout).decode().split()
            lines[tag] = rest
        parent_pid, plugin_pid = int(lines["parent"][0]), int(lines["plugin"][0])
        assert UNIX_LINE.fullmatch(lines["plugin"][1] + "\n")
        os.kill(parent_pid, signal.SIGKILL)
        # The plugin polls its parent every second, then shuts down by itself.
        tag, pid, code = _read_line(reaper.stdout, timeout=5.0).decode().split()
        assert (tag, int(pid), int(code)) == ("reaped", plugin_pid, 0)
        assert not os.path.exists(f"/proc/{plugin_pid}")
        assert reaper.wait(timeout=DEADLINE) == 0
    finally:
        for pid in (plugin_pid, reaper.pid):
            if pid and os.path.exists(f"/proc/{pid}"):
                os.kill(pid, signal.SIGKILL)
        reaper.wait(timeout=DEADLINE)
        reaper.stdout.close()
