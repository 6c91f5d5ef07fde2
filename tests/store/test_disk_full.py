"""A full disk under a real agent: writes get 507 saying so, reads keep working, the
process stays up, and writes resume by themselves once there is room again. Before
this, the memory-mapped journal outgrew the filesystem and the agent died of SIGBUS.

The disk is a real 2 MiB tmpfs (root can mount one, as in CI); where mounting is not
allowed, a file-size limit on the agent (RLIMIT_FSIZE, raised later with prlimit)
plays the full disk: both make the kernel refuse the journal's growth."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_process import Agent, wait_for

pytestmark = pytest.mark.timeout(180)
SMALL = 2 << 20
BODY = "x" * 3000  # each job's command: about 3 kB per Raft entry


class Disk:
    """Where the agent's data dir lives, and how it is made full and then roomy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounted = False

    def __enter__(self) -> Disk:
        self.root.mkdir()
        mount = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SMALL}", "tmpfs", str(self.root)],
            capture_output=True, text=True,
        )  # fmt: skip
        self.mounted = mount.returncode == 0
        return self

    def limit(self) -> None:
        """preexec_fn of the agent: without a tmpfs, cap the size of any file it writes."""
        if not self.mounted:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
            resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL, resource.RLIM_INFINITY))

    def grow(self, pid: int) -> None:
        if self.mounted:
            subprocess.run(
                ["mount", "-o", "remount,size=64m", str(self.root)], check=True
            )  # fmt: skip
        else:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)

    def __exit__(self, *_: object) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.root)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Disk]:
    with Disk(tmp_path / "disk") as disk:
        yield disk


def _create(agent: Agent, name: str) -> int:
    job = {"name": name, "schedule": "@manually", "executor": "shell",
           "executor_config": {"command": BODY}}  # fmt: skip
    try:
        agent.post("/v1/jobs", job)
    except urllib.error.HTTPError as exc:
        agent.last_error = exc.read().decode()  # type: ignore[attr-defined]
        return exc.code
    return 201


def test_a_full_disk_refuses_writes_keeps_reads_and_recovers(
    small_disk: Disk, tmp_path: Path
) -> None:
    agent = Agent(tmp_path)
    agent.data_dir = small_disk.root / "data"
    try:
        agent.start(preexec_fn=small_disk.limit)
        assert agent.process is not None
        created = 0
        status = 201
        while status == 201:
            status = _create(agent, f"job-{created:04}")
            created += status == 201
            assert created < 2000, "the disk never filled up"
        assert status == 507, (status, getattr(agent, "last_error", ""))
        assert "disk full: no room in" in agent.last_error  # type: ignore[attr-defined]
        assert created > 50
        # Still up and answering; everything written is readable.
        assert agent.process.poll() is None
        jobs = agent.api("/v1/jobs")
        assert len(jobs) == created
        assert "disk full" in agent.stderr()
        # Refused again while the disk stays full, and the job is not half there.
        assert _create(agent, "while-full") == 507
        assert agent.api("/v1/jobs").__len__() == created

        small_disk.grow(agent.process.pid)
        wait_for(lambda: _create(agent, "after-room") == 201, timeout=20)
        assert agent.api("/v1/jobs/after-room")["name"] == "after-room"
        assert "disk space is back" in agent.stderr()
        run = agent.run_shell("runs-again", "echo fine")
        assert run["success"]
    finally:
        agent.kill9()
        with contextlib.suppress(OSError):
            os.sync()
