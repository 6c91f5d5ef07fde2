"""pysyncobj's journal file, with its disk space reserved before it is written.

pysyncobj 0.3.17 keeps the journal in a memory-mapped file that it grows with
``mmap.resize`` (a sparse ``ftruncate``): on a full filesystem the kernel has no page
to give when a write lands, and the process dies of SIGBUS with nothing logged. Here
every growth first allocates the blocks (``posix_fallocate``), so a full disk is an
``OSError`` at a point where nothing has changed yet, and a journal append checks its
room *before* pysyncobj records the entry in memory, so memory and disk never
disagree. :func:`install` puts these classes where pysyncobj builds its journal.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from typing import Any

import pysyncobj.journal
import pysyncobj.syncobj
from pysyncobj.journal import FileJournal, MemoryJournal, ResizableFile

__all__ = ["DiskFull", "GuardedFileJournal", "install", "is_disk_full"]

log = logging.getLogger("dkron.raft")

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# Grow by doubling (pysyncobj's own factor) up to this much at a time, falling back to
# exactly what is needed when the generous size does not fit.
_MAX_STEP = 64 << 20
_RECORD_OVERHEAD = 4 + struct.calcsize("<QQ") + 4  # size, index and term, size


class DiskFull(OSError):
    """No room on the data dir's filesystem for what Raft must write next."""

    def __init__(self, path: str, wanted: int, cause: OSError) -> None:
        super().__init__(cause.errno or errno.ENOSPC, f"{path}: no room for {wanted} bytes")
        self.path = path


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in _FULL)


class _GuardedFile(ResizableFile):  # type: ignore[misc]
    _ResizableFile__mm: Any
    _ResizableFile__f: Any
    _ResizableFile__fileName: str

    def reserve(self, end: int) -> None:
        """Make the file at least ``end`` bytes, blocks allocated, or raise DiskFull."""
        mapped = self._ResizableFile__mm
        size = mapped.size()
        if end <= size:
            return
        fd = self._ResizableFile__f.fileno()
        error: OSError | None = None
        for want in (max(end, min(size * 2, size + _MAX_STEP)), end):
            try:
                os.posix_fallocate(fd, size, want - size)
            except OSError as exc:
                if exc.errno not in _FULL:
                    raise
                error = exc
                continue
            mapped.resize(want)
            return
        assert error is not None
        raise DiskFull(self._ResizableFile__fileName, end - size, error)

    def write(self, offset: int, values: bytes) -> None:
        self.reserve(offset + len(values))  # pysyncobj's own loop then never grows it
        super().write(offset, values)


class GuardedFileJournal(FileJournal):  # type: ignore[misc]
    _FileJournal__journalFile: _GuardedFile
    _FileJournal__currentOffset: int

    def room_for(self, size: int) -> None:
        """Reserve room for a record of ``size`` command bytes, or raise DiskFull."""
        end = self._FileJournal__currentOffset + size + _RECORD_OVERHEAD
        self._FileJournal__journalFile.reserve(end)

    def add(self, command: bytes, idx: int, term: int) -> None:
        # Before FileJournal.add puts the entry in memory: all or nothing.
        self.room_for(len(command))
        super().add(command, idx, term)


def _create_journal(journal_file: str | None = None) -> Any:
    if journal_file is None:
        return MemoryJournal()
    return GuardedFileJournal(journal_file)


_installed = False


def install() -> None:
    """Route pysyncobj's journal through the classes above (idempotent; the pysyncobj
    release whose private names they use is checked by core.store._raft_wire)."""
    global _installed
    if _installed:
        return
    pysyncobj.journal.ResizableFile = _GuardedFile
    pysyncobj.syncobj.createJournal = _create_journal
    _installed = True
