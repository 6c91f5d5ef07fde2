"""The agent process dies or is stopped: state survives ``kill -9``, SIGTERM drains."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from e2e_helpers import ZERO, Api, finished, parse_time, shell_job, wait_for

LOST = "execution lost: node "


def snapshot(api: Api, names: list[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    jobs = {job["name"]: job for job in api.get("/v1/jobs").json()}
    return jobs, {name: api.executions(name) for name in names}


def test_kill_9_mid_schedule_then_restart_keeps_everything(
    fresh_agent: Callable[[], Api],
) -> None:
    api = fresh_agent()
    api.agent.start()
    api.create(shell_job("tick", "sleep 0.6; echo tick", "@every 1s"))
    api.create(shell_job("broken", "echo broken; exit 3"))
    api.create(shell_job("parent", "echo parent"))
    api.create(shell_job("child", "echo child", parent_job="parent"))
    api.run("broken")
    api.wait_done("broken", 1)
    api.run("broken")
    api.wait_done("broken", 2)
    api.run("parent")
    api.wait_done("child", 1)
    api.wait_done("tick", 2, timeout=10)
    # Mid-schedule and mid-run: a tick is executing when the process is killed.
    wait_for(lambda: any(e["job_name"] == "tick" for e in api.busy()), timeout=5)
    names = ["tick", "broken", "parent", "child"]
    jobs_before, runs_before = snapshot(api, names)
    api.agent.kill9()

    restarted_at = datetime.now(UTC)
    api.agent.start()
    jobs_after, runs_after = snapshot(api, names)

    assert set(jobs_after) == set(jobs_before)
    for name in ("broken", "parent", "child"):
        assert jobs_after[name] == jobs_before[name]
    assert jobs_after["broken"]["error_count"] == 2
    assert jobs_after["parent"]["dependent_jobs"] == ["child"]
    tick_before, tick_after = jobs_before["tick"], jobs_after["tick"]
    for key in ("schedule", "executor_config", "concurrency", "disabled"):
        assert tick_after[key] == tick_before[key]
    assert tick_after["success_count"] >= tick_before["success_count"] >= 2

    for name in names:
        after = {e["id"]: e for e in runs_after[name]}
        for execution in runs_before[name]:
            assert execution["id"] in after, (name, execution)
            if finished(execution):
                assert after[execution["id"]] == execution
            else:
                # Not left "running" forever: finished on its own before the kill, or
                # recorded as lost by the restarted leader (once it has asked the node,
                # which it does right after taking the lead: wait for that, not longer).
                def settled(name: str = name, key: str = execution["id"]) -> Any:
                    back = {e["id"]: e for e in api.executions(name)}[key]
                    return back if finished(back) else None

                back = wait_for(settled, timeout=10)
                assert back["success"] or back["output"].startswith(LOST), back
    assert not [e for e in api.busy() if parse_time(e["started_at"]) < restarted_at]

    # Scheduling resumes on its own.
    def resumed() -> bool:
        return any(
            parse_time(e["started_at"]) > restarted_at and e["success"] for e in api.done("tick")
        )

    wait_for(resumed, timeout=10)
    assert parse_time(api.job("tick")["next"]) > restarted_at


def test_sigterm_drains_a_running_execution_then_exits_0(
    fresh_agent: Callable[[], Api],
) -> None:
    api = fresh_agent()
    api.agent.start()
    api.create(shell_job("draining", "sleep 2; echo slept"))
    api.run("draining")
    (running,) = wait_for(lambda: [e for e in api.busy() if e["job_name"] == "draining"])
    assert running["finished_at"] == ZERO

    signalled = time.monotonic()
    api.agent.signal(signal.SIGTERM)
    assert api.agent.wait(timeout=20) == 0
    assert time.monotonic() - signalled > 0.5  # it waited for the sleep

    api.agent.start()
    (done,) = api.executions("draining")
    assert done["id"] == running["id"]
    assert done["success"] is True
    assert done["output"] == "slept\n"
    duration = parse_time(done["finished_at"]) - parse_time(done["started_at"])
    assert duration.total_seconds() >= 1.9
    assert api.job("draining")["success_count"] == 1
    assert api.busy() == []
