"""The Raft port of a real agent, attacked: nothing read from it runs code, and what
pysyncobj would otherwise let anyone do there (admin commands, read-only replicas) is
refused. Each probe fails on the code before the Raft guards (core.store._raft_wire)."""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path

import pytest
from agent_process import Agent
from attacks import RceProbe, raft_frame, send_raw

pytestmark = pytest.mark.timeout(120)


def _alive_and_serving(agent: Agent, job_name: str) -> None:
    """The node survived: still running, still writes and reads a job."""
    assert agent.process is not None and agent.process.poll() is None, agent.stderr()
    agent.post("/v1/jobs", {"name": job_name, "schedule": "@every 1h", "executor": "shell",
                            "executor_config": {"command": "true"}})  # fmt: skip
    assert agent.api(f"/v1/jobs/{job_name}")["name"] == job_name


@pytest.mark.parametrize("agent_fixture", ["keyless_agent", "keyed_agent"])
def test_crafted_pickles_run_nothing(
    agent_fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    agent: Agent = request.getfixturevalue(agent_fixture)
    probe = RceProbe(tmp_path / "pwned")
    for name, payload in probe.payloads().items():
        answer = send_raw("127.0.0.1", agent.raft_port, [raft_frame(payload)])
        assert answer == b"", name
        assert not probe.marker.exists(), f"{name} ran code on the node"
    _alive_and_serving(agent, f"after-pickles-{agent_fixture}")
    reason = "bad frame: RefusedPickle" if agent_fixture == "keyless_agent" else "decrypt"
    assert "raft: dropped a connection from 127.0.0.1" in agent.stderr()
    assert reason in agent.stderr()


def test_oversize_garbage_and_bomb_frames_are_dropped(keyless_agent: Agent) -> None:
    port = keyless_agent.raft_port
    # A length far beyond any real frame, then data that keeps coming.
    huge = struct.pack("i", 2**31 - 1)
    assert send_raw("127.0.0.1", port, [huge, b"\0" * (4 << 20)]) == b""
    assert send_raw("127.0.0.1", port, [struct.pack("i", -5), b"xxxx"]) == b""
    assert send_raw("127.0.0.1", port, [os.urandom(4096)]) == b""
    # 120 MiB of zeros compress to about 120 kB: inflating it is refused past the cap.
    deflater = zlib.compressobj(9)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(deflater.compress(chunk) for _ in range(120)) + deflater.flush()
    assert send_raw("127.0.0.1", port, [struct.pack("i", len(bomb)) + bomb]) == b""
    _alive_and_serving(keyless_agent, "after-garbage")
    stderr = keyless_agent.stderr()
    assert "frame of 2147483647 bytes" in stderr
    assert "inflates beyond" in stderr


def test_admin_commands_and_readonly_replicas_are_refused(keyless_agent: Agent) -> None:
    port = keyless_agent.raft_port
    before = keyless_agent.cli(
        "raft", "list-peers", "--rpc-addr", f"127.0.0.1:{keyless_agent.rpc_port}", "--json"
    ).json()
    # pysyncobj's admin protocol: add a server that does not exist (the cluster would
    # then need its vote for every commit).
    add = raft_frame(pickle.dumps(["add", "127.0.0.1:1"], 2))
    assert send_raw("127.0.0.1", port, [add], read_timeout=2) == b""
    # A "readonly" peer is sent every log entry: the whole state, secrets included.
    readonly = raft_frame(pickle.dumps("readonly", 2))
    assert send_raw("127.0.0.1", port, [readonly], read_timeout=2) == b""
    after = keyless_agent.cli(
        "raft", "list-peers", "--rpc-addr", f"127.0.0.1:{keyless_agent.rpc_port}", "--json"
    ).json()
    assert [s["address"] for s in after["servers"]] == [s["address"] for s in before["servers"]]
    stderr = keyless_agent.stderr()
    assert "admin commands are disabled" in stderr
    assert "read-only Raft connections are disabled" in stderr
