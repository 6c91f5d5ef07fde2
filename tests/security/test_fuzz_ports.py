"""Garbage and crafted pickles thrown at every port of a running node (Raft, gossip over
UDP and TCP, gRPC): it survives, runs nothing and keeps its data. Seeded, so a failure
replays exactly."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from pathlib import Path

import grpc
import pytest
from agent_process import Agent
from attacks import RceProbe, raft_frame
from swimprotocol.sign import Signatures

from core.membership.gossip import DEFAULT_SECRET
from core.server.rpc import RPC_ACCESS

pytestmark = pytest.mark.timeout(180)

SEED = 20261203
ROUNDS = 150
# pysyncobj accepts one Raft connection per tick (and listens with a backlog of 5), so
# its port gets fewer connections; each carries a whole frame of noise.
RAFT_ROUNDS = 15
_SWIM_PREFIX = struct.Struct("!BBI")


def _gossip_packet(pickled: bytes, secret: bytes = DEFAULT_SECRET) -> bytes:
    """swimprotocol's framing, correctly signed with ``secret`` (public without a key)."""
    salt, digest = Signatures(secret).sign(pickled)
    prefix = _SWIM_PREFIX.pack(len(salt), len(digest), len(pickled))
    masked = bytes(a ^ b for a, b in zip(prefix, b"SWIM?!", strict=True))
    return masked + salt + digest + pickled


def _udp(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.sendto(data[:65000], ("127.0.0.1", port))


def _tcp(port: int, data: bytes) -> None:
    # Send and hang up: what the node makes of it is checked afterwards.
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(data)


def _grpc_garbage(port: int, bodies: list[bytes]) -> None:
    """Every method the node serves, called with bodies that are not its message."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for method in RPC_ACCESS:
            if method.endswith("/AgentRun"):
                call = channel.unary_stream(method)
            else:
                call = channel.unary_unary(method)
            for body in bodies:
                with contextlib.suppress(grpc.RpcError):
                    reply = call(body, timeout=5)
                    if method.endswith("/AgentRun"):
                        list(reply)


def _job_names(agent: Agent) -> list[str]:
    return sorted(job["name"] for job in agent.api("/v1/jobs"))


@pytest.mark.parametrize("agent_fixture", ["keyless_agent", "keyed_agent"])
def test_every_port_survives_garbage_and_runs_nothing(
    agent_fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    agent: Agent = request.getfixturevalue(agent_fixture)
    rng = random.Random(SEED)
    probe = RceProbe(tmp_path / "pwned")
    before = _job_names(agent)

    crafted = list(probe.payloads().values())
    for round_number in range(ROUNDS):
        noise = rng.randbytes(rng.randrange(0, 2048))
        if round_number < RAFT_ROUNDS:
            _tcp(agent.raft_port, noise)
            _tcp(agent.raft_port, struct.pack("i", len(noise)) + noise)
        _udp(agent.gossip_port, noise)
        _tcp(agent.gossip_port, noise)
        _tcp(agent.rpc_port, noise)
    for payload in crafted:
        _tcp(agent.raft_port, raft_frame(payload))
        _udp(agent.gossip_port, _gossip_packet(payload))
        _tcp(agent.gossip_port, _gossip_packet(payload))
    # Over real HTTP/2: garbage bodies, and the pickles as bodies. Without a key the
    # agent-run call is open by design, so it only gets bodies that cannot decode.
    bodies = [rng.randbytes(rng.randrange(1, 512)) for _ in range(10)]
    if agent_fixture == "keyed_agent":
        bodies += crafted
    _grpc_garbage(
        agent.rpc_port,
        [b"\xff" * 8, b"\x0a\xff\xff\xff\xff\x0f"]
        + (bodies if agent_fixture == "keyed_agent" else []),
    )

    assert agent.process is not None and agent.process.poll() is None, agent.stderr()
    assert not probe.marker.exists()
    assert _job_names(agent) == before  # nothing was written
    name = f"after-fuzz-{agent_fixture}"
    agent.post("/v1/jobs", {"name": name, "schedule": "@manually", "executor": "shell",
                            "executor_config": {"command": "true"}})  # fmt: skip
    assert name in _job_names(agent)
