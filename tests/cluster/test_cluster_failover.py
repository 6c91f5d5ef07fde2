"""Failover on a real 3-server cluster with one worker agent: exactly-once launches.

Every scheduled job targets the agent (``pool=worker:1``), so each (job, scheduled second)
should yield exactly one execution, and its command appends a line to a file: the file
counts what really ran, whether or not the store heard about it. For every job, read in
this order, ``successful executions <= lines <= executions recorded`` must hold at any
moment: a launch the store does not know about (a stale leader's double launch) breaks
the right-hand side.
"""

from __future__ import annotations

import math
import shlex
import time
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import ZERO_TIME, Cluster, Node, epoch, poll

# The 2 s p99 failover target is measured by bench/chaos.py over ten kills; one kill in a
# test run on a loaded machine can take an extra election round (a split vote), so the
# test bounds it by what still proves another server took over the schedule promptly.
FAILOVER_BUDGET_S = 4.0
PAUSE_S = 10.0
STEP_DOWN_BUDGET_S = 3.0


@pytest.fixture(scope="module")
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    return make_cluster(servers=3, agents=1, tags={"a1": {"pool": "worker"}})


def create_tick_pair(cluster: Cluster, tmp_path: Path, prefix: str, grace: str) -> dict[str, Path]:
    """Two `@every 1s` jobs on the worker, misfire `skip` and `run_once` (within
    ``grace``); job name -> the file each run appends a line to."""
    jobs = {
        f"{prefix}-skip": tmp_path / "skip.runs",
        f"{prefix}-run-once": tmp_path / "run-once.runs",
    }
    cluster.create_job(tick_job(f"{prefix}-skip", jobs[f"{prefix}-skip"]))
    cluster.create_job(
        tick_job(
            f"{prefix}-run-once",
            jobs[f"{prefix}-run-once"],
            misfire_policy="run_once",
            misfire_grace=grace,
        )
    )
    return jobs


def tick_job(name: str, runs: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "schedule": "@every 1s",
        "executor": "shell",
        "executor_config": {"command": f"echo run >> {shlex.quote(str(runs))}", "shell": "true"},
        "tags": {"pool": "worker:1"},
        **extra,
    }


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def scheduled(executions: Iterable[dict[str, Any]]) -> list[float]:
    return [epoch(e.get("scheduled_at")) or 0.0 for e in executions]


def wait_ticks(cluster: Cluster, names: Iterable[str], after: float, timeout: float = 20) -> None:
    """Until every job has a finished execution scheduled at or after ``after``."""

    def ticked(name: str) -> bool:
        return any(
            (epoch(e.get("scheduled_at")) or 0.0) >= after and e["finished_at"] != ZERO_TIME
            for e in cluster.executions(name)
        )

    poll(
        lambda: all(ticked(name) for name in names),
        timeout,
        f"a finished tick scheduled at or after {after:.3f} for {list(names)}",
        interval=0.1,
    )


def check_bounds(cluster: Cluster, name: str, runs: Path) -> None:
    """successful <= lines written <= recorded, read in that order (see the module doc)."""
    successful = sum(1 for e in cluster.executions(name) if e["success"])
    written = lines(runs)
    recorded = len(cluster.executions(name))
    assert successful <= written <= recorded, (name, successful, written, recorded)


def settle(cluster: Cluster, names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Disable the jobs and wait until none of their executions is running (none stuck)."""
    for name in names:
        assert cluster.toggle_job(name)["disabled"] is True

    def quiet() -> tuple[dict[str, list[dict[str, Any]]]] | None:
        found = {name: cluster.executions(name) for name in names}
        running = [e for runs in found.values() for e in runs if e["finished_at"] == ZERO_TIME]
        return None if running else (found,)  # a tuple: an empty dict is an answer too

    (settled,) = poll(quiet, 20, "every execution finished")
    found: dict[str, list[dict[str, Any]]] = settled
    return found


def assert_exactly_once(name: str, executions: list[dict[str, Any]], worker: str) -> None:
    counts = Counter(scheduled(executions))
    twice = {moment: n for moment, n in counts.items() if n > 1}
    assert not twice, f"{name}: scheduled times launched more than once: {twice}"
    run_ids = Counter(e["run_id"] for e in executions if e.get("run_id"))
    assert all(n == 1 for n in run_ids.values()), run_ids
    for execution in executions:
        assert execution["node_name"] == worker, execution
        assert execution.get("attempt", 1) == 1, execution
        assert execution["finished_at"] != ZERO_TIME, execution


def assert_ticks_present(
    name: str, executions: list[dict[str, Any]], first: float, last: float
) -> None:
    """Every whole second in [first, last] has an execution (nothing missed there)."""
    have = {round(moment) for moment in scheduled(executions)}
    want = set(range(math.ceil(first), math.floor(last) + 1))
    missing = sorted(want - have)
    assert not missing, f"{name}: ticks missed outside the leaderless window: {missing}"


def test_kill_9_of_the_leader_another_server_takes_over_promptly_and_nothing_runs_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.heal()
    worker = cluster.agents[0].name
    jobs = create_tick_pair(cluster, tmp_path, "kill", grace="30s")
    steady_from = time.time()
    wait_ticks(cluster, jobs, steady_from + 2)

    old, killed_at = cluster.kill_leader()
    new = cluster.wait_new_leader(exclude=[old])
    elected_seen = time.time()
    wait_ticks(cluster, jobs, killed_at + 3)
    for name, runs in jobs.items():
        check_bounds(cluster, name, runs)

    # The old leader comes back on the same ports and data: it must not fire anything.
    old.start()
    cluster.wait_formed()
    rejoined = time.time()
    wait_ticks(cluster, jobs, rejoined + 2)
    stopping = time.time()
    final = settle(cluster, jobs)

    launches_after_kill = [
        epoch(e["started_at"]) or math.inf
        for runs in final.values()
        for e in runs
        if (epoch(e.get("scheduled_at")) or 0.0) > killed_at
    ]
    failover = min(launches_after_kill) - killed_at
    assert failover <= FAILOVER_BUDGET_S, (
        f"first launch by the new leader {new.name} came {failover:.2f}s after the kill "
        f"(leader seen {elected_seen - killed_at:.2f}s after it)"
    )
    for name, executions in final.items():
        assert_exactly_once(name, executions, worker)
        first = min(scheduled(executions))
        assert_ticks_present(name, executions, first, killed_at - 1)
        assert_ticks_present(name, executions, elected_seen + 1, stopping - 1)
        check_bounds(cluster, name, jobs[name])
    # run_once owes the ticks missed while there was no leader: one catch-up launch at most.
    once = final["kill-run-once"]
    gap = [m for m in scheduled(once) if killed_at - 1 < m < elected_seen + 1]
    assert gap, f"run_once job: no launch between the kill and the new leader: {once}"


def test_sigstop_of_the_leader_for_10s_then_sigcont_keeps_one_leader_and_no_double_launch(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.heal()
    worker = cluster.agents[0].name
    jobs = create_tick_pair(cluster, tmp_path, "pause", grace="60s")
    wait_ticks(cluster, jobs, time.time() + 2)

    old = cluster.leader()
    paused_at = time.time()
    old.pause()
    new = cluster.wait_new_leader(exclude=[old])
    elected_seen = time.time()

    # The 10 s freeze is the scenario itself; meanwhile the two others keep one leader.
    seen_leaders: set[str] = set()

    def pause_over() -> bool:
        agreed = cluster.agreed_leader(exclude=[old])
        if agreed is not None:
            seen_leaders.add(agreed.name)
        return time.time() >= paused_at + PAUSE_S

    poll(pause_over, PAUSE_S + 5, "the end of the pause", interval=0.2)
    assert seen_leaders == {new.name}, seen_leaders
    for name, runs in jobs.items():
        check_bounds(cluster, name, runs)

    old.resume()
    resumed_at = time.time()

    def stepped_down() -> bool:
        return not old.is_leader() and old.leader_name() == new.name

    poll(stepped_down, 15, f"{old.name} following {new.name} after SIGCONT")
    step_down = time.time() - resumed_at
    assert step_down <= STEP_DOWN_BUDGET_S, f"{old.name} took {step_down:.2f}s to step down"
    leader = cluster.wait_formed()
    assert [s.name for s in cluster.servers if s.is_leader()] == [leader.name]
    wait_ticks(cluster, jobs, time.time() + 2)
    stopping = time.time()
    final = settle(cluster, jobs)

    for name, executions in final.items():
        assert_exactly_once(name, executions, worker)
        first = min(scheduled(executions))
        assert_ticks_present(name, executions, first, paused_at - 1)
        assert_ticks_present(name, executions, elected_seen + 1, stopping - 1)
        check_bounds(cluster, name, jobs[name])


def test_full_cluster_kill_9_and_restart_keeps_jobs_and_executions(cluster: Cluster) -> None:
    cluster.heal()
    # Scheduled jobs left enabled (by a test that failed half-way) would keep adding
    # executions; stop them so "before" and "after" can be compared whole.
    enabled = [
        job["name"]
        for job in cluster.any_server().get_json("/v1/jobs")
        if not job["disabled"] and job["schedule"] != "@manually"
    ]
    settle(cluster, enabled)
    cluster.create_job(
        {
            "name": "survivor",
            "schedule": "@manually",
            "executor": "shell",
            "executor_config": {"command": "echo kept", "shell": "true"},
            "tags": {"pool": "worker:1"},
            "metadata": {"kept": "yes"},
        }
    )
    cluster.run_job("survivor")
    poll(
        lambda: [e for e in cluster.executions("survivor") if e["finished_at"] != ZERO_TIME],
        20,
        "first survivor run",
    )
    cluster.run_job("survivor")
    poll(
        lambda: len([e for e in cluster.executions("survivor") if e["success"]]) == 2,
        20,
        "second survivor run",
    )

    def state(server: Node) -> dict[str, Any]:
        # `next` of an enabled scheduled job moves on with time; nothing else may change.
        jobs = {
            job["name"]: {k: v for k, v in job.items() if k != "next"}
            for job in server.get_json("/v1/jobs")
        }
        executions = {
            name: sorted(
                server.get_json(f"/v1/jobs/{name}/executions"), key=lambda e: e.get("id", "")
            )
            for name in jobs
        }
        return {"jobs": jobs, "executions": executions}

    leader = cluster.leader()
    before = state(leader)
    assert before["executions"]["survivor"], before
    assert all(e["output"] == "kept\n" for e in before["executions"]["survivor"])

    cluster.kill_all()
    assert not any(node.running for node in cluster.nodes)
    for node in cluster.nodes:
        node.spawn()
    for node in cluster.nodes:
        node.wait_started()
    leader = cluster.wait_formed()
    assert [s.name for s in cluster.servers if s.is_leader()] == [leader.name]

    def restored(server: Node) -> dict[str, Any] | None:
        found = state(server)
        return found if found == before else None

    def difference(server: Node) -> str:
        return f"\nbefore={before}\nafter={state(server)}"

    for server in cluster.servers:
        after = poll(
            partial(restored, server),
            30,
            f"jobs and executions restored on {server.name}",
            on_timeout=partial(difference, server),
        )
        assert after["jobs"]["survivor"]["metadata"] == {"kept": "yes"}

    # And it still works: one more run lands beside the restored ones.
    cluster.run_job("survivor")
    poll(
        lambda: len([e for e in cluster.executions("survivor") if e["success"]]) == 3,
        20,
        "a run after the restart",
    )
