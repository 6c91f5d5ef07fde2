"""The leader's path (fire -> launch records -> dispatch -> SetNext), leadership and a
whole node over the in-memory store: no Raft where Raft is not what is tested."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from server_helpers import finished, free_port, server_config, wait_for

from core.dispatch.live import LiveOutputs
from core.jobs.model import Job
from core.node import DkronServer, memory_store
from core.scheduler.scheduler import Fire
from core.server.jobs import JobService
from core.server.leader import Leader
from core.store import MemoryStore
from core.store.commands import SetJob


class Launches:
    """A dispatcher that only takes note."""

    def __init__(self) -> None:
        self.launched: list[tuple[str, datetime | None, str, bool]] = []
        self.reconciled = 0

    def launch(
        self,
        job_name: str,
        *,
        scheduled_at: datetime | None = None,
        run_id: str = "",
        manual: bool = False,
    ) -> None:
        self.launched.append((job_name, scheduled_at, run_id, manual))

    def reconcile(self) -> None:
        self.reconciled += 1


class NoLink:
    def leader_rpc_address(self) -> str | None:
        return None

    def channel(self, address: str) -> grpc.aio.Channel:
        raise AssertionError("a single node forwards nothing")


def shell(name: str, **fields: Any) -> Job:
    config = {"command": "true"}
    return Job(name=name, executor="shell", executor_config=config, **fields)


@pytest.fixture
async def leading() -> AsyncIterator[tuple[MemoryStore, Leader, Launches, JobService]]:
    store = MemoryStore()
    launches = Launches()
    leader = Leader(store, lambda: launches)
    leader.attach()
    jobs = JobService(store, leader, lambda: launches, LiveOutputs(), NoLink())
    await store.start()
    await wait_for(lambda: leader.running, timeout=2)
    yield store, leader, launches, jobs
    await leader.close()
    await store.close()


async def test_fires_are_recorded_then_dispatched_then_next_is_published(leading) -> None:
    store, leader, launches, jobs = leading
    stored = await jobs.set_job(shell("tick", schedule="@every 1s"))
    assert stored.next is not None and stored.next == leader.next_of("tick")
    assert store.state.jobs["tick"].next == stored.next

    await wait_for(lambda: len(launches.launched) >= 2, timeout=5)

    state = store.state
    for name, scheduled_at, run_id, manual in launches.launched[:2]:
        assert name == "tick" and not manual and scheduled_at is not None
        assert run_id == f"tick@{int(scheduled_at.timestamp()) * 10**9}"
        # Recorded at this leader's term before it was dispatched.
        assert run_id in state.launches and state.launches[run_id].term == leader.term == 1
    latest = max(s for _, s, _, _ in launches.launched if s is not None)
    assert state.last_fire["tick"] >= latest
    await wait_for(lambda: state.jobs["tick"].next == leader.next_of("tick"), timeout=2)
    assert state.jobs["tick"].next is not None and state.jobs["tick"].next > latest


async def test_a_job_written_past_the_leader_gets_its_next_from_the_scheduler(leading) -> None:
    store, leader, _, _ = leading
    # As a follower's write reaches the leader: through the log, with a stale `next`.
    stale = datetime(2020, 1, 1, tzinfo=UTC)
    await store.apply(SetJob(shell("far", schedule="@every 1h", next=stale)))
    await wait_for(lambda: store.state.jobs["far"].next == leader.next_of("far"), timeout=2)
    assert store.state.jobs["far"].next > datetime.now(UTC)


async def test_changes_and_deletes_follow_the_log(leading) -> None:
    store, leader, _, jobs = leading
    await jobs.set_job(shell("gone", schedule="@every 1h"))
    assert leader.next_of("gone") is not None
    toggled = await jobs.toggle_job("gone")
    assert toggled.disabled and toggled.next is None and leader.next_of("gone") is None
    await jobs.delete_job("gone")
    assert leader.next_of("gone") is None and "gone" not in store.state.jobs


async def test_manual_runs_go_to_the_dispatcher(leading) -> None:
    _, _, launches, jobs = leading
    await jobs.set_job(shell("by-hand", schedule="@manually"))
    await jobs.run_job("by-hand")
    assert launches.launched == [("by-hand", None, "", True)]


async def test_losing_the_lead_stops_firing_and_regaining_it_starts_over(leading) -> None:
    store, leader, launches, jobs = leading
    await jobs.set_job(shell("tick", schedule="@every 1s"))
    assert launches.reconciled == 1

    store.regain()  # lost and won back between two looks: a newer term
    await wait_for(lambda: leader.term == 2 and leader.running, timeout=2)
    assert store.state.leader_term == 2  # the new term's barrier is committed
    assert launches.reconciled == 2
    launches_now = store.state.launches
    await wait_for(lambda: any(launch.term == 2 for launch in launches_now.values()), timeout=5)

    await store.close()
    await wait_for(lambda: not leader.running, timeout=2)
    # A fire handed over after the lead was lost is not recorded.
    before = len(launches.launched)
    await leader._on_fire([Fire("tick", datetime.now(UTC) + timedelta(seconds=5))])
    assert len(launches.launched) == before


async def test_a_node_runs_jobs_and_serves_the_api_over_the_memory_store(tmp_path: Path) -> None:
    import aiohttp

    from core.api import serve_api
    from core.api.app import api_port

    config = server_config(tmp_path / "data", free_port())
    server = DkronServer(config, store=memory_store(config))
    await server.start()
    runner = None
    try:
        assert server.is_leader and server.scheduler.running
        assert server.store.started and not (tmp_path / "data" / "raft").exists()
        runner = await serve_api(server, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{api_port(runner)}"
        job = {
            "name": "echo",
            "schedule": "@every 1s",
            "executor": "shell",
            "executor_config": {"command": "echo hello", "shell": "true"},
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/jobs", json=job) as reply:
                assert reply.status == 201, await reply.text()
            runs = await wait_for(lambda: finished(server, "echo"), timeout=10)
            assert runs[0].success and runs[0].output == b"hello\n"
            async with session.get(f"{base}/v1/jobs/echo/executions") as reply:
                assert reply.status == 200
                listed = await reply.json()
            assert any(e["success"] and e["output"] == "hello\n" for e in listed)
            async with session.get(f"{base}/v1/leader") as reply:
                assert (await reply.json())["Name"] == config.node_name
            async with session.get(f"{base}/debug/vars") as reply:
                assert "echo" in (await reply.json())["cron_entries"]
    finally:
        if runner is not None:
            await runner.cleanup()
        await server.stop(drain_timeout=5)
