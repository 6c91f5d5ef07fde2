"""RunTable bookkeeping with a real plugin runtime: who owes the final result, and when
a report goes out. These are the paths a gRPC client cannot time reliably (a stream
that breaks while the final message is being sent)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from agent_helpers import Gate
from support import wait_for

from core.agent.runs import RunTable
from core.jobs.model import Execution, Job
from core.plugins.runtime import PluginRuntime


class Reports:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list[Execution] = []
        self.called = asyncio.Event()

    async def __call__(self, execution: Execution) -> bool:
        self.calls.append(execution)
        self.called.set()
        return self.answer


def table(runtime: PluginRuntime, reports: Reports, deadline: float = 300.0) -> RunTable:
    return RunTable(
        runtime, report_done=reports, max_results=10, result_ttl=60.0, report_deadline=deadline
    )


def job(command: str) -> Job:
    return Job(name="job1", executor="shell", executor_config={"command": command, "shell": "true"})


def execution(run_id: str) -> Execution:
    return Execution(
        job_name="job1", run_id=run_id, attempt=1, node_name="n1", started_at=datetime.now(UTC)
    )


async def test_a_stream_that_fails_to_send_the_final_triggers_a_report(
    runtime: PluginRuntime,
) -> None:
    reports = Reports(True)
    runs = table(runtime, reports)
    run = runs.start(execution("r@1"), ("r@1", 1), job("echo hi"), None)
    first, second = run.subscribe(), run.subscribe()
    assert await first.next() == b"hi\n" and await first.next() is None
    assert await second.next() == b"hi\n" and await second.next() is None
    first.close()  # its final yield raised
    assert run.report is None and not run.undelivered  # the second stream still owes it
    second.close()
    await asyncio.wait_for(reports.called.wait(), 5)
    assert [c.output for c in reports.calls] == [b"hi\n"]
    assert run.streams == 0
    await runs.close()


async def test_one_stream_taking_the_final_is_enough(runtime: PluginRuntime) -> None:
    reports = Reports(True)
    runs = table(runtime, reports)
    run = runs.start(execution("r@2"), ("r@2", 1), job("true"), None)
    first, second = run.subscribe(), run.subscribe()
    while await first.next() is not None:
        pass
    first.taken()
    second.close()
    first.close()  # the generator's finally after a delivered final: no effect
    assert run.delivered and run.report is None and reports.calls == []
    await runs.close()


async def test_an_adopting_stream_stops_report_retries(
    runtime: PluginRuntime, tmp_path: Path
) -> None:
    reports = Reports(False)
    runs = table(runtime, reports)
    gate = Gate(tmp_path)
    run = runs.start(execution("r@3"), ("r@3", 1), job(f"{gate.wait()}; echo done"), None)
    gate.open()
    await asyncio.wait_for(reports.called.wait(), 5)  # no stream: reported, refused
    found = runs.find(("r@3", 1))
    assert found is run and run.report is not None
    adopter = run.subscribe()
    assert await adopter.next() is None
    adopter.taken()
    await wait_for(lambda: run.report is not None and run.report.done())
    assert run.report.cancelled() and run.delivered
    assert len(reports.calls) == 1
    await runs.close()


async def test_close_cancels_report_retries(runtime: PluginRuntime) -> None:
    reports = Reports(False)
    runs = table(runtime, reports)
    run = runs.start(execution("r@4"), ("r@4", 1), job("true"), None)
    await asyncio.wait_for(reports.called.wait(), 5)
    await runs.close()
    assert run.report is not None and run.report.cancelled()
    assert not run.delivered


async def test_close_lets_reports_in_flight_finish_within_the_grace(
    runtime: PluginRuntime, tmp_path: Path
) -> None:
    gate = Gate(tmp_path, "report-gate")
    calls: list[Execution] = []

    async def slow_report(execution: Execution) -> bool:
        calls.append(execution)
        await wait_for(gate.path.exists)  # the leader answers once the gate opens
        return True

    runs = RunTable(
        runtime, report_done=slow_report, max_results=10, result_ttl=60.0, report_deadline=30.0
    )
    run = runs.start(execution("r@5"), ("r@5", 1), job("echo bye"), None)
    await wait_for(lambda: calls)
    closing = asyncio.create_task(runs.close(grace=10))
    gate.open()
    await closing
    assert run.delivered and [c.output for c in calls] == [b"bye\n"]
