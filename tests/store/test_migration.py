"""A data dir written by the pickled store format (before format 1) still loads, once
migrated; a data dir from a newer format is refused with a message saying so."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal
from support import REPO_ROOT, wait_for

from core.node import DkronServer, ServerConfig
from core.plugins.runtime import RuntimeSettings
from core.store._raft_wire import safe_loads
from core.store.codec import SNAPSHOT_FORMAT, decode_command
from core.store.migrate import StoreFormatError

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "datadir-v0"
FIXTURE_RAFT_PORT = 47313  # the Raft address is part of the data (peers, votes)


def _config(data_dir: Path) -> ServerConfig:
    return ServerConfig(
        node_name="legacy-node",
        data_dir=data_dir,
        rpc_port=0,
        raft_port=FIXTURE_RAFT_PORT,
        plugins=RuntimeSettings(plugin_dir=data_dir / "plugins", load_entry_points=False),
    )


@pytest.fixture
def legacy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(FIXTURE, target)
    return target


async def _start(data_dir: Path) -> DkronServer:
    server = DkronServer(_config(data_dir))
    await server.start()
    await wait_for(lambda: server.is_leader, timeout=15)
    return server


async def test_an_old_data_dir_loads_with_every_field(legacy_dir: Path) -> None:
    server = await _start(legacy_dir)
    try:
        state = server.store.state
        assert sorted(state.jobs) == ["after-snapshot", "child", "every-second", "parent"]
        parent = state.jobs["parent"]
        assert parent.timezone == "Europe/Berlin"
        assert parent.starts_at == datetime(2020, 1, 1, 10, tzinfo=timezone(timedelta(hours=2)))
        assert parent.starts_at.utcoffset() == timedelta(hours=2)
        assert parent.retry_backoff is not None and parent.retry_backoff.exponential
        assert (parent.retry_backoff.delay, parent.retry_backoff.max) == ("1s", "1m")
        assert parent.processors == {"log": {"forward": "true"}}
        assert parent.metadata == {"team": "a"} and parent.tags == {"role": "dkron:1"}
        assert parent.dependent_jobs == ["child"] and state.jobs["child"].parent_job == "parent"
        assert (parent.misfire_policy, parent.misfire_grace, parent.retry_any_node) == (
            "run_once",
            "10m",
            True,
        )
        assert state.jobs["every-second"].disabled
        assert state.jobs["every-second"].success_count == 2
        assert "zoned" not in state.jobs  # deleted in the journal, after the snapshot
        runs = {name: len(history) for name, history in state.histories.items()}
        assert runs == {"parent": 1, "child": 1, "after-snapshot": 1, "every-second": 2}
        output = next(state.executions_of("parent")).output
        assert output == b"parent-out\n"
        # The migrated server keeps working: a write commits and reads back.
        job = dataclasses.replace(state.jobs["after-snapshot"], displayname="written after")
        await server.set_job(job)
        assert server.get_job("after-snapshot").displayname == "written after"  # type: ignore[union-attr]
    finally:
        await server.stop(drain_timeout=5)

    raft = legacy_dir / "raft"
    assert json.loads((raft / "store-format").read_text()) == {"format": SNAPSHOT_FORMAT}
    assert (raft / "journal.bin.v0").exists() and (raft / "snapshot.bin.v0").exists()
    assert (raft / "snapshot.bin").read_bytes().startswith(b"DKRONPY-SNAPSHOT")
    journal = FileJournal(str(raft / "journal.bin"))
    try:
        # Every store command now decodes with the network's restricted unpickler, and
        # carries the store's own encoding instead of pickled classes.
        regular = [e[0] for e in (journal[i] for i in range(len(journal))) if e[0][:1] == b"\0"]
        assert len(regular) >= 16
        for command in regular:
            _function, (payload,) = safe_loads(command[1:])
            assert type(decode_command(payload)).__module__ == "core.store.commands"
    finally:
        journal._destroy()

    # Restarting the migrated dir migrates nothing and still has everything.
    again = await _start(legacy_dir)
    try:
        assert again.get_job("after-snapshot").displayname == "written after"  # type: ignore[union-attr]
        assert len(list(again.store.state.executions_of("every-second"))) == 2
    finally:
        await again.stop(drain_timeout=5)


async def test_a_snapshot_from_a_newer_format_is_refused(legacy_dir: Path) -> None:
    server = await _start(legacy_dir)
    await server.stop(drain_timeout=5)
    snapshot = legacy_dir / "raft" / "snapshot.bin"
    data = bytearray(snapshot.read_bytes())
    data[16:20] = (SNAPSHOT_FORMAT + 1).to_bytes(4, "big")
    snapshot.write_bytes(bytes(data))
    newer = DkronServer(_config(legacy_dir))
    with pytest.raises(StoreFormatError, match="written by a newer dkron-py"):
        await newer.start()
    await newer.stop(drain_timeout=0)


async def test_a_data_dir_marked_by_a_newer_format_is_refused(legacy_dir: Path) -> None:
    (legacy_dir / "raft" / "store-format").write_text('{"format": 7}\n')
    server = DkronServer(_config(legacy_dir))
    with pytest.raises(StoreFormatError, match=f"store format 7; this one reads {SNAPSHOT_FORMAT}"):
        await server.start()
    await server.stop(drain_timeout=0)
