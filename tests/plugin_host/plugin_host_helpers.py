"""Helpers shared by the plugin-host tests: install fakes, track and await their PIDs.

Named uniquely on purpose: test directories have no ``__init__.py``, so pytest imports
these modules top-level. (This directory was ``tests/core``; on sys.path that name
became a namespace package ``core`` shadowing the real one.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["FAKES", "install", "recorded_pids", "still_running", "wait_gone"]

FAKES = Path(__file__).resolve().parent / "fakes"


def install(directory: Path, kind: str, name: str, fake: str, mode: int = 0o755) -> Path:
    """Copy ``fakes/<fake>.py`` to ``directory/dkron-<kind>-<name>`` as a runnable script."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"dkron-{kind}-{name}"
    path.write_text(f"#!{sys.executable}\n" + (FAKES / f"{fake}.py").read_text())
    path.chmod(mode)
    return path


def recorded_pids(pid_dir: Path, name: str | None = None) -> set[int]:
    """PIDs the fakes wrote to ``$CORE_FAKE_PID_DIR`` (optionally of one plugin file)."""
    pids = set()
    for entry in pid_dir.iterdir():
        stem, _, pid = entry.name.rpartition(".")
        if pid.isdigit() and (name is None or stem == name):
            pids.add(int(pid))
    return pids


def still_running(pids: Iterable[int]) -> list[int]:
    # A zombie still has a /proc entry: gone means killed *and* reaped.
    return sorted(pid for pid in pids if Path(f"/proc/{pid}").exists())


def wait_gone(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """Poll until every PID is gone or the deadline passes; returns the survivors."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while (left := still_running(pending)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left
