"""RaftStore under load: many commands submitted in one loop iteration."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from server_helpers import free_port

from core.jobs.model import Job
from core.store.commands import SetJob
from core.store.raft import RaftConfig, RaftStore, ReplicationError


async def test_a_burst_larger_than_the_wakeup_pipe_commits(tmp_path: Path) -> None:
    store = RaftStore(RaftConfig(bind=f"127.0.0.1:{free_port()}", data_dir=tmp_path))
    await store.start()
    try:
        burst = [
            store.apply(SetJob(Job(name=f"j{i}", schedule="@manually"))) for i in range(70_000)
        ]
        results = await asyncio.gather(*burst)
        assert len(results) == 70_000
        assert len(store.state.jobs) == 70_000
    finally:
        await store.close()


async def test_restart_replays_the_journal_and_a_snapshot(tmp_path: Path) -> None:
    port = free_port()
    config = RaftConfig(bind=f"127.0.0.1:{port}", data_dir=tmp_path)
    store = RaftStore(config)
    await store.start()
    for i in range(50):
        await store.apply(SetJob(Job(name=f"before-{i}", schedule="@manually")))
    store.compact_now()
    await store.apply(SetJob(Job(name="after-snapshot", schedule="@manually")))
    await store.close()

    again = RaftStore(config)
    await again.start()
    try:
        assert len(again.state.jobs) == 51 and "after-snapshot" in again.state.jobs
    finally:
        await again.close()


async def test_a_taken_raft_port_fails_start_at_once_with_the_reason(tmp_path: Path) -> None:
    # pysyncobj retries a failed bind every second without a word; start-up then sat
    # silent for its whole 30 s readiness wait.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        store = RaftStore(RaftConfig(bind=f"127.0.0.1:{port}", data_dir=tmp_path))
        try:
            with pytest.raises(ReplicationError, match=f"raft cannot listen on 127.0.0.1:{port}"):
                await store.start(ready_timeout=300)
        finally:
            await store.close()
