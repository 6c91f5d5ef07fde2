"""AgentRun on one node: fencing by leader term, dedupe by (run_id, attempt), attaching
to a run, adopting a result, and reporting a result no stream took."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from agent_helpers import Gate, collect, now, request
from support import wait_for

from core.agent.runs import AgentStateError
from core.agent.service import AgentRunService
from core.jobs.model import Execution
from core.plugins.runtime import PluginRuntime
from core.wire import execution_from_proto

MakeNode = Callable[..., Any]


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(call)
    return caught.value


class Reports:
    """A report_done that records every call and answers from a script."""

    def __init__(self, answers: list[bool | Exception] | None = None) -> None:
        self.calls: list[Execution] = []
        self._answers = list(answers or [])
        self.delivered = asyncio.Event()

    async def __call__(self, execution: Execution) -> bool:
        self.calls.append(execution)
        answer = self._answers.pop(0) if self._answers else True
        if isinstance(answer, Exception):
            raise answer
        if answer:
            self.delivered.set()
        return answer


# -- unfenced runs: Dkron's behaviour ---------------------------------------------------------


async def test_unfenced_run_streams_start_chunks_and_final(make_node: MakeNode) -> None:
    node = await make_node()
    messages = await collect(node.stub.AgentRun(request("echo one; echo two")))
    first, *chunks, final = messages
    assert first.started_at is not None and first.finished_at is None
    assert first.node_name == "agent1" and first.output == b""
    assert all(m.finished_at is None for m in chunks)
    assert b"".join(m.output for m in chunks) == b"one\ntwo\n"
    assert final.success and final.output == b"one\ntwo\n"
    assert final.finished_at is not None and final.started_at == first.started_at
    assert node.service.highest_term() == 0
    assert node.service.active == {} and node.service.idle.is_set()


async def test_unfenced_requests_are_not_deduplicated(make_node: MakeNode, tmp_path: Path) -> None:
    node = await make_node()
    log = tmp_path / "runs.log"
    for _ in range(2):
        final = (await collect(node.stub.AgentRun(request(f"echo x >> {log}"))))[-1]
        assert final.success
    assert log.read_text() == "x\nx\n"


async def test_empty_executor_is_invalid(make_node: MakeNode) -> None:
    node = await make_node()
    error = await rpc_error(node.stub.AgentRun(request("true", executor="")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "grpc_agent: No executor defined, nothing to do"
    assert node.service.active == {}


async def test_bad_job_timeout_is_invalid(make_node: MakeNode) -> None:
    node = await make_node()
    error = await rpc_error(node.stub.AgentRun(request("true", timeout="soon")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid job timeout 'soon'" in (error.details() or "")


async def test_job_timeout_fails_the_run(make_node: MakeNode, tmp_path: Path) -> None:
    node = await make_node()
    gate = Gate(tmp_path)
    final = (await collect(node.stub.AgentRun(request(gate.wait(), timeout="300ms"))))[-1]
    gate.open()
    assert not final.success
    assert b"did not finish within 0.3s" in final.output


# -- fencing -----------------------------------------------------------------------------------


async def test_stale_term_is_refused_and_the_mark_survives_a_restart(
    make_node: MakeNode, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    node = await make_node(state_dir=state)
    assert (await collect(node.stub.AgentRun(request("echo ok", term=5))))[-1].success
    assert node.service.highest_term() == 5

    error = await rpc_error(node.stub.AgentRun(request("echo no", term=3)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == (
        "stale leader term 3 (this node has seen term 5): refusing a run from a deposed leader"
    )
    # Term 0 is unfenced: accepted, and it does not lower or raise the mark.
    assert (await collect(node.stub.AgentRun(request("echo zero", term=0))))[-1].success
    assert node.service.highest_term() == 5
    assert (state / "agent-term").read_text() == "5\n"

    restarted = await make_node("agent1-again", state_dir=state)
    assert restarted.service.highest_term() == 5
    error = await rpc_error(restarted.stub.AgentRun(request("echo no", term=4)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "stale leader term 4 (this node has seen term 5)" in (error.details() or "")
    assert (await collect(restarted.stub.AgentRun(request("echo same", term=5))))[-1].success


async def test_adopt_query_from_a_new_leader_fences_the_old_one(make_node: MakeNode) -> None:
    node = await make_node()
    adopt = request("true", run_id="j@1", term=8, adopt_only=True)
    error = await rpc_error(node.stub.AgentRun(adopt))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert node.service.highest_term() == 8
    error = await rpc_error(node.stub.AgentRun(request("echo old leader", term=7)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_unreadable_term_mark_stops_the_agent_with_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "agent-term").write_text("five\n")
    with pytest.raises(AgentStateError, match=r"agent-term does not hold a leader term"):
        AgentRunService(PluginRuntime(), "agent1", state_dir=state)
    assert (state / "agent-term").read_text() == "five\n"  # left for the operator


@pytest.mark.parametrize(
    ("option", "value"), [("max_results", 0), ("result_ttl", 0.0), ("report_deadline", -1.0)]
)
def test_bad_limits_are_rejected(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        AgentRunService(PluginRuntime(), "agent1", **{option: value})


# -- dedupe and attach -------------------------------------------------------------------------


async def test_same_run_sent_twice_concurrently_runs_once(
    make_node: MakeNode, tmp_path: Path
) -> None:
    node = await make_node()
    log, gate = tmp_path / "runs.log", Gate(tmp_path)
    command = f"echo ran >> {log}; echo out; {gate.wait()}; echo done"
    same = request(command, run_id="job1@100", term=2, started_at=now())
    first = asyncio.create_task(collect(node.stub.AgentRun(same)))
    second = asyncio.create_task(collect(node.stub.AgentRun(same)))
    await wait_for(lambda: _streams(node) == 2)
    gate.open()
    one, two = await asyncio.gather(first, second)
    assert log.read_text() == "ran\n"
    assert one[-1] == two[-1]
    assert one[-1].success and one[-1].output == b"out\ndone\n"
    # A later repeat replays the result; another attempt is a new run.
    replay = await collect(node.stub.AgentRun(same))
    assert replay == [one[-1]]
    retry = request(command, run_id="job1@100", attempt=2, term=2)
    assert (await collect(node.stub.AgentRun(retry)))[-1].success
    assert log.read_text() == "ran\nran\n"


def _streams(node: Any) -> int:
    running = node.service.running()
    return sum(node.service.streams(e.id) for e in running)


async def test_attaching_mid_run_gets_the_output_so_far(
    make_node: MakeNode, tmp_path: Path
) -> None:
    node = await make_node()
    gate = Gate(tmp_path)
    command = f"echo part1; echo part2; {gate.wait()}; echo part3"
    original = node.stub.AgentRun(request(command, run_id="job1@200"))
    started = execution_from_proto((await original.read()).execution)
    seen = b""
    while seen != b"part1\npart2\n":
        seen += execution_from_proto((await original.read()).execution).output

    attached = node.stub.AgentRun(request(command, run_id="job1@200"))
    snapshot = execution_from_proto((await attached.read()).execution)
    assert snapshot.output == b"part1\npart2\n"
    assert snapshot.started_at == started.started_at and snapshot.finished_at is None
    assert snapshot.id in node.service.active
    assert [e.id for e in node.service.running()] == [snapshot.id]
    gate.open()
    rest = await collect(attached)
    assert b"".join(m.output for m in rest[:-1]) == b"part3\n"
    assert rest[-1].output == b"part1\npart2\npart3\n" and rest[-1].success
    assert (await collect(original))[-1] == rest[-1]
    assert node.service.active == {} and node.service.running() == []


async def test_adopt_only_of_an_unknown_run_is_not_found(
    make_node: MakeNode, tmp_path: Path
) -> None:
    node = await make_node()
    marker = tmp_path / "ran"
    adopt = request(f"touch {marker}", run_id="job1@300", attempt=2, adopt_only=True)
    error = await rpc_error(node.stub.AgentRun(adopt))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "run job1@300 attempt 2 is not known on node agent1"
    assert node.service.active == {}
    assert not marker.exists()


async def test_adopt_only_of_a_finished_run_returns_its_result(make_node: MakeNode) -> None:
    node = await make_node()
    final = (await collect(node.stub.AgentRun(request("echo kept", run_id="job1@400"))))[-1]
    adopted = await collect(node.stub.AgentRun(request("", run_id="job1@400", adopt_only=True)))
    assert adopted == [final]
    assert final.output == b"kept\n" and final.success and final.run_id == "job1@400"


async def test_results_cache_is_bounded_by_count_and_age(make_node: MakeNode) -> None:
    node = await make_node(max_results=1)
    for run_id in ("job1@1", "job1@2"):
        assert (await collect(node.stub.AgentRun(request("true", run_id=run_id))))[-1].success
    error = await rpc_error(node.stub.AgentRun(request("", run_id="job1@1", adopt_only=True)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert len(await collect(node.stub.AgentRun(request("", run_id="job1@2", adopt_only=True))))

    aging = await make_node("agent2", result_ttl=0.2)
    assert (await collect(aging.stub.AgentRun(request("true", run_id="job1@3"))))[-1].success

    async def forgotten() -> bool:
        call = aging.stub.AgentRun(request("", run_id="job1@3", adopt_only=True))
        try:
            await collect(call)
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.NOT_FOUND
        return False

    await wait_for(forgotten, timeout=5)


# -- detach and report -------------------------------------------------------------------------


async def test_cancelled_stream_result_is_reported_once(
    make_node: MakeNode, tmp_path: Path
) -> None:
    reports = Reports()
    node = await make_node(report_done=reports)
    gate = Gate(tmp_path)
    call = node.stub.AgentRun(
        request(f"echo before; {gate.wait()}; echo after", run_id="job1@500", term=3)
    )
    execution = execution_from_proto((await call.read()).execution)
    assert (await call.read()).execution.output == b"before\n"
    call.cancel()
    await wait_for(lambda: node.service.streams(execution.id) == 0)
    assert execution.id in node.service.active  # the run goes on without the leader
    gate.open()
    await asyncio.wait_for(reports.delivered.wait(), 10)
    [reported] = reports.calls
    assert reported.success and reported.output == b"before\nafter\n"
    assert reported.id == execution.id and reported.finished_at is not None
    assert (reported.run_id, reported.attempt) == ("job1@500", 1)
    # A new leader adopting it now gets the same result; nothing is reported again.
    adopted = await collect(node.stub.AgentRun(request("", run_id="job1@500", adopt_only=True)))
    assert adopted == [reported]
    assert len(reports.calls) == 1


async def test_result_taken_by_the_stream_is_not_reported(make_node: MakeNode) -> None:
    reports = Reports()
    node = await make_node(report_done=reports)
    final = (await collect(node.stub.AgentRun(request("echo hi", run_id="job1@600"))))[-1]
    assert final.success
    # One more round trip: a report would have been started when the run finished.
    await collect(node.stub.AgentRun(request("", run_id="job1@600", adopt_only=True)))
    assert reports.calls == []


async def test_report_is_retried_until_delivered(make_node: MakeNode, tmp_path: Path) -> None:
    reports = Reports([False, RuntimeError("no server reachable"), True])
    node = await make_node(report_done=reports)
    gate = Gate(tmp_path)
    call = node.stub.AgentRun(request(f"{gate.wait()}; echo late", run_id="job1@700"))
    execution = execution_from_proto((await call.read()).execution)
    call.cancel()
    await wait_for(lambda: node.service.streams(execution.id) == 0)
    gate.open()
    await asyncio.wait_for(reports.delivered.wait(), 10)
    assert len(reports.calls) == 3
    assert all(c == reports.calls[0] for c in reports.calls)
    assert reports.calls[0].output == b"late\n"


async def test_report_gives_up_at_the_deadline_with_an_error(
    make_node: MakeNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reports = Reports([False] * 100)
    node = await make_node(report_done=reports, report_deadline=0.2)
    gate = Gate(tmp_path)
    call = node.stub.AgentRun(request(f"{gate.wait()}", run_id="job1@800", attempt=3))
    execution = execution_from_proto((await call.read()).execution)
    call.cancel()
    await wait_for(lambda: node.service.streams(execution.id) == 0)
    with caplog.at_level(logging.ERROR, logger="dkron.agent"):
        gate.open()
        await wait_for(lambda: "giving up reporting" in caplog.text)
    assert len(reports.calls) == 1  # the next try would start after the deadline
    assert "run 'job1@800' attempt 3" in caplog.text
    assert not reports.delivered.is_set()
