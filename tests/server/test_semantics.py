"""Job semantics through a real single-node server: scheduling, forbid, retries,
parent/child chains, ephemeral jobs, one-shot @at, restarts."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from server_helpers import finished, wait_for

from core.jobs.model import Job, RetryBackoff, unix_nano
from core.store.state import JobQuery, NotFound, StoreError


def shell(name: str, command: str, **fields: object) -> Job:
    config = {"command": command, "shell": "true"}
    return Job(name=name, executor="shell", executor_config=config, **fields)  # type: ignore[arg-type]


async def test_every_second_job_runs_with_output_and_counters(make_server) -> None:
    server = await make_server()
    stored = await server.set_job(shell("tick", "echo tick-$ENV_JOB_NAME", schedule="@every 1s"))
    assert stored.next is not None and stored.next > datetime.now(UTC) - timedelta(seconds=1)

    runs = await wait_for(lambda: len(finished(server, "tick")) >= 2 and finished(server, "tick"))

    assert all(r.success and r.output == b"tick-tick\n" for r in runs)
    # Launched on the scheduled second, from the fire's own record.
    for run in runs:
        assert run.scheduled_at is not None and run.started_at is not None
        assert timedelta(0) <= run.started_at - run.scheduled_at < timedelta(seconds=0.5)
        assert run.run_id == f"tick@{int(run.scheduled_at.timestamp()) * 10**9}"
    job = server.get_job("tick")
    assert job.success_count >= 2 and job.status == "success" and job.last_success is not None


async def test_forbid_never_overlaps_under_a_slow_command(make_server, tmp_path: Path) -> None:
    server = await make_server()
    log = tmp_path / "overlap.log"
    # Each run appends start/end marks; a run lasts longer than the 1 s period.
    command = f"echo start >> {log}; sleep 1.5; echo end >> {log}"
    await server.set_job(shell("slow", command, schedule="@every 1s", concurrency="forbid"))

    await wait_for(lambda: len(finished(server, "slow")) >= 2, timeout=15)
    await server.set_job(
        shell("slow", command, schedule="@every 1s", concurrency="forbid", disabled=True)
    )
    await wait_for(lambda: not server.busy(), timeout=5)

    marks = log.read_text().split()
    assert marks[: len(marks) // 2 * 2] == ["start", "end"] * (len(marks) // 2)
    starts = sorted(e.started_at for e in server.executions("slow"))
    finishes = {e.started_at: e.finished_at for e in server.executions("slow")}
    for earlier, later in itertools.pairwise(starts):
        assert finishes[earlier] is not None and finishes[earlier] <= later


async def test_allow_jobs_may_overlap(make_server) -> None:
    server = await make_server()
    await server.set_job(shell("overlap", "sleep 1.5", schedule="@every 1s"))
    await wait_for(lambda: len(server.busy()) >= 2, timeout=10)


async def test_retries_with_exponential_backoff_then_success(make_server, tmp_path: Path) -> None:
    server = await make_server()
    attempts = tmp_path / "attempts"
    # Fails twice, then succeeds.
    command = f"echo x >> {attempts}; test $(wc -l < {attempts}) -ge 3"
    backoff = RetryBackoff(delay="200ms", exponential=True)
    job = shell("flaky", command, schedule="@manually", retries=3, retry_backoff=backoff)
    await server.set_job(job)

    await server.run_job("flaky")
    runs = await wait_for(lambda: len(finished(server, "flaky")) >= 3 and finished(server, "flaky"))

    runs.sort(key=lambda e: e.attempt)
    assert [r.attempt for r in runs] == [1, 2, 3]
    assert [r.success for r in runs] == [False, False, True]
    assert len({r.group for r in runs}) == 1
    gaps = [b.started_at - a.finished_at for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= timedelta(milliseconds=200) and gaps[1] >= timedelta(milliseconds=400)
    # Succeeding on a retry is a success (Dkron reports partially_failed).
    assert server.get_job("flaky").status == "success"


async def test_retries_exhausted_mark_the_job_failed(make_server) -> None:
    server = await make_server()
    backoff = RetryBackoff(delay="50ms")
    await server.set_job(
        shell("broken", "exit 3", schedule="@manually", retries=1, retry_backoff=backoff)
    )
    await server.run_job("broken")
    runs = await wait_for(
        lambda: len(finished(server, "broken")) >= 2 and finished(server, "broken")
    )
    assert all(r.output.startswith(b"exit status 3\n") for r in runs)
    assert server.get_job("broken").status == "failed"
    assert server.get_job("broken").error_count == 2


async def test_children_run_after_a_successful_parent_only(make_server, tmp_path: Path) -> None:
    server = await make_server()
    await server.set_job(shell("parent", "true", schedule="@manually"))
    await server.set_job(shell("child", "echo child", parent_job="parent"))
    await server.set_job(shell("grandchild", "echo grandchild", parent_job="child"))
    assert server.get_job("parent").dependent_jobs == ["child"]

    # Re-saving the parent keeps its dependents (Dkron #1761).
    await server.set_job(shell("parent", "true", schedule="@manually"))
    assert server.get_job("parent").dependent_jobs == ["child"]

    await server.run_job("parent")
    await wait_for(lambda: finished(server, "grandchild"))
    assert finished(server, "child")[0].output == b"child\n"

    await server.set_job(shell("parent", "false", schedule="@manually"))
    await server.run_job("parent")
    await wait_for(lambda: len(finished(server, "parent")) == 2)
    await wait_for(lambda: not server.busy())
    assert len(finished(server, "child")) == 1  # the failed parent did not trigger it

    with pytest.raises(StoreError, match="delete children first"):
        await server.delete_job("parent")


async def test_missing_parent_is_refused(make_server) -> None:
    server = await make_server()
    with pytest.raises(NotFound, match="specified parent job not found"):
        await server.set_job(shell("orphan", "true", parent_job="nobody"))
    assert server.get_job("orphan") is None


async def test_ephemeral_job_is_deleted_after_success(make_server) -> None:
    server = await make_server()
    await server.set_job(shell("once", "true", schedule="@manually", ephemeral=True))
    await server.run_job("once")
    await wait_for(lambda: server.get_job("once") is None)


async def test_at_fires_once(make_server) -> None:
    server = await make_server()
    when = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    job = await server.set_job(shell("oneshot", "echo once", schedule=f"@at {when.isoformat()}"))
    assert job.next == when
    runs = await wait_for(lambda: finished(server, "oneshot"))
    assert runs[0].scheduled_at == when
    await wait_for(lambda: server.get_job("oneshot").next is None)
    assert len(server.executions("oneshot")) == 1


async def test_disabled_and_expired_jobs_do_not_fire(make_server) -> None:
    server = await make_server()
    past = datetime.now(UTC) - timedelta(minutes=1)
    await server.set_job(shell("off", "true", schedule="@every 1s", disabled=True))
    await server.set_job(shell("expired", "true", schedule="@every 1s", expires_at=past))
    await server.set_job(shell("on", "true", schedule="@every 1s"))
    await wait_for(lambda: len(finished(server, "on")) >= 2)
    assert server.executions("off") == [] and server.executions("expired") == []
    assert server.get_job("off").next is None


async def test_restart_keeps_jobs_counters_and_history(make_server) -> None:
    server = await make_server()
    await server.set_job(shell("kept", "echo kept", schedule="@manually"))
    await server.run_job("kept")
    await wait_for(lambda: finished(server, "kept"))
    before = server.get_job("kept")
    await server.stop(drain_timeout=5)

    again = await make_server()

    job = again.get_job("kept")
    assert job is not None and job.success_count == before.success_count == 1
    assert [e.output for e in again.executions("kept")] == [b"kept\n"]


async def test_a_run_lost_to_a_restart_is_failed_not_stuck(make_server) -> None:
    server = await make_server()
    await server.set_job(shell("lost", "sleep 30", schedule="@manually", concurrency="forbid"))
    await server.run_job("lost")
    await wait_for(lambda: server.busy())
    # Simulate a crash: the record says running, nothing will ever report back.
    await server.store.close()
    await server.runtime.close()
    await server.dispatcher.close()
    server.scheduler.clear()
    server._lock.release()  # as a crashed process's flock is

    again = await make_server()

    # The new leader asks the node about the run; this node has no record of it.
    await wait_for(lambda: all(e.finished_at for e in again.executions("lost")))
    [execution] = again.executions("lost")
    assert not execution.success and execution.finished_at is not None
    assert execution.output.startswith(b"execution lost: node node1 has no record of it")
    # And the forbid job is runnable again.
    await again.run_job("lost")
    await wait_for(lambda: again.busy())


async def test_history_is_bounded(make_server) -> None:
    server = await make_server(max_history=3)
    await server.set_job(shell("chatty", "echo hi", schedule="@manually"))
    for expected in range(1, 6):
        await server.run_job("chatty")
        await wait_for(lambda n=expected: server.get_job("chatty").success_count >= n)
    assert len(server.executions("chatty")) == 3


async def test_toggle_and_listing(make_server) -> None:
    server = await make_server()
    for name in ("b-job", "a-job", "c-job"):
        await server.set_job(shell(name, "true", schedule="@manually", metadata={"team": name[0]}))
    toggled = await server.toggle_job("b-job")
    assert toggled.disabled
    page, total = server.list_jobs(JobQuery(start=0, end=2))
    assert total == 3 and [j.name for j in page] == ["a-job", "b-job"]
    page, total = server.list_jobs(JobQuery(disabled="true"))
    assert [j.name for j in page] == ["b-job"] and total == 1
    page, _ = server.list_jobs(JobQuery(metadata={"team": "c"}))
    assert [j.name for j in page] == ["c-job"]
    page, _ = server.list_jobs(JobQuery(descending=True))
    assert [j.name for j in page] == ["c-job", "b-job", "a-job"]


async def test_deleting_foo_keeps_foobar_history(make_server) -> None:
    server = await make_server()
    for name in ("foo", "foobar"):
        await server.set_job(shell(name, f"echo {name}", schedule="@manually"))
        await server.run_job(name)
    await wait_for(lambda: finished(server, "foo") and finished(server, "foobar"))
    await server.delete_job("foo")
    assert [e.output for e in server.executions("foobar")] == [b"foobar\n"]


async def test_update_keeps_the_every_phase(make_server) -> None:
    server = await make_server()
    first = await server.set_job(shell("phase", "true", schedule="@every 7s"))
    second = await server.set_job(dataclasses.replace(first, displayname="renamed"))
    assert first.next == second.next


async def test_per_execution_timeout_fails_the_run_and_kills_the_job(
    make_server, tmp_path: Path
) -> None:
    server = await make_server()
    marker, pidfile = tmp_path / "still-running", tmp_path / "pid"
    # If the job were not killed when the host gives up, it would create the marker.
    command = f"echo $$ > {pidfile}; sleep 3; touch {marker}"
    await server.set_job(shell("limited", command, schedule="@manually", timeout="500ms"))
    await server.run_job("limited")
    [run] = await wait_for(lambda: finished(server, "limited"))
    assert not run.success
    assert b"did not finish within 0.5s" in run.output
    assert run.finished_at - run.started_at < timedelta(seconds=2)
    # The shell plugin saw the cancellation and killed the job's process group.
    job_pid = pidfile.read_text().strip()
    await wait_for(lambda: not Path(f"/proc/{job_pid}").exists(), timeout=5)
    assert not marker.exists()


async def test_sorting_by_text_ignores_case(make_server) -> None:
    server = await make_server()
    for name, label in (("j1", "Zulu"), ("j2", "alpha"), ("j3", "Mike")):
        await server.set_job(shell(name, "true", schedule="@manually", displayname=label))
    page, _ = server.list_jobs(JobQuery(sort="displayname"))
    assert [j.displayname for j in page] == ["alpha", "Mike", "Zulu"]


async def test_an_after_job_arriving_within_its_grace_runs_once_at_once(make_server) -> None:
    server = await make_server()
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    instant = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    await server.set_job(shell("late-deploy", "echo once", schedule=f"@after {instant} <PT10M"))
    [run] = await wait_for(lambda: finished(server, "late-deploy"))
    assert run.success and run.scheduled_at == moment  # fired as the instant it names
    assert run.run_id == f"late-deploy@{unix_nano(moment)}"
    # Saved again: no second shot (the launch of that instant is on record).
    await server.set_job(shell("late-deploy", "echo again", schedule=f"@after {instant} <PT10M"))
    assert server.scheduler.next_of("late-deploy") is None


async def test_a_run_on_the_leaders_own_node_is_fenced_like_a_remote_one(
    make_server, tmp_path: Path
) -> None:
    # The leader calls its own agent directly (no loopback stream); the agent's term
    # fence must still refuse a leader older than the newest it has seen, and the refusal
    # must come back as the run's failure, as it does over the stream.
    from core.agent.runs import TERM_FILE

    (tmp_path / "data" / "agent").mkdir(parents=True)
    (tmp_path / "data" / "agent" / TERM_FILE).write_text("50")
    server = await make_server()
    await server.set_job(shell("fenced", "echo should-not-run"))
    await server.run_job("fenced")

    runs = await wait_for(lambda: finished(server, "fenced"))

    assert not runs[0].success
    assert b"should-not-run" not in runs[0].output
    assert b"refusing a run from a deposed leader" in runs[0].output
