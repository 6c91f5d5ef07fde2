"""Several real servers in one event loop: real pysyncobj, real gossip, real gRPC.

The multi-process acceptance tests are in tests/cluster; these check what is
cheaper to observe from inside: encryption, write forwarding, the agent-only role.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from server_helpers import free_port, server_config, wait_for

from core.jobs.model import Job
from core.node import DkronServer


def _key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def shell(name: str, command: str, **fields: Any) -> Job:
    return Job(
        name=name,
        schedule=fields.pop("schedule", "@manually"),
        executor="shell",
        executor_config={"command": command},
        **fields,
    )


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[DkronServer] = []

    async def node(name: str, **overrides: Any) -> DkronServer:
        config = server_config(tmp_path / name, free_port(), **overrides)
        server = DkronServer(dataclasses.replace(config, node_name=name))
        await server.start()
        started.append(server)
        return server

    yield node
    for server in reversed(started):
        await server.stop(drain_timeout=2, leave=False)


def _leader(servers: list[DkronServer]) -> DkronServer | None:
    leaders = [s for s in servers if s.is_leader]
    return leaders[0] if len(leaders) == 1 else None


async def test_encrypted_servers_form_and_forward_writes(cluster: Any) -> None:
    key = _key()
    first = await cluster("s1", bootstrap_expect=2, encrypt=key)
    assert first.gossip is not None
    second = await cluster(
        "s2", bootstrap_expect=2, encrypt=key, retry_join=(first.gossip.address,),
        retry_interval=0.2,
    )  # fmt: skip
    servers = [first, second]
    leader = await wait_for(lambda: _leader(servers), timeout=20)
    follower = second if leader is first else first

    # A write on the follower is forwarded to the leader, and the follower reads it
    # back at once: pysyncobj answers a forwarded command after applying it locally.
    stored = await follower.set_job(shell("hello", "echo hi"))
    assert stored.name == "hello"
    assert follower.get_job("hello") is not None

    # A manual run on the follower is run by the leader, on every alive node.
    await follower.run_job("hello")
    await wait_for(lambda: len([e for e in leader.executions("hello") if e.finished_at]) == 2)
    assert {e.node_name for e in leader.executions("hello")} == {"s1", "s2"}
    assert all(e.success and e.output == b"hi\n" for e in leader.executions("hello"))


async def test_acl_tokens_replicate_and_a_revocation_holds_on_every_server(
    cluster: Any,
) -> None:
    key = _key()
    first = await cluster("s1", bootstrap_expect=2, encrypt=key, acl_enabled=True)
    assert first.gossip is not None
    second = await cluster(
        "s2", bootstrap_expect=2, encrypt=key, acl_enabled=True,
        retry_join=(first.gossip.address,), retry_interval=0.2,
    )  # fmt: skip
    servers = [first, second]
    leader = await wait_for(lambda: _leader(servers), timeout=20)
    follower = second if leader is first else first

    # Bootstrapped and issued on the follower (forwarded to the leader by Raft).
    await follower.acl.bootstrap()
    issued = await follower.acl.create_token("ops", "client", ["default"])
    await wait_for(lambda: leader.acl.resolve(issued.secret) is not None, timeout=5)
    for server in servers:
        assert server.acl.check(issued.secret, "/v1/jobs", ("read",)) is None
    # Only the hash travels and is kept, on every server.
    for server in servers:
        stored = server.store.state.acl_tokens[issued.token.accessor_id]
        assert issued.secret not in repr(stored)

    # Revoked through the leader: refused there at once, and on the follower as soon as
    # it applies that one commit (its next append from the leader).
    await leader.acl.delete_token(issued.token.accessor_id)
    refusal = leader.acl.check(issued.secret, "/v1/jobs", ("read",))
    assert refusal is not None and refusal.status == 401
    applied = leader.store.applied_index
    await wait_for(lambda: follower.store.applied_index >= applied, timeout=2)
    refusal = follower.acl.check(issued.secret, "/v1/jobs", ("read",))
    assert refusal is not None and refusal.status == 401


async def test_a_node_with_another_key_is_not_admitted(cluster: Any) -> None:
    first = await cluster("s1", bootstrap_expect=1, encrypt=_key())
    stranger = await cluster("x1", bootstrap_expect=1, encrypt=_key())
    assert first.gossip is not None and stranger.gossip is not None
    # Its packets fail the signature check: nobody answers it, and nobody lists it.
    answered = await stranger.gossip.join_wait([first.gossip.address], timeout=1.5)
    assert answered == 0
    assert [m["Name"] for m in first.members()] == ["s1"]
    assert [m["Name"] for m in stranger.members()] == ["x1"]


async def test_an_agent_only_node_runs_jobs_targeted_by_tag(cluster: Any) -> None:
    server = await cluster("s1", bootstrap_expect=1)
    assert server.gossip is not None
    agent = await cluster(
        "a1", server=False, bootstrap_expect=0, tags={"pool": "batch"},
        join=(server.gossip.address,),
    )  # fmt: skip
    assert not agent.store.started  # no Raft on a plain agent
    await wait_for(lambda: len(server.members()) == 2)
    member = next(m for m in server.members() if m["Name"] == "a1")
    assert member["Tags"]["server"] == "false" and member["Tags"]["pool"] == "batch"

    await server.set_job(shell("batch", "echo on the agent", tags={"pool": "batch:1"}))
    await server.run_job("batch")
    await wait_for(lambda: [e for e in server.executions("batch") if e.finished_at])
    [execution] = server.executions("batch")
    assert execution.node_name == "a1" and execution.success
    assert execution.output == b"on the agent\n"


async def test_execution_done_on_a_follower_reaches_the_leader_first_report_wins(
    cluster: Any,
) -> None:
    # The agent's fallback path: a node whose leader stream is gone reports the final
    # result with Dkron's ExecutionDone to any server; a follower forwards it.
    from datetime import UTC, datetime

    import grpc.aio

    from core.wire import execution_to_proto
    from dkron_pb.types.v1 import dkron_pb2, dkron_pb2_grpc

    first = await cluster("s1", bootstrap_expect=2)
    assert first.gossip is not None
    second = await cluster(
        "s2", bootstrap_expect=2, retry_join=(first.gossip.address,), retry_interval=0.2
    )
    servers = [first, second]
    leader = await wait_for(lambda: _leader(servers), timeout=20)
    follower = second if leader is first else first

    gate = follower.config.data_dir / "gate"  # type: ignore[operator]
    job = shell("slow", f"while [ ! -e {gate} ]; do sleep 0.05; done; echo real")
    config = {**(job.executor_config or {}), "shell": "true"}
    await leader.set_job(
        dataclasses.replace(job, executor_config=config, tags={"server": "true:1"})
    )
    await leader.run_job("slow")
    [running] = await wait_for(lambda: leader.busy())

    reported = dataclasses.replace(
        running, success=True, output=b"reported\n", finished_at=datetime.now(UTC)
    )
    async with grpc.aio.insecure_channel(follower.rpc_address) as channel:
        reply = await dkron_pb2_grpc.DkronServiceStub(channel).ExecutionDone(
            dkron_pb2.ExecutionDoneRequest(execution=execution_to_proto(reported)), timeout=10
        )
    assert reply.payload == b"saved"
    # Stored by the leader before it answered, then replicated to the follower.
    [stored] = leader.executions("slow")
    assert stored.finished_at is not None and stored.output == b"reported\n"
    await wait_for(lambda: all(e.finished_at for e in follower.executions("slow")))

    # The run's own final message arrives later and changes nothing: one report counts.
    gate.touch()
    await wait_for(lambda: not any(s.agent.active for s in servers))
    [after] = leader.executions("slow")
    assert after.output == b"reported\n"
    job_after = leader.get_job("slow")
    assert job_after is not None and job_after.success_count == 1


async def _dkronctl(*args: str) -> tuple[int, str, str]:
    # Not subprocess.run: the servers answering it run on this very event loop.
    import asyncio
    import sys

    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "dkronctl"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_raft_remove_peer_takes_a_dead_server_out(cluster: Any) -> None:
    first = await cluster("s1", bootstrap_expect=3)
    assert first.gossip is not None
    seed = (first.gossip.address,)
    others = [
        await cluster(name, bootstrap_expect=3, retry_join=seed, retry_interval=0.2)
        for name in ("s2", "s3")
    ]
    servers = [first, *others]
    await wait_for(lambda: _leader(servers), timeout=20)
    await wait_for(lambda: all(len(s.store.raft_peers()) == 3 for s in servers), timeout=20)

    # s3 dies without leaving: it stays in the configuration until an operator acts.
    dead = next(s for s in servers if not s.is_leader)
    await dead.stop(drain_timeout=0, leave=False)
    alive = [s for s in servers if s is not dead]
    survivor = next(s for s in alive if not s.is_leader) if len(alive) > 1 else alive[0]
    # The leader re-adds servers gossip shows alive (Dkron's reconcile): an operator
    # removes one that gossip reports failed.
    name = dead.config.node_name

    def failed() -> bool:
        return all(
            any(m["Name"] == name and m["statusText"] == "failed" for m in s.members())
            for s in alive
        )

    await wait_for(failed, timeout=15)

    code, _, err = await _dkronctl("raft", "remove-peer", "--peer-id", "nope",
                                   "--rpc-addr", survivor.rpc_address)  # fmt: skip
    assert (code, err) == (1, 'dkronctl: id "nope" was not found in the Raft configuration\n')

    code, out, err = await _dkronctl(
        "raft", "remove-peer", "--peer-id", name, "--rpc-addr", survivor.rpc_address
    )
    assert (code, out, err) == (0, f"removed peer {name}\n", "")
    await wait_for(lambda: all(len(s.store.raft_peers()) == 2 for s in alive), timeout=10)

    code, out, _ = await _dkronctl("raft", "list-peers", "--rpc-addr", survivor.rpc_address)
    assert code == 0 and name not in out
    assert sorted(line.split()[0] for line in out.splitlines()[1:]) == sorted(
        s.config.node_name for s in alive
    )


async def test_a_fresh_server_joins_a_running_cluster_and_catches_up(cluster: Any) -> None:
    first = await cluster("s1", bootstrap_expect=1)
    assert first.gossip is not None
    await wait_for(lambda: first.is_leader)
    await first.set_job(shell("before", "echo old"))

    # No --bootstrap-expect: it finds the group through gossip and waits to be added.
    late = await cluster(
        "s2", bootstrap_expect=0, retry_join=(first.gossip.address,), retry_interval=0.2
    )
    assert not late.store.started  # start-up did not wait for the join
    await wait_for(lambda: late.store.started, timeout=15)
    await wait_for(lambda: len(first.store.raft_peers()) == 2, timeout=15)
    await wait_for(lambda: late.get_job("before") is not None, timeout=15)
    # And it takes writes, forwarded to the leader.
    await late.set_job(shell("after", "echo new"))
    await wait_for(lambda: first.get_job("after") is not None)
