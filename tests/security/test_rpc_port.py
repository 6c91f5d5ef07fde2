"""The RPC (gRPC) port of real agents, called as an outsider would: with a cluster key no
call runs or changes anything without the key's per-call credentials, and no term from
an unauthenticated or implausible leader is ever stored."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import grpc
import pytest
from agent_process import Agent
from attacks import CLUSTER_KEY, agent_run_request, grpc_call
from google.protobuf import empty_pb2

from core.security.keys import ClusterKey
from core.security.rpc import NODE_AUTH_HEADER, CallSigner
from dkron_pb.types.v1 import agent_pb2, dkron_pb2

pytestmark = pytest.mark.timeout(120)

AGENT_RUN = "/types.v1.AgentService/AgentRun"
DKRON = "/types.v1.DkronService/"
POISON = 2**62


def _term_mark(agent: Agent) -> str | None:
    path = agent.data_dir / "agent" / "agent-term"
    return path.read_text() if path.exists() else None


def _signed(
    key: str, method: str, request: object, clock: float | None = None
) -> list[tuple[str, str]]:
    signer = CallSigner(ClusterKey(key).rpc, clock=(lambda: clock) if clock else time.time)
    return [(NODE_AUTH_HEADER, signer.sign(method, request))]


def test_agent_run_needs_the_cluster_key(keyed_agent: Agent, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    address = f"127.0.0.1:{keyed_agent.rpc_port}"
    mark_before = _term_mark(keyed_agent)
    other_key = base64.b64encode(os.urandom(16)).decode()
    for metadata, expected in (
        ([], "needs the cluster key"),
        (_signed(other_key, AGENT_RUN, agent_run_request(f"touch {marker}")), "do not match"),
    ):
        request = agent_run_request(f"touch {marker}", term=POISON, run_id="evil@1")
        code, details, replies = grpc_call(
            address, AGENT_RUN, request, agent_pb2.AgentRunStream, metadata=metadata, stream=True
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details)
        assert expected in details and not replies
    assert not marker.exists()
    assert _term_mark(keyed_agent) == mark_before  # the poisoned term was never stored
    assert f"refused {AGENT_RUN} from" in keyed_agent.stderr()


def test_node_calls_and_raft_configuration_need_credentials(keyed_agent: Agent) -> None:
    address = f"127.0.0.1:{keyed_agent.rpc_port}"
    calls = [
        ("RaftGetConfiguration", empty_pb2.Empty(), dkron_pb2.RaftGetConfigurationResponse),
        ("RaftRemovePeerByID", dkron_pb2.RaftRemovePeerByIDRequest(id="node1"), empty_pb2.Empty),
        ("ExecutionDone", dkron_pb2.ExecutionDoneRequest(), dkron_pb2.ExecutionDoneResponse),
        ("RunJob", dkron_pb2.RunJobRequest(job_name="x"), dkron_pb2.RunJobResponse),
        ("Leave", empty_pb2.Empty(), empty_pb2.Empty),
    ]
    for method, request, reply_type in calls:
        code, details, _ = grpc_call(address, DKRON + method, request, reply_type)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method, code, details)
    # The node is still a one-server cluster that answers its own (signed) calls.
    request = empty_pb2.Empty()
    method = DKRON + "RaftGetConfiguration"
    code, _, replies = grpc_call(
        address,
        method,
        request,
        dkron_pb2.RaftGetConfigurationResponse,
        metadata=_signed(CLUSTER_KEY, method, request),
    )
    assert code == grpc.StatusCode.OK and len(replies[0].servers) == 1


def test_signed_calls_cannot_be_replayed_altered_or_delayed(
    keyed_agent: Agent, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{keyed_agent.rpc_port}"
    marker = tmp_path / "pwned"
    genuine = agent_run_request("echo signed-run", run_id="signed@1")
    credentials = _signed(CLUSTER_KEY, AGENT_RUN, genuine)
    code, details, replies = grpc_call(
        address, AGENT_RUN, genuine, agent_pb2.AgentRunStream, metadata=credentials, stream=True
    )
    assert code == grpc.StatusCode.OK, details
    assert replies[-1].execution.success and b"signed-run" in replies[-1].execution.output
    # The same call again (captured off the wire): refused.
    code, details, _ = grpc_call(
        address, AGENT_RUN, genuine, agent_pb2.AgentRunStream, metadata=credentials, stream=True
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED and "already used" in details
    # Fresh credentials of a genuine call, on an altered body: refused.
    altered = agent_run_request(f"touch {marker}", run_id="signed@2")
    fresh = _signed(CLUSTER_KEY, AGENT_RUN, agent_run_request("echo fine", run_id="signed@2"))
    code, details, _ = grpc_call(
        address, AGENT_RUN, altered, agent_pb2.AgentRunStream, metadata=fresh, stream=True
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED and "do not match" in details
    # Genuine credentials from two minutes ago: refused.
    late = agent_run_request("echo late", run_id="signed@3")
    stale = _signed(CLUSTER_KEY, AGENT_RUN, late, clock=time.time() - 120)
    code, details, _ = grpc_call(
        address, AGENT_RUN, late, agent_pb2.AgentRunStream, metadata=stale, stream=True
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED and "off this server's clock" in details
    assert not marker.exists()


def test_an_implausible_term_is_refused_and_not_stored(keyless_agent: Agent) -> None:
    # Without a key node calls are open (as in Dkron OSS), but a term no cluster can
    # reach is still refused, so one call cannot fence the node off for good.
    before = _term_mark(keyless_agent)
    request = agent_run_request("echo poisoned", term=POISON, run_id="poison@1")
    code, details, _ = grpc_call(
        f"127.0.0.1:{keyless_agent.rpc_port}",
        AGENT_RUN,
        request,
        agent_pb2.AgentRunStream,
        stream=True,
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "implausible leader term" in details
    assert _term_mark(keyless_agent) == before


def test_a_node_poisoned_by_an_old_version_recovers_on_start(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    (agent.data_dir / "agent").mkdir(parents=True)
    (agent.data_dir / "agent" / "agent-term").write_text(f"{POISON}\n")
    try:
        agent.start()
        assert "discarding the implausible leader term mark" in agent.stderr()
        run = agent.run_shell("after-poison", "echo recovered")
        assert run["success"] and "recovered" in run["output"]
    finally:
        agent.kill9()


def test_a_keyed_node_still_runs_its_own_jobs(keyed_agent: Agent) -> None:
    # The leader's AgentRun to its own agent is a signed node call like any other.
    run = keyed_agent.run_shell("keyed-run", "echo signed")
    assert run["success"] and "signed" in run["output"]
