"""One agent per data dir: an exclusive ``flock`` on ``<data-dir>/LOCK``, holding the
holder's pid. Two agents on one data dir would both lead and run every fire twice."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["DataDirLock", "DataDirLocked"]

LOCK_FILE = "LOCK"


class DataDirLocked(Exception):
    """Another process holds the data dir; the message names it."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise DataDirLocked(
                f"data dir {self.path.parent} is in use by another dkron-py agent"
                f"{f' (pid {holder})' if holder else ''}: stop it, or give this one its own "
                "--data-dir"
            ) from None
        except OSError:
            os.close(fd)
            raise
        # The lock is the flock, not the file: a stale file from a killed agent is
        # simply taken over.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    @staticmethod
    def _holder(fd: int) -> str:
        with contextlib.suppress(OSError, ValueError):
            text = os.pread(fd, 32, 0).decode("ascii").strip()
            if text.isdigit():
                return text
        return ""

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
