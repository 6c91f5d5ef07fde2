"""A log entry this version must not or cannot apply stops the server with a reason;
it never runs code and never leaves a server that spins on it."""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.journal import FileJournal
from support import free_port, wait_for

from core.jobs.model import Job
from core.store.commands import SetJob
from core.store.raft import RaftConfig, RaftStore, ReplicationError, StoreFormatError


def _port() -> int:
    return free_port()


async def _write_some(config: RaftConfig) -> None:
    store = RaftStore(config)
    await store.start()
    await store.apply(SetJob(Job(name="kept", schedule="@manually")))
    await store.close()


def _append(journal_path: Path, command: bytes) -> None:
    journal = FileJournal(str(journal_path))
    try:
        _, index, term = journal[len(journal) - 1]
        journal.add(command, index + 1, term)
        journal.flush()
    finally:
        journal._destroy()


async def test_a_pickle_planted_in_the_journal_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    config = RaftConfig(bind=f"127.0.0.1:{_port()}", data_dir=tmp_path)
    await _write_some(config)
    # A store command as pysyncobj frames one (type byte 0), holding the exploit.
    _append(tmp_path / "raft" / "journal.bin", b"\x00" + pickle.dumps((0, (Evil(),)), 2))
    store = RaftStore(config)
    try:
        # Refused by the journal check before Raft applies anything.
        with pytest.raises(
            StoreFormatError, match=r"damaged at byte \d+ .*refers to posix\.system"
        ):
            await store.start()
        assert not marker.exists()
    finally:
        await store.close()


async def test_an_entry_a_running_server_cannot_read_stops_it(tmp_path: Path) -> None:
    # As a leader of a newer version would send one: the server stops applying (and
    # says why) instead of diverging from the others or retrying it on every tick.
    config = RaftConfig(bind=f"127.0.0.1:{_port()}", data_dir=tmp_path)
    store = RaftStore(config)
    await store.start()
    try:
        await store.apply(SetJob(Job(name="kept", schedule="@manually")))
        with contextlib.suppress(BlockingIOError):
            store._consumer.apply(b"\x09future-command")  # straight into the log
        store._kick.set()
        await wait_for(lambda: store.failed.is_set(), timeout=10)
        assert store.fatal is not None and "written by a newer dkron-py" in store.fatal
        assert "kept" in store.state.jobs  # what came before is intact
        with pytest.raises(ReplicationError, match="this server has stopped"):
            await store.apply(SetJob(Job(name="refused", schedule="@manually")))
    finally:
        await store.close()


async def test_an_entry_from_a_newer_format_stops_the_server(tmp_path: Path) -> None:
    config = RaftConfig(bind=f"127.0.0.1:{_port()}", data_dir=tmp_path)
    await _write_some(config)
    newer = b"\x00" + pickle.dumps((0, (b"\x09future-command",)), 2)
    _append(tmp_path / "raft" / "journal.bin", newer)
    store = RaftStore(config)
    try:
        with pytest.raises(StoreFormatError, match="format 9 was written by a newer dkron-py"):
            await store.start()
    finally:
        await store.close()
