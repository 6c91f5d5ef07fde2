"""``dkronctl acl ...`` against a real agent with ACLs on (Dkron Pro's commands), and the
client commands carrying a token."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_process import Agent, Result, run_cli
from attacks import CLUSTER_KEY

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def acl_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("acl-cli"))
    try:
        agent.start("--acl-enabled", env={"DKRON_ENCRYPT": CLUSTER_KEY})
        yield agent
    finally:
        agent.kill9()


def _cli(agent: Agent, *args: str, token: str | None = None, key: bool = False,
         check: bool = True) -> Result:  # fmt: skip
    env = {"DKRON_RPC_ADDR": f"127.0.0.1:{agent.rpc_port}"}
    if token:
        env["DKRON_TOKEN"] = token
    if key:
        env["DKRON_ENCRYPT"] = CLUSTER_KEY
    return run_cli(*args, address=agent.address, home=agent.workdir, check=check, env=env)


def _field(output: str, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_the_acl_lifecycle_from_the_cli(acl_agent: Agent, tmp_path: Path) -> None:
    # Bootstrap prints Dkron Pro's lines, once.
    boot = _cli(acl_agent, "acl", "bootstrap")
    lines = [line.split(":", 1)[0] for line in boot.stdout.splitlines()]
    assert lines == ["Accessor ID", "Secret", "Name", "Type", "CreateTime", "Policies"]
    assert _field(boot.stdout, "Name") == "bootstrap"
    assert _field(boot.stdout, "Type") == "management"
    assert _field(boot.stdout, "Policies") == "default"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC",
                        _field(boot.stdout, "CreateTime"))  # fmt: skip
    management = _field(boot.stdout, "Secret")
    again = _cli(acl_agent, "acl", "bootstrap", check=False)
    assert again.code == 1 and "already done" in again.stderr

    # Policies.
    rules = tmp_path / "readonly.json"
    rules.write_text(json.dumps({"path": {"/v1/jobs": {"capabilities": ["list", "read"]}}}))
    assert _cli(acl_agent, "acl", "policy", "apply", "-n", "readonly", "-r", str(rules),
                token=management).code == 0  # fmt: skip
    listed = _cli(acl_agent, "acl", "policy", "list", "--json", token=management).json()
    assert [p["name"] for p in listed] == ["default", "readonly"]
    info = _cli(acl_agent, "acl", "policy", "info", "readonly", token=management).json()
    assert info["rules"]["path"]["/v1/jobs"]["capabilities"] == ["list", "read"]
    refused = _cli(acl_agent, "acl", "policy", "list", check=False)
    assert refused.code == 1 and "ACL token" in refused.stderr

    # Tokens: the secret is shown once; a client token is bound by its policies.
    created = _cli(acl_agent, "acl", "token", "create", "-n", "alice", "-p", "readonly",
                   token=management)  # fmt: skip
    alice = _field(created.stdout, "Secret")
    accessor = _field(created.stdout, "Accessor ID")
    tokens = _cli(acl_agent, "acl", "token", "list", "--json", token=management).json()
    assert {t["name"] for t in tokens} == {"bootstrap", "alice"}
    assert all("secret" not in t for t in tokens)
    info = _cli(acl_agent, "acl", "token", "info", accessor, token=management)
    assert _field(info.stdout, "Name") == "alice" and "Secret" not in info.stdout

    assert _cli(acl_agent, "jobs", "list", token=alice).code == 0
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"name": "j", "schedule": "@manually", "executor": "shell",
                               "executor_config": {"command": "true"}}))  # fmt: skip
    write = _cli(acl_agent, "jobs", "apply", "-f", str(job), token=alice, check=False)
    assert write.code == 1 and "403 token 'alice' may not" in write.stderr
    assert _cli(acl_agent, "jobs", "apply", "-f", str(job), token=management).code == 0

    # The RPC's client calls take the token too: management yes, client no, none no.
    peers = _cli(acl_agent, "raft", "list-peers", "--json", token=management).json()
    assert len(peers["servers"]) == 1
    denied = _cli(acl_agent, "raft", "list-peers", token=alice, check=False)
    assert denied.code == 1 and "not a management token" in denied.stderr
    anonymous = _cli(acl_agent, "raft", "list-peers", check=False)
    assert anonymous.code == 1 and "token missing" in anonymous.stderr
    # A holder of the cluster key (another node, an operator on a server) needs no token.
    assert _cli(acl_agent, "raft", "list-peers", key=True).code == 0

    # Revocation holds at once, for the API and the CLI.
    assert _cli(acl_agent, "acl", "token", "delete", accessor, token=management).code == 0
    gone = _cli(acl_agent, "jobs", "list", token=alice, check=False)
    assert gone.code == 1 and "401" in gone.stderr
