"""The builtin processors log, files and syslog: as real plugin binaries and in-process."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pluggy
import pytest
from support import installed_script

from builtin_plugins import files_processor, log_processor, syslog_processor
from builtin_plugins._forward import parse_bool
from plugin_sdk import Execution, hookspecs
from plugin_sdk.testing import PluginHarness

STARTED = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
KEY = "1714979289123456000-node-1"
UDP_HEADER = re.compile(
    rb"^<78>(?P<stamp>\S+) (?P<host>\S+) dkron\[(?P<pid>\d+)\]: (?P<body>.*)\Z", re.DOTALL
)
UNIX_HEADER = re.compile(
    rb"^<78>(?P<stamp>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) dkron\[(?P<pid>\d+)\]: "
    rb"(?P<body>.*)\Z",
    re.DOTALL,
)


def make_execution(
    *, success: bool = True, output: bytes = b"hello\nworld", node: str = "node-1"
) -> Execution:
    return Execution(
        job_name="backup",
        success=success,
        output=output,
        node_name=node,
        group=7,
        attempt=2,
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=3),
    )


def assert_same_apart_from_output(got: Execution, sent: Execution) -> None:
    assert (got.job_name, got.success, got.node_name, got.group, got.attempt) == (
        sent.job_name,
        sent.success,
        sent.node_name,
        sent.group,
        sent.attempt,
    )
    assert got.started_at == sent.started_at
    assert got.finished_at == sent.finished_at


class RecordCollector(logging.Handler):
    """Collects log records from any thread; tests wait on it with a deadline."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[logging.LogRecord], bool], timeout: float = 10.0
    ) -> logging.LogRecord:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [r.getMessage() for r in self.records]
                    raise AssertionError(f"no matching log record within {timeout}s; saw {seen}")
                self._changed.wait(remaining)

    def messages(self) -> list[str]:
        with self._changed:
            return [r.getMessage() for r in self.records]


@pytest.fixture(scope="module")
def log_plugin() -> Iterator[PluginHarness]:
    with PluginHarness(installed_script("dkron-processor-log")) as harness:
        yield harness


@pytest.fixture(scope="module")
def files_plugin() -> Iterator[PluginHarness]:
    with PluginHarness(installed_script("dkron-processor-files")) as harness:
        yield harness


@pytest.fixture(scope="module")
def syslog_plugin() -> Iterator[PluginHarness]:
    with PluginHarness(installed_script("dkron-processor-syslog")) as harness:
        yield harness


@pytest.fixture
def mirrored_log() -> Iterator[RecordCollector]:
    """What the host logs for the log plugin (GRPCStdio is mirrored there at INFO)."""
    logger = logging.getLogger("dkron.plugin.dkron-processor-log")
    collector = RecordCollector()
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(collector)
    yield collector
    logger.removeHandler(collector)
    logger.setLevel(previous)


@pytest.fixture
def udp_collector() -> Iterator[socket.socket]:
    """A real syslog receiver: a UDP socket on an ephemeral port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    yield sock
    sock.close()


@pytest.fixture
def unix_collector() -> Iterator[tuple[socket.socket, str]]:
    """A real local syslog socket (like /dev/log), in a short dir: sun_path is 108 bytes."""
    folder = tempfile.mkdtemp(prefix="dksl-")
    path = os.path.join(folder, "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5.0)
    yield sock, path
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pm() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("dkron")
    manager.add_hookspecs(hookspecs)
    for module in (log_processor, files_processor, syslog_processor):
        manager.register(module.plugin)
    return manager


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"{host}:{port}"


# -- forward (Go ParseBool) -------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "t", "T", "TRUE", "true", "True"])
def test_parse_bool_true_spellings(raw: str) -> None:
    assert parse_bool({"forward": raw}, "forward") is True


@pytest.mark.parametrize("raw", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_false_spellings(raw: str) -> None:
    assert parse_bool({"forward": raw}, "forward", default=True) is False


def test_parse_bool_absent_or_empty_is_default() -> None:
    assert parse_bool({}, "forward") is False
    assert parse_bool({"forward": ""}, "forward", default=True) is True


@pytest.mark.parametrize("raw", ["yes", "TrUe", " true", "2", "on"])
def test_parse_bool_rejects_other_values(raw: str) -> None:
    with pytest.raises(ValueError, match=rf"invalid value {re.escape(repr(raw))} for 'forward'"):
        parse_bool({"forward": raw}, "forward")


# -- log (binary) -----------------------------------------------------------------------


def test_log_success_goes_to_stdout_and_output_is_replaced(
    log_plugin: PluginHarness, mirrored_log: RecordCollector
) -> None:
    sent = make_execution(output=b"line one\nline two")
    got = log_plugin.process(sent, forward="false", reporting_node="leader-1", other="x")

    assert got.output == b"Output in dkron log"
    assert_same_apart_from_output(got, sent)
    record = mirrored_log.wait_for(lambda r: f"execution={KEY}" in r.getMessage())
    assert record.getMessage() == (
        f"----- BEGIN OUTPUT job=backup execution={KEY} -----\n"
        "line one\nline two\n"
        "----- END OUTPUT -----"
    )
    assert record.levelno == logging.INFO
    assert getattr(record, "stream", None) == "stdout"


def test_log_failure_goes_to_stderr_and_forward_keeps_output(
    log_plugin: PluginHarness, mirrored_log: RecordCollector
) -> None:
    sent = make_execution(success=False, output=b"boom", node="node-9")
    got = log_plugin.process(sent, forward="true")

    assert got.output == b"boom"
    assert_same_apart_from_output(got, sent)
    record = mirrored_log.wait_for(
        lambda r: "execution=1714979289123456000-node-9" in r.getMessage()
    )
    assert record.getMessage().endswith("-----\nboom\n----- END OUTPUT -----")
    assert getattr(record, "stream", None) == "stderr"


def test_log_invalid_forward_is_an_error_and_prints_nothing(
    log_plugin: PluginHarness, mirrored_log: RecordCollector
) -> None:
    rejected = make_execution(node="rejected")
    with pytest.raises(RuntimeError, match=r"ValueError: invalid value 'maybe' for 'forward'"):
        log_plugin.process(rejected, forward="maybe")

    # Stdio is one ordered stream: a block from the rejected call would arrive first.
    log_plugin.process(make_execution(node="accepted"), forward="0")
    mirrored_log.wait_for(lambda r: "-accepted -----" in r.getMessage())
    assert not [m for m in mirrored_log.messages() if "-rejected" in m]


# -- files (binary) ---------------------------------------------------------------------


def test_files_writes_log_with_mode_0644_and_returns_path(
    files_plugin: PluginHarness, tmp_path: Path
) -> None:
    log_dir = tmp_path / "nested" / "logs"  # missing: the processor creates it
    sent = make_execution(output=b"payload \x00\xff bytes\n")
    got = files_plugin.process(sent, log_dir=str(log_dir), reporting_node="leader-1")

    expected = log_dir / f"{KEY}.log"
    assert got.output == os.fsencode(expected)
    assert_same_apart_from_output(got, sent)
    assert expected.read_bytes() == b"payload \x00\xff bytes\n"
    assert stat.S_IMODE(expected.stat().st_mode) == 0o644
    assert sorted(p.name for p in log_dir.iterdir()) == [expected.name]  # no temp leftovers


def test_files_forward_keeps_output_and_still_writes(
    files_plugin: PluginHarness, tmp_path: Path
) -> None:
    got = files_plugin.process(make_execution(output=b"kept"), log_dir=str(tmp_path), forward="T")

    assert got.output == b"kept"
    assert (tmp_path / f"{KEY}.log").read_bytes() == b"kept"


@pytest.mark.parametrize("node", ["../../escape", "/etc/passwd", "..", "a/../../b", "x\x00y"])
def test_files_node_name_cannot_leave_log_dir(
    files_plugin: PluginHarness, tmp_path: Path, node: str
) -> None:
    log_dir = tmp_path / "a" / "b" / "logs"
    got = files_plugin.process(make_execution(output=b"contained", node=node), log_dir=str(log_dir))

    written = Path(os.fsdecode(got.output))
    assert written.parent == log_dir
    assert written.read_bytes() == b"contained"
    every_file = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert every_file == [written]


def test_files_directory_under_a_regular_file_is_a_clear_error(
    files_plugin: PluginHarness, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a directory")
    log_dir = blocker / "logs"

    with pytest.raises(RuntimeError, match=r"cannot create log_dir '.*/blocker/logs': Not a direc"):
        files_plugin.process(make_execution(), log_dir=str(log_dir))
    assert blocker.read_bytes() == b"not a directory"


def test_files_log_dir_that_is_a_file_is_a_clear_error(
    files_plugin: PluginHarness, tmp_path: Path
) -> None:
    target = tmp_path / "logs"
    target.write_bytes(b"keep me")

    with pytest.raises(RuntimeError, match=r"files processor: cannot create log_dir '.*/logs'"):
        files_plugin.process(make_execution(), log_dir=str(target))
    assert target.read_bytes() == b"keep me"


def test_files_invalid_forward_writes_nothing(files_plugin: PluginHarness, tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    with pytest.raises(RuntimeError, match=r"invalid value 'nope' for 'forward'"):
        files_plugin.process(make_execution(), log_dir=str(log_dir), forward="nope")
    assert not log_dir.exists()


def test_files_overwrite_resets_mode_whatever_the_umask(tmp_path: Path) -> None:
    existing = tmp_path / f"{KEY}.log"
    existing.write_bytes(b"old")
    existing.chmod(0o600)
    old_umask = os.umask(0o077)
    try:
        got = files_processor.processor.process(
            make_execution(output=b"new"), {"log_dir": str(tmp_path)}
        )
    finally:
        os.umask(old_umask)
    assert got.output == os.fsencode(existing)
    assert existing.read_bytes() == b"new"
    assert stat.S_IMODE(existing.stat().st_mode) == 0o644


def test_log_file_name_keeps_safe_keys_and_separates_rewritten_ones() -> None:
    assert files_processor.log_file_name(KEY) == f"{KEY}.log"
    slash = files_processor.log_file_name("1-a/b")
    underscore = files_processor.log_file_name("1-a_b")
    assert "/" not in slash and slash != underscore
    long_name = files_processor.log_file_name("1-" + "n" * 1000)
    assert len(long_name.encode()) <= 255 and long_name.endswith(".log")
    assert files_processor.log_file_name("..") not in ("..", "...log")


# -- syslog (binary) --------------------------------------------------------------------


def test_syslog_sends_cron_info_with_tag_over_udp(
    syslog_plugin: PluginHarness, udp_collector: socket.socket
) -> None:
    sent = make_execution(output=b"backup done\n2 files")
    got = syslog_plugin.process(sent, address=_address(udp_collector), reporting_node="leader")

    assert got.output == b"Output in syslog"
    assert_same_apart_from_output(got, sent)
    datagram = udp_collector.recv(65535)
    match = UDP_HEADER.match(datagram)
    assert match is not None, datagram
    assert match["body"] == b"backup done\n2 files\n"
    assert int(match["pid"]) == syslog_plugin.client.process.pid
    assert match["host"] == socket.gethostname().encode()
    datetime.fromisoformat(match["stamp"].decode().replace("Z", "+00:00"))  # RFC 3339


def test_syslog_forward_keeps_output(
    syslog_plugin: PluginHarness, udp_collector: socket.socket
) -> None:
    got = syslog_plugin.process(
        make_execution(output=b"kept"), address=_address(udp_collector), forward="1"
    )
    assert got.output == b"kept"
    assert udp_collector.recv(65535).endswith(
        b"dkron[%d]: kept\n" % syslog_plugin.client.process.pid
    )


def test_syslog_local_unix_socket(
    syslog_plugin: PluginHarness, unix_collector: tuple[socket.socket, str]
) -> None:
    sock, path = unix_collector
    got = syslog_plugin.process(make_execution(output=b"to local syslog"), address=path)

    assert got.output == b"Output in syslog"
    match = UNIX_HEADER.match(sock.recv(65535))
    assert match is not None
    assert match["body"] == b"to local syslog\n"
    assert int(match["pid"]) == syslog_plugin.client.process.pid


def test_syslog_unreachable_socket_is_a_clear_error(
    syslog_plugin: PluginHarness, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-log"
    with pytest.raises(RuntimeError, match=r"cannot reach syslog at '.*/no-such-log'"):
        syslog_plugin.process(make_execution(), address=str(missing))


@pytest.mark.parametrize("address", ["nonsense", "host:", ":514", "host:99999", "dev/log"])
def test_syslog_invalid_address_names_the_key(syslog_plugin: PluginHarness, address: str) -> None:
    with pytest.raises(RuntimeError, match=rf"invalid value '{re.escape(address)}' for 'address'"):
        syslog_plugin.process(make_execution(), address=address)


def test_syslog_invalid_forward_is_an_error(syslog_plugin: PluginHarness) -> None:
    with pytest.raises(RuntimeError, match=r"invalid value 'sure' for 'forward'"):
        syslog_plugin.process(make_execution(), address="127.0.0.1:9", forward="sure")


def test_syslog_long_output_is_split_not_truncated(udp_collector: socket.socket) -> None:
    lines = [f"line {i:05d} " + "é" * 40 for i in range(400)]  # ~35 KB, multi-byte
    output = "\n".join(lines).encode() + b"\n" + "ü".encode() * 9000  # plus one huge line
    syslog_processor.processor.process(
        make_execution(output=output), {"address": _address(udp_collector)}
    )

    bodies: list[bytes] = []
    received = ""
    while received.count("ü") < 9000:
        datagram = udp_collector.recv(65535)
        match = UDP_HEADER.match(datagram)
        assert match is not None
        assert len(match["body"]) <= syslog_processor.MAX_MESSAGE_BYTES + 1  # + newline
        bodies.append(match["body"])
        received += match["body"].decode("utf-8")  # every piece is valid UTF-8 on its own
    assert len(bodies) > 4
    received_lines = received.split("\n")
    assert received_lines[:400] == lines  # cut between lines, never inside one
    assert "".join(received_lines[400:]) == "ü" * 9000  # the long line, in pieces, all there


# -- in-process, through pluggy ---------------------------------------------------------


def test_pluggy_lists_the_three_processors(pm: pluggy.PluginManager) -> None:
    names = [name for names in pm.hook.dkron_processor_names() for name in names]
    assert sorted(names) == ["files", "log", "syslog"]


def test_pluggy_log_prints_block_and_replaces_output(
    pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = make_execution(output=b"in process")
    got = pm.hook.dkron_process(
        processor="log", execution=sent, config={"reporting_node": "leader-1"}
    )

    assert got.output == b"Output in dkron log"
    assert_same_apart_from_output(got, sent)
    assert sent.output == b"in process"  # the caller's execution is not mutated
    captured = capsys.readouterr()
    assert captured.out == (
        f"----- BEGIN OUTPUT job=backup execution={KEY} -----\nin process\n----- END OUTPUT -----\n"
    )
    assert captured.err == ""


def test_pluggy_log_failure_goes_to_stderr(
    pm: pluggy.PluginManager, capsys: pytest.CaptureFixture[str]
) -> None:
    got = pm.hook.dkron_process(
        processor="log", execution=make_execution(success=False), config={"forward": "true"}
    )
    assert got.output == b"hello\nworld"
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "-----\nhello\nworld\n----- END OUTPUT -----\n" in captured.err


def test_pluggy_files(pm: pluggy.PluginManager, tmp_path: Path) -> None:
    got = pm.hook.dkron_process(
        processor="files", execution=make_execution(), config={"log_dir": str(tmp_path / "d")}
    )
    path = tmp_path / "d" / f"{KEY}.log"
    assert got.output == os.fsencode(path)
    assert path.read_bytes() == b"hello\nworld"


def test_pluggy_syslog(pm: pluggy.PluginManager, udp_collector: socket.socket) -> None:
    got = pm.hook.dkron_process(
        processor="syslog",
        execution=make_execution(output=b"via pluggy"),
        config={"address": _address(udp_collector), "forward": "false"},
    )
    assert got.output == b"Output in syslog"
    match = UDP_HEADER.match(udp_collector.recv(65535))
    assert match is not None
    assert match["body"] == b"via pluggy\n"
    assert int(match["pid"]) == os.getpid()


def test_pluggy_unknown_processor_gets_no_answer(pm: pluggy.PluginManager) -> None:
    assert pm.hook.dkron_process(processor="fluent", execution=make_execution(), config={}) is None


@pytest.mark.parametrize("name", ["log", "files", "syslog"])
def test_pluggy_invalid_forward_raises(pm: pluggy.PluginManager, tmp_path: Path, name: str) -> None:
    config = {"forward": "yes", "log_dir": str(tmp_path / "logs"), "address": "127.0.0.1:9"}
    with pytest.raises(ValueError, match=r"invalid value 'yes' for 'forward'"):
        pm.hook.dkron_process(processor=name, execution=make_execution(), config=config)
    assert not (tmp_path / "logs").exists()
