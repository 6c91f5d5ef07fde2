"""The shell executor, driven through the real go-plugin protocol by its installed binary."""

from __future__ import annotations

import base64
import grp
import hashlib
import importlib
import json
import os
import pwd
import re
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from support import installed_script

from plugin_sdk.protocol import PluginClient
from plugin_sdk.testing import ExecutionResult, PluginHarness

PY = shlex.quote(sys.executable)


@pytest.fixture(scope="module")
def plugin() -> Iterator[PluginHarness]:
    with PluginHarness(installed_script("dkron-executor-shell")) as harness:
        yield harness


@pytest.fixture(scope="module")
def shell_module() -> Iterator[ModuleType]:
    # Importing the plugin module sets GRPC_ENABLE_FORK_SUPPORT; keep this process unchanged.
    saved = dict(os.environ)
    module = importlib.import_module("builtin_plugins.shell")
    os.environ.clear()
    os.environ.update(saved)
    yield module


def run(plugin: PluginHarness, job_name: str = "test-job", **config: str) -> ExecutionResult:
    return plugin.execute(job_name, config=config, deadline=60.0)


def alive(pid: int) -> bool:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return data[data.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def wait_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def children_of(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            data = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        if int(data[data.rfind(b")") + 2 :].split()[1]) == pid:
            found.append(int(name))
    return found


# -- basics --------------------------------------------------------------------------------


def test_success_output_and_stream(plugin: PluginHarness) -> None:
    result = run(plugin, command="echo hello world")
    assert result.error == ""
    assert result.output == b"hello world\n"
    assert result.updates == [(b"hello world\n", False)]


def test_exit_status_fails_but_keeps_output(plugin: PluginHarness) -> None:
    result = run(plugin, command="sh -c 'echo partial; exit 3'")
    assert result.error == "exit status 3"
    assert result.output == b"partial\n"


def test_stderr_is_captured_and_flagged(plugin: PluginHarness) -> None:
    result = run(plugin, command="sh -c 'echo out; echo err >&2'")
    assert result.error == ""
    assert sorted(result.output.splitlines()) == [b"err", b"out"]
    assert (b"out\n", False) in result.updates
    assert (b"err\n", True) in result.updates
    assert b"".join(chunk for chunk, _ in result.updates) == result.output


@pytest.mark.parametrize(
    ("command", "error"),
    [("kill -TERM $$", "signal: terminated"), ("kill -KILL $$", "signal: killed")],
)
def test_signal_errors_use_go_names(plugin: PluginHarness, command: str, error: str) -> None:
    result = run(plugin, command=command, shell="true")
    assert result.error == error
    assert result.output == b""


def test_env_job_name_is_set(plugin: PluginHarness) -> None:
    result = run(plugin, "nightly-backup", command="printenv ENV_JOB_NAME")
    assert result.error == ""
    assert result.output == b"nightly-backup\n"


def test_child_has_own_process_group_and_pipes_only(plugin: PluginHarness) -> None:
    script = (
        "import os, json; fds = sorted(os.listdir('/proc/self/fd'));"
        "links = {fd: os.readlink('/proc/self/fd/' + fd) for fd in ('0', '1', '2')};"
        "print(json.dumps([os.getpgid(0) == os.getpid(), fds, links]))"
    )
    result = run(plugin, command=f"{PY} -c {shlex.quote(script)}")
    assert result.error == ""
    own_group, fds, links = json.loads(result.output)
    assert own_group is True
    assert fds == ["0", "1", "2", "3"]  # 3 is listdir's own descriptor
    assert links["0"] == "/dev/null"
    plugin_pid = plugin.client.process.pid
    plugin_out = {os.readlink(f"/proc/{plugin_pid}/fd/{fd}") for fd in (1, 2)}
    for fd in ("1", "2"):
        assert links[fd].startswith("pipe:")
        assert links[fd] not in plugin_out


def test_handshake_variables_do_not_leak_into_jobs(plugin: PluginHarness) -> None:
    result = run(plugin, command="env")
    assert result.error == ""
    names = {line.split(b"=", 1)[0] for line in result.output.splitlines()}
    assert b"DKRON_PLUGIN_MAGIC_COOKIE" not in names
    assert not any(name.startswith(b"PLUGIN_") for name in names)
    assert b"GRPC_ENABLE_FORK_SUPPORT" not in names
    assert b"PATH" in names  # the rest of the environment is inherited


def test_children_are_reaped(plugin: PluginHarness) -> None:
    for _ in range(3):
        assert run(plugin, command="true").error == ""
    assert children_of(plugin.client.process.pid) == []


# -- command and shell ---------------------------------------------------------------------


@pytest.mark.parametrize("config", [{}, {"command": ""}, {"command": "   "}])
@pytest.mark.parametrize("shell", ["", "true"])
def test_command_missing(plugin: PluginHarness, config: dict[str, str], shell: str) -> None:
    result = run(plugin, **config, shell=shell)
    assert result.error == "shell: Command missing"
    assert result.output == b""


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
def test_shell_true_runs_bin_sh(plugin: PluginHarness, value: str) -> None:
    result = run(plugin, command="echo $((2 + 3)) | tr 5 x", shell=value)
    assert result.error == ""
    assert result.output == b"x\n"


@pytest.mark.parametrize("value", ["", "0", "f", "F", "FALSE", "false", "False"])
def test_shell_false_execs_directly(plugin: PluginHarness, value: str) -> None:
    result = run(plugin, command="echo $HOME | x * ;", shell=value)
    assert result.error == ""
    assert result.output == b"$HOME | x * ;\n"


def test_shell_false_splits_like_a_shell(plugin: PluginHarness) -> None:
    result = run(plugin, command="""printf '%s|' 'a  b' "c \\"d\\"" e\\ f""")
    assert result.error == ""
    assert result.output == b'a  b|c "d"|e f|'


def test_bad_shell_value_is_refused(plugin: PluginHarness) -> None:
    result = run(plugin, command="echo hi", shell="yes")
    assert result.error == 'shell: Error parsing "shell" value "yes": want true or false'
    assert result.output == b""


def test_unbalanced_quote_is_refused(plugin: PluginHarness) -> None:
    result = run(plugin, command="echo 'oops")
    assert result.error == "shell: Error parsing command: No closing quotation"


def test_missing_executable(plugin: PluginHarness) -> None:
    result = run(plugin, command="no-such-program-dkron --flag")
    assert result.error == 'exec: "no-such-program-dkron": executable file not found in $PATH'
    assert result.output == b""
    assert result.updates == []


def test_missing_executable_path(plugin: PluginHarness, tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = run(plugin, command=str(missing))
    assert result.error == f"fork/exec {missing}: no such file or directory"


def test_not_executable(plugin: PluginHarness, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    result = run(plugin, command=str(script))
    assert result.error == f"fork/exec {script}: permission denied"


# -- env and cwd ---------------------------------------------------------------------------


def test_env_is_added_and_overrides(plugin: PluginHarness) -> None:
    result = run(
        plugin,
        "envjob",
        command='echo "$A|$B|$HOME|$ENV_JOB_NAME"',
        shell="true",
        env="A=1, B=two words=yes,,HOME=/elsewhere,ENV_JOB_NAME=spoofed",
    )
    assert result.error == ""
    # Dkron appends ENV_JOB_NAME last, so the job's name wins.
    assert result.output == b"1|two words=yes|/elsewhere|envjob\n"


@pytest.mark.parametrize("entry", ["B", "=x"])
def test_env_entry_without_key_value_is_refused(plugin: PluginHarness, entry: str) -> None:
    result = run(plugin, command="true", env=f"A=1,{entry}")
    assert result.error == (
        f'shell: Error parsing env entry "{entry}": want KEY=VALUE '
        "(entries are separated by commas, so values cannot contain one)"
    )
    assert result.output == b""


def test_cwd(plugin: PluginHarness, tmp_path: Path) -> None:
    result = run(plugin, command="pwd", cwd=str(tmp_path))
    assert result.error == ""
    assert result.output == f"{tmp_path}\n".encode()


def test_missing_cwd(plugin: PluginHarness, tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    result = run(plugin, command="pwd", cwd=str(missing))
    assert result.error == f"chdir {missing}: no such file or directory"
    assert result.output == b""


# -- timeout -------------------------------------------------------------------------------


def test_timeout_kills_the_whole_group(plugin: PluginHarness, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    command = f"sleep 30 & echo $! > {pid_file}; wait"
    started = time.monotonic()
    result = run(plugin, command=command, shell="true", timeout="300ms")
    elapsed = time.monotonic() - started
    grandchild = int(pid_file.read_text())
    try:
        assert result.error == "signal: killed"
        assert (
            result.output
            == (
                f"shell: Job '{command}' execution time exceeding defined timeout 300ms. "
                "Job was killed"
            ).encode()
        )
        assert result.updates[-1] == (result.output, True)
        assert elapsed < 5
        assert wait_gone(grandchild), "the timeout left the grandchild running"
    finally:
        if alive(grandchild):
            os.kill(grandchild, 9)


def test_timeout_message_follows_output_on_its_own_line(plugin: PluginHarness) -> None:
    result = run(plugin, command="printf started; exec sleep 30", shell="1", timeout="0.25s")
    assert result.error == "signal: killed"
    assert result.output == (
        b"started\nshell: Job 'printf started; exec sleep 30' execution time exceeding "
        b"defined timeout 250ms. Job was killed"
    )


@pytest.mark.parametrize("timeout", ["1h2m3.5s", "300ms", "0", "0s", "10s", "+1m", ".5h"])
def test_timeout_not_reached(plugin: PluginHarness, timeout: str) -> None:
    result = run(plugin, command="echo quick", timeout=timeout)
    assert result.error == ""
    assert result.output == b"quick\n"


@pytest.mark.parametrize("timeout", ["2us", "2\u00b5s", "2\u03bcs", "0.002ms"])
def test_tiny_timeout_kills(plugin: PluginHarness, timeout: str) -> None:
    result = run(plugin, command="sleep 5", timeout=timeout)
    assert result.error == "signal: killed"
    assert (
        result.output
        == (
            "shell: Job 'sleep 5' execution time exceeding defined timeout 2\u00b5s. Job was killed"
        ).encode()
    )


@pytest.mark.parametrize(
    ("timeout", "detail"),
    [
        ("5", 'time: missing unit in duration "5"'),
        ("foreverandever", 'time: invalid duration "foreverandever"'),
        ("10 s", 'time: unknown unit " s" in duration "10 s"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("-1s", 'negative duration "-1s"'),
    ],
)
def test_bad_timeout(plugin: PluginHarness, timeout: str, detail: str) -> None:
    result = run(plugin, command="echo never", timeout=timeout)
    assert result.error == f"shell: Error parsing job timeout: {detail}"
    assert result.output == b""


def test_go_durations(shell_module: ModuleType) -> None:
    parse, fmt = shell_module.parse_go_duration, shell_module.format_go_duration
    assert parse("1h2m3.5s") == 3_723_500_000_000
    assert parse("300ms") == 300_000_000
    assert parse("2us") == parse("2\u00b5s") == parse("2\u03bcs") == 2_000
    assert parse(".5s") == 500_000_000
    assert parse("-1.5h") == -5_400_000_000_000
    assert fmt(3_723_500_000_000) == "1h2m3.5s"
    assert fmt(60_000_000_000) == "1m0s"
    assert fmt(3_600_000_000_000) == "1h0m0s"
    assert fmt(1_500_000_000) == "1.5s"
    assert fmt(300_000_000) == "300ms"
    assert fmt(2_000) == "2\u00b5s"
    assert fmt(1_500) == "1.5\u00b5s"
    assert fmt(7) == "7ns"
    assert fmt(0) == "0s"
    assert fmt(-1_000_000_000) == "-1s"
    with pytest.raises(ValueError, match="invalid duration"):
        parse("")
    with pytest.raises(ValueError, match="invalid duration"):
        parse("3000000h")  # overflows int64 nanoseconds, as in Go


# -- mem_limit -----------------------------------------------------------------------------

_HOG = f"{PY} -c \"import time; b = b'x' * (200 << 20); time.sleep(30)\""


def test_mem_limit_kills_a_hungry_tree(plugin: PluginHarness) -> None:
    # `; true` keeps sh as the parent, so the memory sits in a grandchild.
    command = f"{_HOG}; true"
    started = time.monotonic()
    result = run(plugin, command=command, shell="true", mem_limit="50MB")
    assert time.monotonic() - started < 10
    assert result.error == "signal: killed"
    match = re.fullmatch(
        rb"shell: Job '(.*)' memory usage \((\d+) bytes\) exceeding defined limit "
        rb"\(52428800 bytes\)\. Job was killed",
        result.output,
        re.DOTALL,
    )
    assert match is not None, result.output
    assert match.group(1) == command.encode()
    assert int(match.group(2)) > 200 << 20


@pytest.mark.parametrize("limit", ["1GB", "1.5g", "512m", "100 MB", "2tb", "1073741824", "4096K"])
def test_mem_limit_not_reached(plugin: PluginHarness, limit: str) -> None:
    result = run(plugin, command="echo small", mem_limit=limit)
    assert result.error == ""
    assert result.output == b"small\n"


@pytest.mark.parametrize(
    ("limit", "detail"),
    [
        ("0", "memory limit must be greater than 0"),
        ("0.0000001KB", "memory limit must be greater than 0"),
        ("abc", "invalid memory limit format: abc"),
        ("-5MB", "invalid memory limit format: -5MB"),
        ("1.2.3MB", "invalid memory limit format: 1.2.3MB"),
        ("5XB", "unsupported memory unit: XB (supported: B, KB, MB, GB, TB)"),
    ],
)
def test_bad_mem_limit(plugin: PluginHarness, limit: str, detail: str) -> None:
    result = run(plugin, command="echo never", mem_limit=limit)
    assert result.error == f"shell: Error parsing job memory limit: {detail}"
    assert result.output == b""


def test_mem_limit_units(shell_module: ModuleType) -> None:
    parse = shell_module.parse_mem_limit
    assert parse("512") == 512
    assert parse("512b") == 512
    assert parse("1k") == parse("1KB") == 1024
    assert parse("1.5M") == 1_572_864
    assert parse("2gb") == 2 << 30
    assert parse("1T") == 1 << 40


# -- su ------------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="su needs root")


@needs_root
def test_su_user(plugin: PluginHarness) -> None:
    nobody = pwd.getpwnam("nobody")
    result = run(plugin, command="sh -c 'echo $(id -u) $(id -g) $(id -G)'", su="nobody")
    assert result.error == ""
    # Supplementary groups are dropped, like Go's Credential.
    expected = f"{nobody.pw_uid} {nobody.pw_gid} {nobody.pw_gid}\n"
    assert result.output.decode() == expected


@needs_root
def test_su_user_and_group(plugin: PluginHarness) -> None:
    group = grp.getgrnam("nogroup")
    result = run(plugin, command="id -g", su="nobody:nogroup")
    assert result.error == ""
    assert result.output == f"{group.gr_gid}\n".encode()


@needs_root
def test_su_survives_many_runs(plugin: PluginHarness) -> None:
    # fork() in a gRPC process used to crash the child now and then before exec.
    errors = [run(plugin, command="true", su="nobody").error for _ in range(250)]
    assert errors == [""] * 250


@pytest.mark.parametrize(
    ("su", "error"),
    [
        ("no-such-user-dkron", 'shell: su: unknown user "no-such-user-dkron"'),
        ("nobody:no-such-group-dkron", 'shell: su: unknown group "no-such-group-dkron"'),
        (":nogroup", 'shell: Error parsing su ":nogroup": want user or user:group'),
        ("a:b:c", 'shell: Error parsing su "a:b:c": want user or user:group'),
    ],
)
def test_bad_su(plugin: PluginHarness, su: str, error: str) -> None:
    result = run(plugin, command="id", su=su)
    assert result.error == error
    assert result.output == b""


# -- payload -------------------------------------------------------------------------------


def test_payload_goes_to_stdin(plugin: PluginHarness) -> None:
    data = b"hello\x00\xffworld\n"
    result = run(plugin, command="cat", payload=base64.b64encode(data).decode())
    assert result.error == ""
    assert result.output == data


def test_large_payload_does_not_deadlock(plugin: PluginHarness) -> None:
    data = os.urandom(1 << 20)  # far beyond a pipe's buffer
    result = run(plugin, command="sha256sum", payload=base64.b64encode(data).decode())
    assert result.error == ""
    assert result.output.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_payload_with_line_breaks(plugin: PluginHarness) -> None:
    encoded = base64.encodebytes(b"x" * 100).decode()  # MIME style, wrapped at 76
    assert "\n" in encoded.strip()
    result = run(plugin, command="cat", payload=encoded)
    assert result.output == b"x" * 100


def test_payload_ignored_by_job(plugin: PluginHarness) -> None:
    result = run(plugin, command="echo ignored", payload=base64.b64encode(b"y" * 300_000).decode())
    assert result.error == ""
    assert result.output == b"ignored\n"


def test_no_payload_means_empty_stdin(plugin: PluginHarness) -> None:
    result = run(plugin, command="cat")
    assert result.error == ""
    assert result.output == b""


@pytest.mark.parametrize("payload", ["!!not base64!!", "aGVsbG8", "aGVs bG8="])
def test_bad_payload(plugin: PluginHarness, payload: str) -> None:
    result = run(plugin, command="cat", payload=payload)
    assert result.error.startswith("shell: Error decoding payload (want base64): ")
    assert result.output == b""


# -- output cap ----------------------------------------------------------------------------


def test_output_keeps_the_last_256000_bytes(
    plugin: PluginHarness, shell_module: ModuleType
) -> None:
    assert shell_module.MAX_OUTPUT_BYTES == 256_000
    script = "import sys; sys.stdout.write(''.join(f'{i:07d}\\n' for i in range(50000)))"
    result = run(plugin, command=f"{PY} -c {shlex.quote(script)}")
    full = "".join(f"{i:07d}\n" for i in range(50000)).encode()
    assert result.error == ""
    assert len(full) == 400_000
    assert result.output == full[-256_000:]
    # Live updates carry everything, not just the tail.
    assert b"".join(chunk for chunk, _ in result.updates) == full


# -- live streaming, proven by events ------------------------------------------------------


async def _gated_run(
    tmp_path: Path, command: str, triggers: set[bytes]
) -> tuple[bytes, str, list[tuple[bytes, bool]], int]:
    """Run ``command``; every update containing a trigger lets one ``read < {gate}`` pass."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    # Held open read-write, the FIFO always has a writer: the job's `read` never sees EOF
    # early, never blocks on open, and each line we write releases exactly one `read`.
    # Writing a few bytes into the empty pipe cannot block the event loop.
    gate_fd = os.open(gate, os.O_RDWR)
    updates: list[tuple[bytes, bool]] = []
    releases = 0

    def on_update(chunk: bytes, is_error: bool) -> None:
        nonlocal releases
        updates.append((chunk, is_error))
        if any(trigger in chunk for trigger in triggers):
            os.write(gate_fd, b"go\n")
            releases += 1

    try:
        client = await PluginClient.launch([installed_script("dkron-executor-shell")])
        try:
            response = await client.execute(
                "streaming",
                {"command": command.format(gate=gate), "shell": "true", "timeout": "20s"},
                on_update=on_update,
                timeout=15.0,
            )
        finally:
            await client.shutdown()
    finally:
        os.close(gate_fd)  # a job still blocked on the gate gets EOF and finishes
    return response.output, response.error, updates, releases


async def test_output_streams_before_execute_returns(tmp_path: Path) -> None:
    # The job cannot print `second` until the host has seen `first`: without live
    # streaming, Execute would never return and the call would time out.
    output, error, updates, releases = await _gated_run(
        tmp_path, "echo first; read line < {gate}; echo second", {b"first"}
    )
    assert releases == 1
    assert error == ""
    assert output == b"first\nsecond\n"
    assert updates == [(b"first\n", False), (b"second\n", False)]


async def test_output_keeps_arrival_order_across_pipes(tmp_path: Path) -> None:
    output, error, updates, releases = await _gated_run(
        tmp_path, "echo a; read x < {gate}; echo b >&2; read x < {gate}; echo c", {b"a", b"b"}
    )
    assert releases == 2
    assert error == ""
    assert output == b"a\nb\nc\n"
    assert updates == [(b"a\n", False), (b"b\n", True), (b"c\n", False)]


async def test_more_long_runs_at_once_than_the_old_64_workers(tmp_path: Path) -> None:
    # Each run says it started, then waits for a go-ahead file: all 80 must be running
    # at the same time. With the plugin's former pool of 64 workers, the other 16 sat
    # queued inside the plugin until a running job finished (Dkron has no such limit).
    import asyncio

    from support import wait_for

    runs = 80
    go = tmp_path / "go"
    command = (
        f"touch {shlex.quote(str(tmp_path))}/started-$ENV_JOB_NAME; "
        f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done"
    )
    client = await PluginClient.launch([installed_script("dkron-executor-shell")])
    try:
        pending = [
            asyncio.ensure_future(
                client.execute(f"long-{n}", {"command": command, "shell": "true"}, timeout=60)
            )
            for n in range(runs)
        ]
        started = await wait_for(lambda: len(list(tmp_path.glob("started-*"))) == runs, timeout=20)
        go.touch()
        responses = await asyncio.gather(*pending)
    finally:
        await client.shutdown()
    assert started
    assert [r.error for r in responses] == [""] * runs
