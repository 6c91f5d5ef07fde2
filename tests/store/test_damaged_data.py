"""A damaged data dir stops the agent at start with the file, the offset and the way
out; `dkronctl raft recover` cuts the journal back; the agent then starts with what was
intact. Never a process that stays up and does not answer."""

from __future__ import annotations

import signal
import struct
import subprocess
from pathlib import Path

import pytest
from agent_process import Agent, clean_env, run_cli
from pysyncobj.node import TCPNode

from core.store.raft import write_snapshot
from core.store.state import StoreState

pytestmark = pytest.mark.timeout(120)
JOBS = 12


def _job(name: str) -> dict[str, object]:
    return {"name": name, "schedule": "@manually", "executor": "shell",
            "executor_config": {"command": "true"}}  # fmt: skip


def _agent_with_jobs(tmp_path: Path) -> Agent:
    agent = Agent(tmp_path)
    agent.start()
    for number in range(JOBS):
        agent.post("/v1/jobs", _job(f"job-{number:02}"))
    agent.signal(signal.SIGTERM)
    assert agent.wait(30) == 0
    return agent


def _start_fails(agent: Agent) -> str:
    failed = subprocess.run(
        agent.argv(), capture_output=True, text=True, timeout=60, cwd=agent.workdir,
        env=clean_env(agent.workdir),
    )  # fmt: skip
    assert failed.returncode == 1, failed
    return failed.stderr


def _records_end(journal: Path) -> int:
    end: int = struct.unpack_from("<I", journal.read_bytes(), 36)[0]
    return end


def test_flipped_bytes_in_the_journal_stop_start_up_and_recover_cuts_them_off(
    tmp_path: Path,
) -> None:
    agent = _agent_with_jobs(tmp_path)
    journal = agent.data_dir / "raft" / "journal.bin"
    data = bytearray(journal.read_bytes())
    where = _records_end(journal) * 2 // 3
    for index in range(where, where + 64):
        data[index] ^= 0xFF
    journal.write_bytes(bytes(data))

    stderr = _start_fails(agent)
    assert f"{journal} is damaged at byte" in stderr
    assert f"dkronctl raft recover --data-dir {agent.data_dir}" in stderr

    recovered = run_cli("raft", "recover", "--data-dir", str(agent.data_dir),
                        address=None, home=tmp_path)  # fmt: skip
    assert "good entries before byte" in recovered.stdout
    assert Path(f"{journal}.damaged").exists()
    again = run_cli("raft", "recover", "--data-dir", str(agent.data_dir), address=None,
                    home=tmp_path)  # fmt: skip
    assert "is intact" in again.stdout

    agent.start()
    try:
        names = [job["name"] for job in agent.api("/v1/jobs")]
        # The jobs written before the damage are all there, in order; the API answers.
        assert 0 < len(names) < JOBS
        assert names == [f"job-{n:02}" for n in range(len(names))]
        agent.post("/v1/jobs", _job("after-recovery"))
        assert agent.api("/v1/jobs/after-recovery")["name"] == "after-recovery"
    finally:
        agent.kill9()


def test_a_truncated_journal_stops_start_up_with_a_reason(tmp_path: Path) -> None:
    agent = _agent_with_jobs(tmp_path)
    journal = agent.data_dir / "raft" / "journal.bin"
    end = _records_end(journal)
    with open(journal, "r+b") as handle:
        handle.truncate(end - 100)
    stderr = _start_fails(agent)
    assert "is damaged at byte" in stderr and "raft recover" in stderr


def test_a_damaged_snapshot_stops_start_up_with_a_reason(tmp_path: Path) -> None:
    agent = _agent_with_jobs(tmp_path)
    # Compaction writes snapshots after 20,000 entries or 5 minutes: write one the way
    # it does, for the state the journal holds.
    raft = agent.data_dir / "raft"

    write_snapshot(
        str(raft / "snapshot.bin"),
        StoreState(),
        ((b"\x01", 2, 1), (b"\x01", 1, 1), {TCPNode(f"127.0.0.1:{agent.raft_port}")}),
    )
    data = bytearray((raft / "snapshot.bin").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 10] = b"\x00" * 10  # inside the compressed stream
    (raft / "snapshot.bin").write_bytes(bytes(data))
    stderr = _start_fails(agent)
    assert "cannot load the snapshot" in stderr
    assert "snapshot.bin is damaged" in stderr and "rejoin the cluster" in stderr
