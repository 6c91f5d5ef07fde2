"""Executions end to end: forbid, retries, chains, ephemeral jobs, processors, manual
runs and live output, each through the REST API of one real agent process."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from e2e_helpers import ZERO, Api, finished, parse_time, shell_job, wait_for

CHILDREN_FIRST = "store: could not delete job with dependent jobs, delete children first"


def test_forbid_never_overlaps_a_slow_command(api: Api, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    command = (
        f'echo "start $(date +%s.%N)" >> {marks}; sleep 1.2; echo "end $(date +%s.%N)" >> {marks}'
    )
    api.create(shell_job("slow-forbid", command, "@every 1s", concurrency="forbid"))
    try:
        runs = api.wait_done("slow-forbid", 3, timeout=20)
    finally:
        api.delete("/v1/jobs/slow-forbid")

    lines = [line.split() for line in marks.read_text().splitlines()]
    kinds = [kind for kind, _ in lines]
    # Strictly start, end, start, end ... (a run still going may add a last "start").
    assert kinds[: 2 * len(runs)] == ["start", "end"] * len(runs)
    stamps = [float(stamp) for _, stamp in lines]
    assert stamps == sorted(stamps)

    intervals = [(parse_time(r["started_at"]), parse_time(r["finished_at"])) for r in runs]
    for (_, end), (next_start, _) in itertools.pairwise(intervals):
        assert end <= next_start
    # The slow command did outlast a tick: at least one fire was skipped, not queued.
    scheduled = [parse_time(r["scheduled_at"]) for r in runs]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(scheduled)]
    assert all(gap >= 2 for gap in gaps), gaps


def test_retries_with_exponential_backoff(api: Api, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    command = (
        f"n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; "
        'echo "attempt $n"; [ "$n" -ge 3 ]'
    )
    job = shell_job(
        "flaky",
        command,
        retries=2,
        retry_backoff={"delay": "300ms", "exponential": True},
    )
    api.create(job)
    api.run("flaky")
    attempts = api.wait_done("flaky", 3)
    assert [e["attempt"] for e in attempts] == [1, 2, 3]
    assert len({e["group"] for e in attempts}) == 1
    assert [e["success"] for e in attempts] == [False, False, True]
    for number, execution in enumerate(attempts, start=1):
        assert execution["output"].endswith(f"attempt {number}\n")
    assert attempts[0]["output"].startswith("exit status 1\n")

    first_gap = parse_time(attempts[1]["started_at"]) - parse_time(attempts[0]["finished_at"])
    second_gap = parse_time(attempts[2]["started_at"]) - parse_time(attempts[1]["finished_at"])
    assert first_gap.total_seconds() >= 0.3
    assert second_gap.total_seconds() >= 0.6
    # Dkron's own formula would wait 1 s before the third attempt: the extension applies.
    assert second_gap.total_seconds() < 1.0

    stored = api.job("flaky")
    assert stored["status"] == "success"
    assert (stored["success_count"], stored["error_count"]) == (1, 2)
    assert counter.read_text() == "3\n"


def test_parent_child_grandchild_chain(api: Api) -> None:
    api.create(shell_job("parent", "echo parent"))
    api.create(shell_job("child", "echo child", parent_job="parent"))
    api.create(shell_job("grandchild", "echo grandchild", parent_job="child"))
    assert api.job("parent")["dependent_jobs"] == ["child"]
    assert api.job("child")["dependent_jobs"] == ["grandchild"]
    assert api.job("child")["next"] == ZERO

    api.run("parent")
    (grandchild,) = api.wait_done("grandchild", 1)
    (parent,) = api.done("parent")
    (child,) = api.done("child")
    assert (parent["output"], child["output"], grandchild["output"]) == (
        "parent\n",
        "child\n",
        "grandchild\n",
    )
    assert parse_time(child["started_at"]) >= parse_time(parent["finished_at"])
    assert parse_time(grandchild["started_at"]) >= parse_time(child["finished_at"])

    reply = api.delete("/v1/jobs/parent")
    assert (reply.status, reply.text) == (404, CHILDREN_FIRST)
    assert api.job("parent")["dependent_jobs"] == ["child"]

    # Re-POSTing the parent (without dependent_jobs) keeps them; make it fail.
    api.create(shell_job("parent", "echo broken; exit 3"))
    assert api.job("parent")["dependent_jobs"] == ["child"]
    api.run("parent")
    failed = api.wait_done("parent", 2)[1]
    assert failed["success"] is False

    # Succeed again: only this run adds a child run, so the failed one started none.
    api.create(shell_job("parent", "echo parent"))
    api.run("parent")
    third = api.wait_done("parent", 3)[2]
    api.wait_done("grandchild", 2)
    children = api.done("child")
    assert len(children) == 2
    assert len(api.executions("child")) == 2
    assert len(api.executions("grandchild")) == 2
    assert parse_time(children[1]["started_at"]) >= parse_time(third["finished_at"])
    assert api.job("parent")["status"] == "success"


def test_ephemeral_deleted_after_success_kept_after_failure(api: Api) -> None:
    api.create(shell_job("ephemeral-bad", "exit 1", ephemeral=True))
    api.run("ephemeral-bad")
    (failed,) = api.wait_done("ephemeral-bad", 1)
    assert failed["success"] is False

    api.create(shell_job("ephemeral-good", "echo done", ephemeral=True))
    api.run("ephemeral-good")
    wait_for(lambda: api.get("/v1/jobs/ephemeral-good").status == 404)
    assert api.get("/v1/jobs/ephemeral-good/executions").status == 404
    # The failed one was there before the successful one went, and is still there.
    kept = api.job("ephemeral-bad")
    assert kept["status"] == "failed"
    assert kept["error_count"] == 1
    assert len(api.executions("ephemeral-bad")) == 1


def test_files_processor_replaces_output_with_the_file_path(api: Api, tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    processors = {"files": {"log_dir": str(log_dir), "forward": "false"}}
    api.create(shell_job("to-file", "echo into the file", processors=processors))
    api.run("to-file")
    (execution,) = api.wait_done("to-file", 1)
    path = log_dir / f"{execution['id']}.log"
    assert execution["output"] == str(path)
    assert execution["success"] is True
    assert path.read_text() == "into the file\n"
    assert (path.stat().st_mode & 0o777) == 0o644


def test_log_processor_with_forward_keeps_output(api: Api) -> None:
    processors = {"log": {"forward": "true"}}
    api.create(shell_job("logged", "echo kept", processors=processors))
    api.run("logged")
    (execution,) = api.wait_done("logged", 1)
    assert execution["output"] == "kept\n"
    # The plugin's print travels to the agent's own log.
    begin = f"----- BEGIN OUTPUT job=logged execution={execution['id']} -----"
    wait_for(lambda: begin in api.agent.stderr() + api.agent.stdout(), timeout=5)


def test_manual_run_and_runoncreate_return_at_once(api: Api) -> None:
    api.create(shell_job("manual-slow", "sleep 3; echo manual"))
    run = api.run("manual-slow")
    created = api.create(shell_job("created-slow", "sleep 3; echo created"), "?runoncreate")
    assert run.elapsed < 1.0, run.elapsed
    assert created.elapsed < 1.0, created.elapsed
    assert run.json()["name"] == "manual-slow"
    assert created.headers["Location"] == "/v1/jobs?runoncreate/created-slow"

    def both_busy() -> bool:
        names = {e["job_name"] for e in api.busy() if e["finished_at"] == ZERO}
        return {"manual-slow", "created-slow"} <= names

    wait_for(both_busy, timeout=5)
    (manual,) = api.wait_done("manual-slow", 1, timeout=10)
    (created_run,) = api.wait_done("created-slow", 1, timeout=10)
    assert (manual["output"], created_run["output"]) == ("manual\n", "created\n")
    # The runs themselves were not cut short by answering early.
    for execution in (manual, created_run):
        duration = parse_time(execution["finished_at"]) - parse_time(execution["started_at"])
        assert duration.total_seconds() >= 2.9
    busy_names = {e["job_name"] for e in api.busy()}
    assert not busy_names & {"manual-slow", "created-slow"}


def test_stream_delivers_a_running_jobs_chunks_live(api: Api, tmp_path: Path) -> None:
    go = tmp_path / "go"
    # Prints, then waits for the test (bounded) before printing again.
    command = (
        f"echo first; i=0; while [ ! -e {go} ] && [ $i -lt 300 ]; do sleep 0.05; "
        "i=$((i+1)); done; echo second"
    )
    api.create(shell_job("streamed", command))
    api.run("streamed")
    (running,) = wait_for(lambda: api.executions("streamed"))
    assert not finished(running)

    events = api.events(f"/v1/jobs/streamed/executions/{running['id']}/stream")
    with contextlib.closing(events):
        received = _follow_stream(api, events, running["id"], go)
    assert received == "first\nsecond\n"


def _follow_stream(
    api: Api, events: Generator[tuple[str, Any], None, None], execution_id: str, go: Path
) -> str:
    received = ""
    while "first\n" not in received:
        event, data = next(events)
        assert event == "message"
        received += data["output"]
    # Live: the first line arrived while the command still waits for the file.
    single = api.get(f"/v1/jobs/streamed/executions/{execution_id}").json()
    assert single["finished_at"] == ZERO
    assert single["output"] == "first\n"

    go.touch()
    started = time.monotonic()
    for event, data in events:
        if event == "done":
            assert data["success"] is True
            assert data["output"] == "first\nsecond\n"
            assert data["id"] == execution_id
            break
        received += data["output"]
    else:
        raise AssertionError("the stream ended without a done event")
    assert time.monotonic() - started < 10
    return received
