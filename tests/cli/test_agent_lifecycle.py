"""``dkronctl agent`` as a real process: start-up errors, graceful stop, crash and restart."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from agent_process import DKRONCTL, Agent, clean_env, free_port, wait_for

ZERO = "0001-01-01T00:00:00Z"


def job(name: str, command: str, schedule: str = "@manually") -> str:
    return json.dumps(
        {
            "name": name,
            "schedule": schedule,
            "executor": "shell",
            "executor_config": {"command": command, "shell": "true"},
        }
    )


def executions(agent: Agent, name: str) -> list[dict[str, Any]]:
    """Through the real client, for the assertions that matter."""
    result: list[dict[str, Any]] = agent.cli("executions", "list", name, "--json").json()
    return result


def agent_argv_error(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DKRONCTL, "agent", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=clean_env(tmp_path),
    )


def test_sigterm_waits_for_the_running_execution_then_exits_0(
    make_agent: Callable[..., Agent],
) -> None:
    agent = make_agent()
    agent.start()
    assert f"API http://127.0.0.1:{agent.http_port}/" in agent.stdout()
    assert f"data dir {agent.data_dir}" in agent.stdout()
    agent.cli("jobs", "apply", "-f", "-", input=job("slow", "sleep 2; echo slept"))
    agent.cli("jobs", "run", "slow")
    (running,) = wait_for(lambda: agent.executions("slow"))
    assert running["finished_at"] == ZERO

    started = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=20) == 0
    # It waited for the sleep instead of cutting it short.
    assert time.monotonic() - started > 0.5
    assert "SIGTERM: stopping the scheduler" in agent.stderr()

    agent.start()
    (done,) = executions(agent, "slow")
    assert done["id"] == running["id"]
    assert done["success"] is True
    assert done["output"] == "slept\n"
    assert done["finished_at"] != ZERO


def _job_tree(tmp_path: Path, name: str) -> tuple[str, Path]:
    """A job that prints, starts a child that would outlive it, and waits for it."""
    pid_file = tmp_path / f"{name}.child"
    return job(name, f"echo started; sleep 300 & echo $! > {pid_file}; wait"), pid_file


def _log_time(stderr: str, text: str) -> datetime:
    line = next(line for line in stderr.splitlines() if text in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def _killed_and_recorded(agent: Agent, name: str, pid_file: Path, reason: str) -> None:
    child = int(pid_file.read_text())
    wait_for(lambda: not Path(f"/proc/{child}").exists(), timeout=10)  # no orphan left
    agent.start()
    (done,) = executions(agent, name)
    assert done["success"] is False and done["finished_at"] != ZERO
    assert f"execution killed: {reason}" in done["output"]
    assert "started" in done["output"]  # the output so far was kept


def test_a_second_signal_exits_at_once(make_agent: Callable[..., Agent], tmp_path: Path) -> None:
    agent = make_agent()
    agent.start("--drain-timeout", "60s")
    body, pid_file = _job_tree(tmp_path, "long")
    agent.cli("jobs", "apply", "-f", "-", input=body)
    agent.cli("jobs", "run", "long")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    agent.signal(signal.SIGINT)
    wait_for(lambda: "SIGINT: stopping the scheduler" in agent.stderr())
    # Past the window in which a repeat is taken for the same signal delivered twice.
    deadline = time.monotonic() + 0.6
    wait_for(lambda: time.monotonic() > deadline, interval=0.1)
    agent.signal(signal.SIGINT)
    assert agent.wait(timeout=20) == 1
    assert "SIGINT again: exiting without waiting" in agent.stderr()
    _killed_and_recorded(agent, "long", pid_file, "the agent was stopped at once")


def test_the_drain_timeout_is_one_deadline_then_runs_are_killed_and_recorded(
    make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    agent = make_agent()
    agent.start("--drain-timeout", "2s")
    body, pid_file = _job_tree(tmp_path, "stuck")
    agent.cli("jobs", "apply", "-f", "-", input=body)
    agent.cli("jobs", "run", "stuck")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=30) == 0
    stderr = agent.stderr()
    assert stderr.count("stopping: killed 1 running execution(s)") == 1
    # One deadline, by the agent's own clock: the kill comes after 2 s, not 2 x 2 s.
    waited = _log_time(stderr, "stopping: killed") - _log_time(stderr, "SIGTERM: stopping")
    assert 1.9 < waited.total_seconds() < 3.5, waited
    _killed_and_recorded(agent, "stuck", pid_file, "the agent stopped and its 2s drain timeout")


def test_kill_9_and_restart_brings_everything_back(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    agent.start()
    agent.cli("jobs", "apply", "-f", "-", input=job("tick", "echo tick", "@every 1s"))
    agent.cli("jobs", "apply", "-f", "-", input=job("manual", "echo manual; exit 1"))
    agent.cli("jobs", "run", "manual", "--follow", check=False)
    agent.cli("jobs", "run", "manual", "--follow", check=False)
    wait_for(lambda: sum(e["success"] for e in agent.executions("tick")) >= 2)
    # Stop the ticking so the snapshot below is exact, and let any run in flight land.
    agent.cli("jobs", "toggle", "tick")
    wait_for(lambda: all(e["finished_at"] != ZERO for e in agent.executions("tick")))

    before_jobs = agent.cli("jobs", "list", "--json").json()
    before = {name: executions(agent, name) for name in ("tick", "manual")}
    assert {j["name"]: j["error_count"] for j in before_jobs}["manual"] == 2
    assert len(before["manual"]) == 2

    agent.kill9()
    agent.start()

    after_jobs = agent.cli("jobs", "list", "--json").json()
    assert after_jobs == before_jobs
    for name, listed in before.items():
        assert executions(agent, name) == listed

    # And the scheduler picks the job up again.
    agent.cli("jobs", "toggle", "tick")
    count = len(before["tick"])
    wait_for(lambda: len(agent.executions("tick")) > count)


def test_port_in_use_is_one_line_exit_1(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", agent.http_port))
        taken.listen()
        result = subprocess.run(
            agent.argv(), capture_output=True, text=True, timeout=30, env=clean_env(agent.workdir)
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"dkronctl: cannot listen on http-addr 127.0.0.1:{agent.http_port}: "
        "address already in use\n"
    )


def test_raft_port_in_use_is_one_line_exit_1(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", agent.raft_port))
        taken.listen()
        result = subprocess.run(
            agent.argv(), capture_output=True, text=True, timeout=30, env=clean_env(agent.workdir)
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"dkronctl: cannot listen on raft-port 127.0.0.1:{agent.raft_port}: "
        "address already in use\n"
    )


def test_unusable_data_dir_is_one_line_exit_1(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    blocker = agent.workdir / "file"
    blocker.write_text("not a directory")
    agent.data_dir = blocker / "data"
    result = subprocess.run(
        agent.argv(), capture_output=True, text=True, timeout=30, env=clean_env(agent.workdir)
    )
    assert result.returncode == 1
    assert (
        result.stderr == f"dkronctl: data dir {blocker / 'data'} is not writable: Not a directory\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--server", "--bootstrap-expect", "1", "--rpc-port", "abc"],
            "dkronctl: invalid value 'abc' for --rpc-port: expected an integer\n",
        ),
        (
            ["--server", "--bootstrap-expect", "1", "--tag", "oops"],
            "dkronctl: invalid tag: 'oops'\n",
        ),
        (
            ["--server", "--bootstrap-expect", "1", "--log-level", "loud"],
            "dkronctl: invalid value 'loud' for --log-level: "
            "expected one of debug, info, warn, error, fatal, panic\n",
        ),
        (
            ["--server"],
            "dkronctl: a server needs --bootstrap-expect N to form a cluster, or "
            "--join/--retry-join to join one (a single node: --server --bootstrap-expect 1)\n",
        ),
        (
            ["--bootstrap-expect", "1"],
            "dkronctl: --bootstrap-expect only applies to servers (add --server)\n",
        ),
    ],
)
def test_bad_flags_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = agent_argv_error(tmp_path, *args)
    assert (result.returncode, result.stderr) == (2, message)


def test_malformed_config_file_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "dkron.yml"
    path.write_text("server: true\nbootstrap-expect: [1\n")
    result = agent_argv_error(tmp_path, "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"dkronctl: config file {path} line 3")
    assert result.stderr.count("\n") == 1


def test_config_file_found_in_home_and_env_override(tmp_path: Path) -> None:
    # The file sets everything, the environment overrides a value, and the agent's
    # refusal message shows the env value won: no network needed to check precedence.
    (tmp_path / ".dkron").mkdir()
    (tmp_path / ".dkron" / "dkron.toml").write_text("server = true\nbootstrap-expect = 1\n")
    result = subprocess.run(
        [DKRONCTL, "agent"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=clean_env(tmp_path, DKRON_SERVER="false", DKRON_RPC_PORT=str(free_port())),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("dkronctl: --bootstrap-expect only applies to servers")


def test_a_node_beyond_loopback_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    # The last --bind-addr wins: gossip, gRPC and Raft would listen on every interface.
    argv = agent.argv("--bind-addr", f"0.0.0.0:{free_port()}", "--advertise-addr", "127.0.0.1")
    refused = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env=clean_env(tmp_path), cwd=tmp_path
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "dkronctl: refusing to listen on 0.0.0.0 without a cluster key: anyone who can reach"
    )
    assert "--insecure" in refused.stderr and "DKRON_ENCRYPT" in refused.stderr

    # --insecure is the documented opt-out: it starts, and says so once.
    try:
        agent.start("--bind-addr", f"0.0.0.0:{free_port()}", "--advertise-addr", "127.0.0.1",
                    "--insecure")  # fmt: skip
        assert agent.stderr().count("--insecure: listening on 0.0.0.0 without a cluster key") == 1
    finally:
        agent.kill9()

    # With a key it starts quietly.
    quiet = Agent(tmp_path / "encrypted")
    quiet.workdir.mkdir()
    try:
        quiet.start(
            "--bind-addr", f"0.0.0.0:{free_port()}", "--advertise-addr", "127.0.0.1",
            env={"DKRON_ENCRYPT": "4n1S3HqsIqA6XW1U0F1uRQ=="},
        )  # fmt: skip
        assert "without a cluster key" not in quiet.stderr()
    finally:
        quiet.kill9()


def test_acls_without_a_cluster_key_refuse_to_start(tmp_path: Path) -> None:
    config = tmp_path / "dkron.yml"
    config.write_text("acl:\n  enabled: true\n")
    agent = Agent(tmp_path)
    refused = subprocess.run(
        agent.argv("--config", str(config)), capture_output=True, text=True, timeout=30,
        env=clean_env(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.startswith("dkronctl: acl.enabled needs a cluster key")


def test_a_second_agent_on_the_same_data_dir_exits_naming_the_holder(tmp_path: Path) -> None:
    first = Agent(tmp_path / "first")
    first.workdir.mkdir()
    second = Agent(tmp_path / "second")
    second.workdir.mkdir()
    second.data_dir = first.data_dir  # same data dir, every port its own
    try:
        first.start()
        assert first.process is not None
        refused = subprocess.run(
            second.argv(), capture_output=True, text=True, timeout=30,
            env=clean_env(second.workdir), cwd=second.workdir,
        )  # fmt: skip
        assert refused.returncode == 1
        assert refused.stderr.startswith(
            f"dkronctl: data dir {first.data_dir} is in use by another dkron-py agent "
            f"(pid {first.process.pid})"
        )
        # The first one is untouched and still leads.
        assert first.is_leader()
        # A lock left by a killed agent is no obstacle: the lock is the flock, not the file.
        first.kill9()
        second.start()
        assert second.is_leader()
    finally:
        first.kill9()
        second.kill9()


def test_a_reserved_tag_is_warned_about(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    agent.start("--tag", "role=worker", "--tag", "zone=a")
    warning = "tag 'role' is reserved: the node sets it itself, so role=worker is replaced"
    assert agent.stderr().count(warning) == 1
    assert "tag 'zone'" not in agent.stderr()
    (member,) = agent.api("/v1/members")
    assert member["Tags"]["role"] == "dkron" and member["Tags"]["zone"] == "a"
