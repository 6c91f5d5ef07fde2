"""Secrets stay secret: not in /debug/vars, ps, logs, API responses, error messages, nor
in the environment of the jobs an agent runs."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
from agent_process import Agent, clean_env
from attacks import CLUSTER_KEY

pytestmark = pytest.mark.timeout(120)

MAIL_PASSWORD = "hunter2-mail-password"


def _everything_the_api_says(agent: Agent) -> str:
    texts = []
    for path in ("/debug/vars", "/v1/", "/v1/members", "/v1/leader", "/v1/jobs"):
        with urllib.request.urlopen(f"{agent.address}{path}", timeout=10) as response:
            texts.append(response.read().decode())
    return "\n".join(texts)


def test_secret_flags_are_hidden_from_ps_debug_vars_and_logs(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    try:
        agent.start("--encrypt", CLUSTER_KEY, "--mail-password", MAIL_PASSWORD)
        assert agent.process is not None
        debug = agent.api("/debug/vars")
        assert "<redacted>" in debug["cmdline"]
        said = _everything_the_api_says(agent)
        cmdline = Path(f"/proc/{agent.process.pid}/cmdline").read_bytes().decode()
        for secret in (CLUSTER_KEY, MAIL_PASSWORD):
            assert secret not in said
            assert secret not in cmdline
            assert secret not in agent.stderr() and secret not in agent.stdout()
        assert "--encrypt was given on the command line" in agent.stderr()
        assert "--mail-password was given on the command line" in agent.stderr()
    finally:
        agent.kill9()


def test_jobs_do_not_inherit_the_agents_secrets(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    try:
        agent.start(env={"DKRON_ENCRYPT": CLUSTER_KEY, "DKRON_MAIL_PASSWORD": MAIL_PASSWORD})
        output = agent.run_shell("env", "env")["output"]
        assert "PATH=" in output  # the job did print its environment
        for secret in (CLUSTER_KEY, MAIL_PASSWORD, "DKRON_ENCRYPT", "DKRON_MAIL_PASSWORD"):
            assert secret not in output
        assert CLUSTER_KEY not in _everything_the_api_says(agent)
    finally:
        agent.kill9()


def test_a_bad_key_is_not_echoed(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    almost = CLUSTER_KEY[:-4] + "!!!!"
    for env in ({"DKRON_ENCRYPT": almost}, {}):
        argv = agent.argv() if env else agent.argv("--encrypt", almost)
        refused = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, cwd=tmp_path,
            env=clean_env(tmp_path, **env),
        )  # fmt: skip
        assert refused.returncode == 2
        assert "expected a base64 key" in refused.stderr
        assert almost not in refused.stderr
