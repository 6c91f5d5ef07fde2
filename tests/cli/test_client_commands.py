"""The client commands against a real agent process, each run as a real ``dkronctl``."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from agent_process import DKRONCTL, Agent, clean_env, free_port, run_cli, wait_for

TICK_YAML = """\
name: tick
displayname: Ticker
schedule: "@every 1s"
executor: shell
executor_config:
  command: echo tick
  shell: true
metadata:
  team: ops
"""


def executions(agent: Agent, job: str) -> list[dict[str, object]]:
    result: list[dict[str, object]] = agent.cli("executions", "list", job, "--json").json()
    return result


def finished(agent: Agent, job: str, cli: bool = True) -> list[dict[str, object]]:
    listed = executions(agent, job) if cli else agent.executions(job)
    return [e for e in listed if e["finished_at"] != "0001-01-01T00:00:00Z"]


def test_apply_list_watch_toggle_delete(shared_agent: Agent) -> None:
    agent = shared_agent
    (agent.workdir / "tick.yml").write_text(TICK_YAML)
    applied = agent.cli("jobs", "apply", "-f", str(agent.workdir / "tick.yml"))
    assert applied.stdout == "job 'tick' created\n"

    table = agent.cli("jobs", "list").stdout.splitlines()
    assert table[0].split() == [
        "NAME", "SCHEDULE", "EXECUTOR", "STATUS", "DISABLED", "SUCCESS", "ERROR", "NEXT"
    ]  # fmt: skip
    row = next(line for line in table[1:] if line.startswith("tick "))
    assert "@every 1s" in row and "shell" in row

    listed = agent.cli("jobs", "list", "--json").json()
    tick = next(j for j in listed if j["name"] == "tick")
    # YAML's `shell: true` went over the wire as the string Dkron's map[string]string needs.
    assert tick["executor_config"] == {"command": "echo tick", "shell": "true"}
    assert [j["name"] for j in agent.cli("jobs", "list", "--json", "--q", "Tick").json()] == [
        "tick"
    ]
    assert agent.cli("jobs", "list", "--json", "--metadata", "team=dev").json() == []
    assert [
        j["name"] for j in agent.cli("jobs", "list", "--json", "--metadata", "team=ops").json()
    ] == ["tick"]

    wait_for(lambda: len([e for e in finished(agent, "tick", cli=False) if e["success"]]) >= 2)
    runs = [e for e in finished(agent, "tick") if e["success"]][:2]
    assert len(runs) == 2
    assert all(e["output"] == "tick\n" and e["node_name"] == "node1" for e in runs)
    assert agent.cli("jobs", "list", "--json", "--status", "success").json()[0]["name"] == "tick"

    table = agent.cli("executions", "list", "tick", "--limit", "1").stdout.splitlines()
    assert len(table) == 2
    assert table[0].split()[:4] == ["ID", "STARTED", "FINISHED", "RESULT"]
    assert table[1].split()[-1] == "tick"

    one = runs[0]
    shown = agent.cli("executions", "get", "tick", str(one["id"])).stdout
    assert f"id        {one['id']}" in shown
    assert shown.endswith("output:\ntick\n")
    assert agent.cli("executions", "get", "tick", str(one["id"]), "--json").json() == {
        **{k: v for k, v in one.items() if k != "output_truncated"}
    }

    got = agent.cli("jobs", "get", "tick").stdout
    assert "schedule       @every 1s" in got
    assert "  command: echo tick" in got
    assert agent.cli("jobs", "get", "tick", "--json").json()["displayname"] == "Ticker"

    again = agent.cli("jobs", "apply", "-f", str(agent.workdir / "tick.yml"))
    assert again.stdout == "job 'tick' updated\n"

    assert agent.cli("jobs", "toggle", "tick").stdout == "job 'tick' disabled\n"
    assert agent.cli("jobs", "get", "tick", "--json").json()["disabled"] is True
    assert agent.cli("jobs", "toggle", "tick", "--json").json()["disabled"] is False

    assert agent.cli("jobs", "delete", "tick").stdout == "job 'tick' deleted\n"
    missing = agent.cli("jobs", "get", "tick", check=False)
    assert missing.code == 1
    assert missing.stderr.startswith("dkronctl: get job 'tick' failed: 404")
    assert missing.stderr.count("\n") == 1


def test_apply_from_stdin_stops_at_the_first_error(shared_agent: Agent) -> None:
    jobs = [
        {"name": "first", "schedule": "@manually", "executor": "shell",
         "executor_config": {"command": "true"}},
        {"name": "BAD NAME", "schedule": "@manually"},
        {"name": "third", "schedule": "@manually"},
    ]  # fmt: skip
    result = shared_agent.cli("jobs", "apply", "-f", "-", input=json.dumps(jobs), check=False)
    assert result.code == 1
    assert result.stdout == "job 'first' created\n"
    assert result.stderr == (
        "dkronctl: apply job 'BAD NAME' failed: 400 "
        "Job validation failed: name contains illegal character 'B'.\n"
    )
    assert shared_agent.cli("jobs", "get", "first", "--json").json()["name"] == "first"
    assert shared_agent.cli("jobs", "get", "third", check=False).code == 1


def test_apply_reads_several_yaml_documents(shared_agent: Agent) -> None:
    text = (
        "name: doc-a\nschedule: '@manually'\nexecutor: shell\n"
        "executor_config: {command: 'true', timeout: 30s}\n"
        "---\n"
        "- {name: doc-b, schedule: '@manually', starts_at: 2030-01-02T03:04:05Z}\n"
    )
    result = shared_agent.cli("jobs", "apply", "-f", "-", input=text)
    assert result.stdout == "job 'doc-a' created\njob 'doc-b' created\n"
    b = shared_agent.cli("jobs", "get", "doc-b", "--json").json()
    assert b["starts_at"] == "2030-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nschedule: [oops\n", "dkronctl: stdin line 3 column 1:"),
        ('{"name": "x",\n "schedule": }', "dkronctl: stdin line 2 column 14: Expecting value"),
        ("just a string\n", "dkronctl: stdin: expected a job object or a list of them"),
        ("", "dkronctl: stdin: no jobs found"),
    ],
)
def test_apply_rejects_malformed_files(shared_agent: Agent, text: str, message: str) -> None:
    result = shared_agent.cli("jobs", "apply", "-f", "-", input=text, check=False)
    assert result.code == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


def test_apply_missing_file(shared_agent: Agent) -> None:
    result = shared_agent.cli("jobs", "apply", "-f", "/nonexistent/jobs.yml", check=False)
    assert (result.code, result.stderr) == (
        2,
        "dkronctl: cannot read /nonexistent/jobs.yml: No such file or directory\n",
    )


def test_run_follow_streams_output_and_reports_success(shared_agent: Agent) -> None:
    job = {
        "name": "stream",
        "schedule": "@manually",
        "executor": "shell",
        "executor_config": {"command": "echo one; sleep 1; echo two", "shell": "true"},
    }
    shared_agent.cli("jobs", "apply", "-f", "-", input=json.dumps(job))
    process = subprocess.Popen(
        [DKRONCTL, "jobs", "run", "stream", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(shared_agent.workdir, DKRON_ADDR=shared_agent.address),
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        # "one" arrives while the command is still sleeping: streamed, not printed at the end.
        assert first == "one\n"
        assert process.poll() is None
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert rest == "two\n"
    assert errors == ""
    assert process.returncode == 0
    (execution,) = finished(shared_agent, "stream")
    assert execution["success"] is True


def test_run_follow_of_a_failing_command_exits_non_zero(shared_agent: Agent) -> None:
    job = {
        "name": "broken",
        "schedule": "@manually",
        "executor": "shell",
        "executor_config": {"command": "echo partial; exit 3", "shell": "true"},
    }
    shared_agent.cli("jobs", "apply", "-f", "-", input=json.dumps(job))
    result = shared_agent.cli("jobs", "run", "broken", "--follow", check=False)
    assert result.code == 1
    # Followed live, only the job's output streams; if the run finished before the
    # stream attached, the stored output is replayed, which (Dkron's convention)
    # starts with the error line.
    assert result.stdout in ("partial\n", "exit status 3\npartial\n")
    assert result.stderr.startswith("dkronctl: execution ")
    assert result.stderr.endswith(" of job 'broken' failed: exit status 3\n")
    (execution,) = finished(shared_agent, "broken")
    assert execution["success"] is False


def test_run_without_follow_and_unknown_job(shared_agent: Agent) -> None:
    job = {"name": "quick", "schedule": "@manually", "executor": "shell",
           "executor_config": {"command": "echo quick"}}  # fmt: skip
    shared_agent.cli("jobs", "apply", "-f", "-", input=json.dumps(job))
    assert shared_agent.cli("jobs", "run", "quick").stdout == "job 'quick' started\n"
    wait_for(lambda: finished(shared_agent, "quick", cli=False))
    (execution,) = finished(shared_agent, "quick")
    assert execution["output"] == "quick\n"
    missing = shared_agent.cli("jobs", "run", "nope", "--follow", check=False)
    assert missing.code == 1
    assert missing.stderr.startswith("dkronctl: list executions of 'nope' failed: 404")


def test_members_and_leader(shared_agent: Agent) -> None:
    table = shared_agent.cli("members").stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "ADDR"]
    assert table[1].split()[0] == "node1"
    assert f"127.0.0.1:{shared_agent.rpc_port}" in table[1]
    (member,) = shared_agent.cli("members", "--json").json()
    assert member["Name"] == "node1" and member["statusText"] == "alive"
    leader = shared_agent.cli("leader", "--json").json()
    assert leader["Name"] == "node1"
    assert shared_agent.cli("leader").stdout.splitlines()[1].split()[0] == "node1"


def test_unreachable_address_is_one_clear_line(tmp_path: Path) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    for args in (["jobs", "list"], ["members"], ["jobs", "run", "x", "--follow"]):
        result = run_cli(*args, address=address, home=tmp_path, check=False)
        assert result.code == 1
        assert result.stderr == f"dkronctl: cannot reach dkron at {address}: Connection refused\n"
        assert result.stdout == ""
    flag = run_cli("jobs", "list", "--address", address, address=None, home=tmp_path, check=False)
    assert flag.stderr == f"dkronctl: cannot reach dkron at {address}: Connection refused\n"


def test_keygen_prints_a_16_byte_key_on_stdout(tmp_path: Path) -> None:
    first = run_cli("keygen", address=None, home=tmp_path)
    second = run_cli("keygen", address=None, home=tmp_path)
    assert first.stderr == ""
    assert len(base64.b64decode(first.stdout.strip(), validate=True)) == 16
    assert first.stdout != second.stdout


def test_version(tmp_path: Path) -> None:
    assert run_cli("version", address=None, home=tmp_path).stdout.startswith("Name: dkron-py\n")


def test_shell_completion(tmp_path: Path) -> None:
    script = run_cli("--show-completion", "bash", address=None, home=tmp_path).stdout
    assert "_DKRONCTL_COMPLETE=complete_bash" in script
    completed = subprocess.run(
        [DKRONCTL],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(
            tmp_path, _DKRONCTL_COMPLETE="complete_bash", COMP_WORDS="dkronctl jo", COMP_CWORD="1"
        ),
    )
    assert completed.stdout.split() == ["jobs"]
    completed = subprocess.run(
        [DKRONCTL],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(
            tmp_path,
            _DKRONCTL_COMPLETE="complete_bash",
            COMP_WORDS="dkronctl jobs ",
            COMP_CWORD="2",
        ),
    )
    assert {"list", "get", "apply", "run", "delete", "toggle"} <= set(completed.stdout.split())
