"""``dkronctl plugins`` as operators run it: the installed console script, real plugins."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest
from plugin_host_helpers import install, recorded_pids, wait_gone

DKRONCTL = str(Path(sys.executable).parent / "dkronctl")
BIN_DIR = Path(sys.executable).parent.resolve()


@pytest.fixture
def pid_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pids"
    folder.mkdir()
    return folder


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    install(folder, "executor", "fakecli", "executor")
    return folder


def environment(pid_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKRON_")}
    env["CORE_FAKE_PID_DIR"] = str(pid_dir)
    return env


def dkronctl(*args: str, pid_dir: Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [DKRONCTL, *args],
        capture_output=True,
        text=True,
        env=environment(pid_dir),
        timeout=timeout,
        check=False,
    )
    # Whatever the command did, it must not leave a plugin behind.
    assert wait_gone(recorded_pids(pid_dir)) == []
    return done


def plugins_by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in report["plugins"]}


# -- list -------------------------------------------------------------------------------


def test_list_json_reports_probes_skips_and_overrides(plugin_dir: Path, pid_dir: Path) -> None:
    install(plugin_dir, "executor", "broken", "garbage")
    unsafe = install(plugin_dir, "executor", "unsafe", "executor", mode=0o777)
    # The executable's own directory comes last and wins, as in Dkron.
    shadowed = install(plugin_dir, "executor", "shell", "executor")

    done = dkronctl("plugins", "list", "--json", "--plugin-dir", str(plugin_dir), pid_dir=pid_dir)

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["search_path"] == [str(plugin_dir), "/etc/dkron/plugins", str(BIN_DIR)]
    found = plugins_by_name(report)
    good = found["fakecli"]
    assert good["kind"] == "executor"
    assert good["path"] == str(plugin_dir / "dkron-executor-fakecli")
    assert good["directory"] == str(plugin_dir)
    assert good["probe"]["ok"] is True and good["probe"]["handshake"] == "ok"
    assert good["probe"]["protocol"] == "grpc" and good["probe"]["app_version"] == 1
    assert "types.v1.ExecutorService" in good["probe"]["services"]
    assert good["probe"]["healthy"] is True and good["probe"]["error"] == ""
    broken = found["broken"]
    assert broken["probe"]["ok"] is False
    assert "Unrecognized remote plugin message" in broken["probe"]["error"]
    assert "definitely not a plugin" in broken["probe"]["error"]
    assert "unsafe" not in found
    assert [s["path"] for s in report["skipped"]] == [str(unsafe)]
    assert "world-writable" in report["skipped"][0]["reason"]
    assert found["shell"]["directory"] == str(BIN_DIR)
    assert {
        "name": "shell",
        "path": str(shadowed),
        "by": str(BIN_DIR / "dkron-executor-shell"),
    } in (report["shadowed"])


def test_list_exits_0_when_every_probe_passes(plugin_dir: Path, pid_dir: Path) -> None:
    install(plugin_dir, "processor", "fakeproc", "processor")

    done = dkronctl("plugins", "list", "--json", "--plugin-dir", str(plugin_dir), pid_dir=pid_dir)

    report = json.loads(done.stdout)
    failed = {p["name"]: p["probe"]["error"] for p in report["plugins"] if not p["probe"]["ok"]}
    assert failed == {} and done.returncode == 0, (failed, done.stderr)
    found = plugins_by_name(report)
    assert found["fakeproc"]["kind"] == "processor"
    assert "dkronpy.v1.ProcessorService" in found["fakeproc"]["probe"]["services"]


def test_list_without_probing_starts_nothing(plugin_dir: Path, pid_dir: Path) -> None:
    install(plugin_dir, "executor", "broken", "garbage")

    done = dkronctl(
        "plugins", "list", "--json", "--no-probe", "--plugin-dir", str(plugin_dir), pid_dir=pid_dir
    )

    assert done.returncode == 0, done.stderr
    found = plugins_by_name(json.loads(done.stdout))
    assert {"fakecli", "broken"} <= found.keys()
    assert "probe" not in found["broken"]
    assert recorded_pids(pid_dir) == set()


def test_list_table(plugin_dir: Path, pid_dir: Path) -> None:
    install(plugin_dir, "executor", "broken", "exits")

    done = dkronctl("plugins", "list", "--plugin-dir", str(plugin_dir), pid_dir=pid_dir)

    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "HANDSHAKE", "PROTOCOL", "SERVICES", "PATH"]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert rows["fakecli"].split()[0] == "executor"
    assert "ok (" in rows["fakecli"] and "grpc/unix v1" in rows["fakecli"]
    assert "types.v1.ExecutorService" in rows["fakecli"]
    assert rows["fakecli"].endswith(str(plugin_dir / "dkron-executor-fakecli"))
    assert "FAILED" in rows["broken"]
    assert "executor 'broken' failed: plugin exited before we could connect" in done.stderr
    assert "cannot open /nonexistent/config.yml" in done.stderr
    assert f"searched: {plugin_dir}, /etc/dkron/plugins, {BIN_DIR}" in done.stderr


# -- exec -------------------------------------------------------------------------------


def exec_args(plugin_dir: Path, *config: str, name: str = "fakecli") -> list[str]:
    args = ["plugins", "exec", name, "--plugin-dir", str(plugin_dir)]
    for pair in config:
        args += ["-c", pair]
    return args


def test_exec_success(plugin_dir: Path, pid_dir: Path) -> None:
    done = dkronctl(*exec_args(plugin_dir, "output=job ran\n"), "--job", "J", pid_dir=pid_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "job ran\n"


def test_exec_streams_what_the_plugin_sends(plugin_dir: Path, pid_dir: Path) -> None:
    done = dkronctl(
        *exec_args(plugin_dir, "stream=line one\nline two\n", "output=final"), pid_dir=pid_dir
    )
    assert done.returncode == 0, done.stderr
    # The updates as they came, then the final output the plugin returned as well (a Go
    # plugin's final output is not its updates; it used to be dropped).
    assert done.stdout == "line one\nline two\nfinal"


def test_exec_does_not_print_the_streamed_output_twice(plugin_dir: Path, pid_dir: Path) -> None:
    # The shell executor streams its output and returns all of it at the end too.
    done = dkronctl(
        *exec_args(plugin_dir, "stream=line one\n", "output=line one\nand more\n"),
        pid_dir=pid_dir,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "line one\nand more\n"


def test_exec_output_is_live(plugin_dir: Path, pid_dir: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    process = subprocess.Popen(
        [DKRONCTL, *exec_args(plugin_dir, "stream=first\n", f"wait_file={go}")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(pid_dir),
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line)

    assert process.stdout is not None
    reader = threading.Thread(target=pump, args=(process.stdout,), daemon=True)
    reader.start()
    try:
        assert lines.get(timeout=20) == "first\n"
        # The plugin is still waiting for us: this line cannot be buffered final output.
        assert process.poll() is None
        go.touch()
        assert lines.get(timeout=20) == "second\n"
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        reader.join(timeout=5)
        assert process.stderr is not None
        process.stderr.close()
    assert wait_gone(recorded_pids(pid_dir)) == []


def test_exec_failure(plugin_dir: Path, pid_dir: Path) -> None:
    done = dkronctl(*exec_args(plugin_dir, "fail=disk full"), pid_dir=pid_dir)
    assert done.returncode == 1
    assert done.stdout == "partial work\n"
    assert done.stderr.strip().endswith("dkronctl: execution failed: disk full")


def test_exec_failure_with_capped_output(plugin_dir: Path, pid_dir: Path) -> None:
    # 40000 lines of 7 bytes overflow the 256 kB cap, which then drops the error line too.
    done = dkronctl(*exec_args(plugin_dir, "fail=boom", "lines=40000"), pid_dir=pid_dir)
    expected = "".join(f"{i:06d}\n" for i in range(40000))
    assert done.returncode == 1
    assert done.stdout == expected[-256_000:]
    assert done.stderr.strip().endswith("dkronctl: execution failed: boom")


def test_exec_crash_keeps_the_streamed_output(plugin_dir: Path, pid_dir: Path) -> None:
    done = dkronctl(*exec_args(plugin_dir, "stream=before\n", "crash=3"), pid_dir=pid_dir)
    assert done.returncode == 1
    assert done.stdout == "before\n"
    assert "dkronctl: execution failed: plugin 'fakecli'" in done.stderr
    assert "exit status 3" in done.stderr


def test_exec_timeout(plugin_dir: Path, pid_dir: Path) -> None:
    done = dkronctl(*exec_args(plugin_dir, "hang=1"), "--timeout", "1", pid_dir=pid_dir)
    assert done.returncode == 1
    assert "dkronctl: execution failed: plugin 'fakecli'" in done.stderr
    assert "did not finish within 1s" in done.stderr


def test_exec_unknown_executor(plugin_dir: Path, pid_dir: Path) -> None:
    done = dkronctl(*exec_args(plugin_dir, name="nope"), pid_dir=pid_dir)
    assert done.returncode == 1
    assert "executor 'nope' not found in" in done.stderr
    assert f"{plugin_dir}, /etc/dkron/plugins, {BIN_DIR}" in done.stderr
    assert "fakecli" in done.stderr  # what is available instead


@pytest.mark.parametrize("pair", ["novalue", "=value"])
def test_exec_rejects_a_malformed_config_entry(plugin_dir: Path, pid_dir: Path, pair: str) -> None:
    done = dkronctl(*exec_args(plugin_dir, "ok=1", pair), pid_dir=pid_dir)
    assert done.returncode == 2
    assert f"expected key=value, got '{pair}'" in done.stderr
    assert "--config" in done.stderr
    assert recorded_pids(pid_dir) == set()  # rejected before any plugin started


def test_exec_config_values_may_contain_equals_signs(plugin_dir: Path, pid_dir: Path) -> None:
    done = dkronctl(*exec_args(plugin_dir, "output=a=b=c"), pid_dir=pid_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a=b=c"
