"""Plugins that never handshake, or print garbage while a child holds their stdout, do
not hold up a real agent: the API and Raft serve at once, /health says what is wrong,
and nothing the broken plugins started is left running."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from agent_process import Agent, wait_for
from plugin_host_helpers import install, recorded_pids, still_running, wait_gone

pytestmark = pytest.mark.timeout(120)


def test_broken_plugins_hold_up_nothing_and_leave_nothing(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    agent = Agent(tmp_path)
    plugins = tmp_path / "plugins"
    install(plugins, "executor", "silent", "silent")
    install(plugins, "executor", "garbled", "garbage_with_child")
    try:
        agent.start(env={"CORE_FAKE_PID_DIR": str(pid_dir)})
        # Serving while the silent plugin is still in its handshake (it has 15 s): the
        # start did not wait for it.
        silent = recorded_pids(pid_dir, "dkron-executor-silent")
        assert silent and still_running(silent) == sorted(silent)
        assert agent.is_leader()
        run = agent.run_shell("meanwhile", "echo served")
        assert run["success"]

        # The garbled one failed at once; it and the child holding its stdout are gone.
        garbled = recorded_pids(pid_dir, "dkron-executor-garbled")
        child = recorded_pids(pid_dir, "dkron-executor-garbled-child")
        assert garbled and child
        assert wait_gone(garbled | child) == []
        health = wait_for(lambda: (h := agent.health()) and h["status"] == "unhealthy" and h)
        assert any("plugin garbled: " in issue and "Unrecognized remote plugin message" in issue
                   for issue in health["issues"]), health  # fmt: skip
        assert health["leader"] is True
    finally:
        agent.kill9()
    # And nothing outlives the agent (its session is killed, plugins included).
    assert wait_gone(recorded_pids(pid_dir), timeout=10) == []


def test_a_plugin_dropped_into_a_running_agent_is_found(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    try:
        agent.start()
        # A job naming it makes the agent look again before refusing the job.
        install(plugins, "executor", "late", "executor")
        body = {"name": "uses-late", "schedule": "@manually", "executor": "late",
                "executor_config": {"output": "late ran"}}  # fmt: skip
        agent.post("/v1/jobs", body)
        agent.post("/v1/jobs/uses-late/run")
        done = wait_for(lambda: agent.finished("uses-late"))
        assert done[0]["success"] and done[0]["output"] == "late ran"
        # SIGHUP looks too, and the node then gossips the new executor.
        install(plugins, "executor", "later", "executor")
        agent.signal(signal.SIGHUP)

        def offered() -> list[str]:
            (member,) = agent.api("/v1/members")
            return str(member["Tags"]["executors"]).split(",")

        wait_for(lambda: "later" in offered())
        assert {"late", "shell", "http"} <= set(offered())
        assert "SIGHUP: rescanning the plugin directories" in agent.stderr()
    finally:
        agent.kill9()
