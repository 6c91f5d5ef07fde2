"""pysyncobj's journal file, checked before Raft opens it, and cut back to its last good
record when it is damaged.

The file is pysyncobj 0.3.17's: a 40-byte header (name, version, format, the offset
where records end), then records ``size | index u64 | term u64 | command | size``. Each
record is checked: both sizes agree, indexes follow one another, terms never go back,
and the command decodes: store commands carry their own CRC-32 (core.store.codec), the
others are pysyncobj's and must decode with the network's restricted unpickler. Without
this, a damaged journal either stopped start-up with no message or left a process that
never answered (pysyncobj retried the bad entry on every tick).
"""

from __future__ import annotations

import mmap
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from core.store._raft_wire import safe_loads
from core.store.codec import CodecError, decode_command

__all__ = ["JournalDamage", "check_journal", "cut_journal"]

_HEADER = struct.Struct("<24s8sII")  # name, version, format, offset where records end
_SIZE = struct.Struct("<I")
_INDEX_TERM = struct.Struct("<QQ")
_NAME = b"PYSYNCOBJ"
_FORMAT = 1
_REGULAR, _NO_OP, _MEMBERSHIP, _VERSION = 0, 1, 2, 3


@dataclass(frozen=True)
class JournalDamage:
    path: Path
    offset: int  # byte offset of the first bad record
    entry: int  # how many good records come before it
    reason: str

    def message(self, data_dir: Path) -> str:
        return (
            f"{self.path} is damaged at byte {self.offset} (after {self.entry} good "
            f"entries): {self.reason}. To recover, either run `dkronctl raft recover "
            f"--data-dir {data_dir}` (keeps the {self.entry} good entries and saves the "
            "file first; entries after the damage are lost on this server unless the "
            "cluster has them), or move the data dir away and let this server rejoin the "
            "cluster, which sends it a snapshot"
        )


def _check_command(command: bytes) -> str | None:
    if not command:
        return "an empty command"
    kind = command[0]
    if kind == _NO_OP:
        return None if len(command) == 1 else "a no-op entry with data"
    if kind not in (_REGULAR, _MEMBERSHIP, _VERSION):
        return f"unknown entry type {kind}"
    try:
        value = safe_loads(command[1:])
    except Exception as exc:
        return f"entry does not decode: {type(exc).__name__}: {exc}"
    if kind != _REGULAR:
        return None
    if not (isinstance(value, tuple) and len(value) in (2, 3) and isinstance(value[1], tuple)):
        return "a store entry of the wrong shape"
    arguments = value[1]
    if len(arguments) != 1 or not isinstance(arguments[0], bytes):
        return "a store entry without its command"
    try:
        decode_command(arguments[0])
    except CodecError as exc:
        return str(exc)
    return None


def check_journal(path: Path) -> JournalDamage | None:
    """The first damaged record of ``path``, or None when every record is sound."""
    size = path.stat().st_size
    if size == 0:
        return None  # pysyncobj writes the header on first open
    if size < _HEADER.size:
        return JournalDamage(path, 0, 0, f"the file is {size} bytes, shorter than its header")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        name, _version, form, end = _HEADER.unpack_from(data, 0)
        if not name.startswith(_NAME) or form != _FORMAT:
            return JournalDamage(path, 0, 0, "the header is not a pysyncobj journal's")
        offset, entries = _HEADER.size, 0
        previous: tuple[int, int] | None = None
        if end > size:
            end_note = f"the header says records end at byte {end}, the file has {size}"
        else:
            end_note = ""
        limit = min(end, size)
        while offset < end:
            reason = None
            if offset + _SIZE.size > limit:
                reason = end_note or "a record is cut short"
            else:
                (length,) = _SIZE.unpack_from(data, offset)
                stop = offset + _SIZE.size + length
                if length < _INDEX_TERM.size or stop + _SIZE.size > limit:
                    reason = end_note or f"a record claims {length} bytes past the end"
                elif _SIZE.unpack_from(data, stop)[0] != length:
                    reason = "a record's two size fields disagree"
                else:
                    index, term = _INDEX_TERM.unpack_from(data, offset + _SIZE.size)
                    if previous is not None and (index != previous[0] + 1 or term < previous[1]):
                        reason = (
                            f"entry {index} (term {term}) does not follow entry {previous[0]} "
                            f"(term {previous[1]})"
                        )
                    else:
                        command = bytes(data[offset + _SIZE.size + _INDEX_TERM.size : stop])
                        reason = _check_command(command)
                        previous = (index, term)
            if reason is not None:
                return JournalDamage(path, offset, entries, reason)
            offset = stop + _SIZE.size
            entries += 1
    return None


def cut_journal(damage: JournalDamage) -> Path:
    """Cut the journal back to the records before ``damage``; returns the saved copy."""
    saved = damage.path.with_name(damage.path.name + ".damaged")
    shutil.copy2(damage.path, saved)
    with open(damage.path, "r+b") as handle:
        header = bytearray(handle.read(_HEADER.size))
        name, version, form, _ = _HEADER.unpack_from(header, 0)
        handle.seek(0)
        handle.write(_HEADER.pack(name, version, form, damage.offset))
        handle.flush()
        os.fsync(handle.fileno())
    return saved
