"""A real 3-server + agent cluster: formation, forwarded writes, tag dispatch, agents.

Servers s1, s2 carry ``tag=test``, s3 ``tag=other``, agent a1 ``tag=test_client`` (the
reference's Test_getTargetNodes layout, plus a server outside the ``test`` pool so "all
qualifying" and "all nodes" differ). The cluster is shared by the module; the tests that
add or kill agents come last and use agents of their own.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import ZERO_TIME, Cluster, Node, epoch, poll

ALL_NODES = {"s1", "s2", "s3", "a1"}
TEST_POOL = {"s1", "s2"}


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    return make_cluster(
        servers=3,
        agents=1,
        tags={
            "s1": {"tag": "test"},
            "s2": {"tag": "test"},
            "s3": {"tag": "other"},
            "a1": {"tag": "test_client"},
        },
    )


def shell_job(name: str, command: str, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": name,
        "schedule": "@manually",
        "executor": "shell",
        "executor_config": {"command": command, "shell": "true"},
    }
    if tags is not None:
        job["tags"] = dict(tags)
    return job


def finished_groups(
    cluster: Cluster, name: str, groups: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """The job's executions once ``groups`` distinct runs exist and none is running."""

    def done() -> list[dict[str, Any]] | None:
        executions = cluster.executions(name)
        if len({e.get("group") for e in executions}) < groups:
            return None
        if any(e["finished_at"] == ZERO_TIME for e in executions):
            return None
        return executions

    found: list[dict[str, Any]] = poll(done, timeout, f"{groups} finished run(s) of {name}")
    return found


def followers(cluster: Cluster) -> list[Node]:
    leader = cluster.leader()
    return [server for server in cluster.servers if server is not leader]


# -- formation ---------------------------------------------------------------------------------


def test_three_servers_form_one_raft_group_with_bootstrap_expect_3(cluster: Cluster) -> None:
    leader = cluster.wait_formed()
    assert [server.name for server in cluster.servers if server.is_leader()] == [leader.name]
    for server in cluster.servers:
        assert server.leader_name() == leader.name
        members = {member["Name"]: member for member in cluster.members(via=server)}
        assert set(members) == ALL_NODES
        for node in cluster.nodes:
            member = members[node.name]
            assert (member["Status"], member["statusText"]) == (1, "alive"), member
            assert (member["Addr"], member["Port"]) == ("127.0.0.1", node.gossip_port), member
            tags = member["Tags"]
            assert tags["role"] == "dkron"
            assert tags["rpc_addr"] == node.rpc_addr
            assert tags["port"] == str(node.rpc_port)
            assert tags["region"] == "global"
            assert tags["dc"] == "dc1"
            assert tags["version"]
            assert tags["tag"] == node.tags["tag"]
            if node.server:
                assert tags["server"] == "true"
                assert tags["expect"] == "3"
                assert tags["raft_addr"] == f"127.0.0.1:{node.raft_port}"
            else:
                assert tags.get("server", "false") != "true"
                assert "raft_addr" not in tags
    shown = leader.get_json("/v1/leader")
    assert shown["Name"] == leader.name
    assert shown["Tags"]["rpc_addr"] == leader.rpc_addr
    # Followers answer /v1/isleader with 404 (Dkron's "I am a follower").
    for follower in followers(cluster):
        assert follower.api("GET", "/v1/isleader").status == 404


def test_dkronctl_members_and_raft_list_peers_show_the_cluster(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = followers(cluster)[0]
    table = follower.cli("members").stdout.splitlines()
    for node in cluster.nodes:
        (row,) = [line for line in table if line.split() and line.split()[0] == node.name]
        assert node.rpc_addr in row
        assert "alive" in row.split()
        assert ("server" if node.server else "agent") in row.split()
    listed = follower.cli("members", "--json").json()
    assert {member["Name"] for member in listed} == ALL_NODES
    assert leader.name in follower.cli("leader").stdout

    # Asked through a follower's gRPC port: the configuration is the cluster's, not local.
    peers = follower.cli("raft", "list-peers", "--rpc-addr", follower.rpc_addr, "--json").json()
    by_node = {peer["node"]: peer for peer in peers["servers"]}
    assert set(by_node) == {server.name for server in cluster.servers}, peers
    assert [name for name, peer in by_node.items() if peer["leader"]] == [leader.name], peers
    assert all(peer["voter"] for peer in by_node.values()), peers
    shown = follower.cli("raft", "list-peers", "--rpc-addr", follower.rpc_addr).stdout
    states = {line.split()[0]: line.split()[3] for line in shown.splitlines()[1:] if line.strip()}
    assert states == {
        server.name: "leader" if server is leader else "follower" for server in cluster.servers
    }, shown


# -- writes on followers ----------------------------------------------------------------------


def test_a_write_on_a_follower_is_readable_at_once_on_that_follower(cluster: Cluster) -> None:
    pair = followers(cluster)
    for i in range(8):
        follower = pair[i % 2]
        name = f"forwarded-{i}"
        created = follower.api("POST", "/v1/jobs", shell_job(name, f"echo {i}"))
        assert created.status == 201, created
        read = follower.api("GET", f"/v1/jobs/{name}")
        assert read.status == 200, read  # never the 404 of Dkron #1080
        assert read.json()["executor_config"]["command"] == f"echo {i}"

        replaced = follower.api("POST", "/v1/jobs", shell_job(name, f"echo {i} again"))
        assert replaced.status == 201, replaced
        assert follower.get_json(f"/v1/jobs/{name}")["executor_config"]["command"] == (
            f"echo {i} again"
        )
    last = pair[1]
    deleted = last.api("DELETE", "/v1/jobs/forwarded-7")
    assert deleted.status == 200, deleted
    assert last.api("GET", "/v1/jobs/forwarded-7").status == 404
    # Every server converges on the same jobs.
    wanted = {f"forwarded-{i}" for i in range(7)}

    def replicated(server: Node) -> bool:
        return {job["name"] for job in server.get_json("/v1/jobs?q=forwarded-")} == wanted

    for server in cluster.servers:
        poll(partial(replicated, server), 10, f"forwarded jobs replicated to {server.name}")


def test_invalid_jobs_sent_to_a_follower_are_refused_with_the_reason_and_stored_nowhere(
    cluster: Cluster,
) -> None:
    follower = followers(cluster)[0]
    bad_name = follower.api("POST", "/v1/jobs", shell_job("BAD JOB NAME!", "true"))
    assert bad_name.status == 400, bad_name
    assert "name contains illegal character 'B'" in bad_name.text
    bad_schedule = {**shell_job("bad-schedule", "true"), "schedule": "every tuesday"}
    refused = follower.api("POST", "/v1/jobs", bad_schedule)
    assert refused.status == 400, refused
    assert "can't parse job schedule" in refused.text
    orphan = {**shell_job("orphan-child", "true"), "parent_job": "no-such-parent"}
    missing_parent = follower.api("POST", "/v1/jobs", orphan)
    assert missing_parent.status == 404, missing_parent
    assert "specified parent job not found" in missing_parent.text

    # A valid write afterwards is a barrier: once it is everywhere, the refused ones
    # would have been too.
    follower.api("POST", "/v1/jobs", shell_job("after-the-refusals", "true"))

    def has_barrier(server: Node) -> bool:
        return server.api("GET", "/v1/jobs/after-the-refusals").status == 200

    for server in cluster.servers:
        poll(partial(has_barrier, server), 10, f"barrier job on {server.name}")
        for name in ("bad-schedule", "orphan-child"):
            assert server.api("GET", f"/v1/jobs/{name}").status == 404


# -- target selection (reference §8 Test_getTargetNodes) -----------------------------------


@pytest.mark.parametrize(
    ("case", "tags", "pool", "count"),
    [
        ("two-of-test", {"tag": "test:2"}, TEST_POOL, 2),
        ("no-tags", {}, ALL_NODES, 4),
        ("the-client", {"tag": "test_client:1"}, {"a1"}, 1),
        ("no-cardinality", {"tag": "test"}, TEST_POOL, 2),
        ("cardinality-over-pool", {"tag": "test:5"}, TEST_POOL, 2),
        ("reserved-tag", {"server": "true:1"}, {"s1", "s2", "s3"}, 1),
        ("and-lowest-cardinality", {"tag": "test:2", "server": "true:1"}, TEST_POOL, 1),
    ],
)
def test_a_job_runs_on_its_target_nodes(
    cluster: Cluster, case: str, tags: dict[str, str], pool: set[str], count: int
) -> None:
    name = f"target-{case}"
    cluster.create_job(shell_job(name, "echo targeted", tags))
    cluster.run_job(name)
    executions = finished_groups(cluster, name, 1)
    nodes = [execution["node_name"] for execution in executions]
    assert len(nodes) == count, executions
    assert len(set(nodes)) == count, executions
    assert set(nodes) <= pool, executions
    for execution in executions:
        assert execution["success"] is True, execution
        assert execution["output"] == "targeted\n"


@pytest.mark.parametrize(
    ("case", "tags"),
    [
        ("unknown-value", {"tag": "nope"}),
        ("invalid-cardinality", {"tag": "test:invalid"}),
        ("zero-cardinality", {"tag": "test:0"}),
        ("and-with-unknown-tag", {"tag": "test", "rack": "r1"}),
        ("other-region", {"region": "elsewhere"}),
    ],
)
def test_a_job_without_target_nodes_records_a_failed_execution(
    cluster: Cluster, case: str, tags: dict[str, str]
) -> None:
    name = f"untargeted-{case}"
    cluster.create_job(shell_job(name, "echo should-not-run", tags))
    cluster.run_job(name)
    (execution,) = finished_groups(cluster, name, 1)
    assert execution["success"] is False
    assert f"no target nodes found to run job {name}" in execution.get("output", "")
    assert "should-not-run" not in execution.get("output", "")


def test_one_of_two_is_picked_at_random_run_after_run(cluster: Cluster) -> None:
    name = "target-one-of-test"
    cluster.create_job(shell_job(name, "true", {"tag": "test:1"}))
    runs = 20
    for _ in range(runs):
        cluster.run_job(name)
    executions = finished_groups(cluster, name, runs, timeout=40)
    per_group = Counter(execution["group"] for execution in executions)
    assert len(per_group) == runs
    assert set(per_group.values()) == {1}, per_group  # one node per run, never two
    picked = Counter(execution["node_name"] for execution in executions)
    assert set(picked) <= TEST_POOL, picked
    # Uniform choice: each of the two is picked at least once in 20 runs (p = 2/2^20).
    assert set(picked) == TEST_POOL, picked


# -- agents ------------------------------------------------------------------------------------


def test_an_agent_joining_later_with_tags_is_listed_and_gets_work(cluster: Cluster) -> None:
    late = cluster.add_agent("a2", tags={"tag": "late", "rack": "r9"})
    line = late.log()
    assert f"dkron-py agent 'a2' (agent, pid {late.pid})" in line
    assert f"rpc {late.rpc_addr}" in line
    assert f"gossip {late.gossip_addr}" in line

    def listed_everywhere() -> bool:
        for server in cluster.servers:
            members = {m["Name"]: m for m in cluster.members(via=server)}
            member = members.get("a2")
            if member is None or member["Status"] != 1:
                return False
            assert member["Tags"]["tag"] == "late"
            assert member["Tags"]["rack"] == "r9"
            assert member["Tags"]["rpc_addr"] == late.rpc_addr
        return True

    poll(listed_everywhere, 20, "a2 alive in every server's /v1/members")
    cluster.create_job(shell_job("for-the-late-agent", "echo late", {"tag": "late", "rack": "r9"}))
    cluster.run_job("for-the-late-agent")
    (execution,) = finished_groups(cluster, "for-the-late-agent", 1)
    assert execution["node_name"] == "a2"
    assert execution["success"] is True
    assert execution["output"] == "late\n"


def wait_alive_at_leader(cluster: Cluster, name: str) -> None:
    poll(
        lambda: any(
            m["Name"] == name and m["Status"] == 1 for m in cluster.members(via=cluster.leader())
        ),
        20,
        f"{name} alive in the leader's members",
    )


def test_an_agent_killed_mid_run_leaves_a_failed_execution_not_a_running_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    victim = cluster.add_agent("a3", tags={"role_in_test": "victim"})
    wait_alive_at_leader(cluster, "a3")
    marker = tmp_path / "started"
    cluster.create_job(
        shell_job("long-on-victim", f"touch {marker}; sleep 60", {"role_in_test": "victim"})
    )
    cluster.run_job("long-on-victim")
    poll(marker.exists, 20, "the long command started on a3")
    (running,) = cluster.executions("long-on-victim")
    assert running["finished_at"] == ZERO_TIME
    assert running["node_name"] == "a3"

    killed_at = epoch(running["started_at"]) or 0.0
    victim.kill()

    def finished() -> dict[str, Any] | None:
        (execution,) = cluster.executions("long-on-victim")
        return None if execution["finished_at"] == ZERO_TIME else execution

    failed: dict[str, Any] = poll(finished, 15, "the killed agent's execution finished")
    assert failed["success"] is False
    assert failed["node_name"] == "a3"
    assert (epoch(failed["finished_at"]) or 0.0) >= killed_at
    output = failed.get("output", "")
    # A clear message: what happened, and to which node.
    assert re.search(r"terminated|unreachable|lost", output, re.I), output
    assert "a3" in output, output
    for server in cluster.servers:
        busy = server.get_json("/v1/busy")
        assert all(e.get("job_name") != "long-on-victim" for e in busy), busy

    # Gossip marks the killed agent failed (not left: it never said goodbye).
    poll(
        lambda: any(
            m["Name"] == "a3" and m.get("statusText") == "failed"
            for m in cluster.members(via=cluster.leader())
        ),
        30,
        "a3 shown as failed",
    )


def test_an_agent_stopped_with_sigterm_leaves_gracefully(cluster: Cluster) -> None:
    leaving = cluster.add_agent("a4", tags={"tag": "leaving"})
    wait_alive_at_leader(cluster, "a4")
    assert leaving.stop() == 0, leaving.tail()
    # A goodbye, not a failure: every server shows it as left.
    for server in cluster.servers:
        poll(
            partial(member_status, cluster, server, "a4", "left"),
            20,
            f"a4 shown as left by {server.name}",
        )


def member_status(cluster: Cluster, server: Node, name: str, status: str) -> bool:
    return any(
        m["Name"] == name and m.get("statusText") == status for m in cluster.members(via=server)
    )


def peer_names(server: Node) -> set[str]:
    peers = server.cli("raft", "list-peers", "--rpc-addr", server.rpc_addr, "--json").json()
    return {peer["node"] for peer in peers["servers"]}


def test_a_server_that_leaves_is_removed_from_raft_and_added_back_when_it_returns(
    cluster: Cluster,
) -> None:
    leader = cluster.wait_formed()
    follower = followers(cluster)[0]
    left = follower.api("POST", "/v1/leave")
    assert left.status == 200, left
    assert follower.process is not None
    assert follower.process.wait(30) == 0, follower.tail()
    names = {server.name for server in cluster.servers}
    poll(
        lambda: peer_names(leader) == names - {follower.name},
        20,
        f"{follower.name} removed from the Raft configuration",
    )
    poll(
        partial(member_status, cluster, leader, follower.name, "left"),
        20,
        f"{follower.name} shown as left",
    )
    # Two servers of two still commit writes.
    cluster.create_job(shell_job("after-a-leave", "true"), via=leader)

    follower.start()
    poll(lambda: peer_names(leader) == names, 30, f"{follower.name} back in the Raft group")
    cluster.wait_formed()
    poll(
        lambda: follower.api("GET", "/v1/jobs/after-a-leave").status == 200,
        20,
        f"{follower.name} caught up with the writes made while it was away",
    )
