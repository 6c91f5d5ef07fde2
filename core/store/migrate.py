"""The data dir's store format, and the one-way migration from the pickled format.

dkron-py before store format 1 pickled its commands into pysyncobj's journal and its
state into ``snapshot.bin``. On start, before Raft opens them, :func:`prepare_raft_dir`
rewrites both into the versioned encoding of ``core.store.codec`` (keeping the originals
beside them as ``*.v0``), then records the format in ``raft/store-format``. A data dir
written by a newer dkron-py is refused with a message saying so.

The old files are unpickled with an allow-list of the classes that format used (this
project's commands and models, datetimes, pysyncobj's node): it reads only this node's
own files, never anything from the network, and nothing else can be constructed.
"""

from __future__ import annotations

import contextlib
import datetime as _datetime
import gzip
import io
import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from pysyncobj.journal import FileJournal
from pysyncobj.node import TCPNode

from core.jobs import model
from core.store import commands
from core.store._raft_wire import safe_loads
from core.store.codec import SNAPSHOT_FORMAT, CodecError, encode_command, is_snapshot

__all__ = ["FORMAT_FILE", "StoreFormatError", "prepare_raft_dir"]

log = logging.getLogger("dkron.raft")

FORMAT_FILE = "store-format"
JOURNAL = "journal.bin"
SNAPSHOT = "snapshot.bin"
_REGULAR = b"\x00"  # pysyncobj's _COMMAND_TYPE.REGULAR
_PYSYNCOBJ_PROTOCOL = 2  # what pysyncobj.pickle.dumps writes


class StoreFormatError(Exception):
    """The data dir cannot be opened by this version; the message says what to do."""


def _legacy_classes() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("datetime", "datetime"): _datetime.datetime,
        ("datetime", "timezone"): _datetime.timezone,
        ("datetime", "timedelta"): _datetime.timedelta,
        ("pysyncobj.node", "TCPNode"): TCPNode,
        ("_codecs", "encode"): _latin1,
        ("__builtin__", "bytes"): bytes,
        ("builtins", "bytes"): bytes,
        ("__builtin__", "set"): set,
        ("builtins", "set"): set,
    }
    for name in ("Job", "Execution", "RetryBackoff"):
        allowed[("core.jobs.model", name)] = getattr(model, name)
    for name in commands.__all__:
        value = getattr(commands, name)
        if isinstance(value, type):
            allowed[("core.store.commands", name)] = value
    return allowed


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _LegacyUnpickler(pickle.Unpickler):
    allowed = _legacy_classes()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"the old format never held {module}.{name}")
        return found


def _legacy_loads(data: bytes) -> Any:
    return _LegacyUnpickler(io.BytesIO(data)).load()


def prepare_raft_dir(raft_dir: Path, write_snapshot: Any) -> list[str]:
    """Check (and if needed migrate) ``raft_dir`` before Raft opens it.

    ``write_snapshot(path, state, raft_data)`` writes a current-format snapshot of a restored
    legacy ``StoreState``. Returns a line per file migrated. Raises
    :class:`StoreFormatError` for a data dir this version cannot use.
    """
    marker = raft_dir / FORMAT_FILE
    if marker.exists():
        try:
            written = json.loads(marker.read_text())
            version = int(written["format"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreFormatError(
                f"{marker} is unreadable ({exc}); it should hold {{format: 1}}"
            ) from None
        if version > SNAPSHOT_FORMAT:
            raise StoreFormatError(
                f"the data dir {raft_dir.parent} was written by a newer dkron-py (store format "
                f"{version}; this one reads {SNAPSHOT_FORMAT}): upgrade this server, or move "
                "the data dir away and let the server rejoin the cluster"
            )
        _check_snapshot(raft_dir / SNAPSHOT)
        _check_journal(raft_dir)
        if version < SNAPSHOT_FORMAT:
            # Its snapshots are written in this format from now on: an older dkron-py
            # must refuse the data dir up front rather than fail on the next snapshot.
            _write_marker(marker)
        return []
    notes = []
    journal = raft_dir / JOURNAL
    snapshot = raft_dir / SNAPSHOT
    if snapshot.exists() and snapshot.stat().st_size and not _is_new_snapshot(snapshot):
        _migrate_snapshot(snapshot, write_snapshot)
        notes.append(f"{snapshot}: pickled snapshot rewritten as store format {SNAPSHOT_FORMAT}")
    if journal.exists() and journal.stat().st_size:
        migrated = _migrate_journal(journal)
        if migrated:
            notes.append(f"{journal}: {migrated} pickled command(s) rewritten")
    _check_journal(raft_dir)
    _write_marker(marker)
    for note in notes:
        log.warning("store migration: %s (the originals are kept as *.v0)", note)
    return notes


def _check_journal(raft_dir: Path) -> None:
    from core.store.journal import check_journal

    journal = raft_dir / JOURNAL
    if not journal.exists():
        return
    damage = check_journal(journal)
    if damage is not None:
        raise StoreFormatError(damage.message(raft_dir.parent))


def _check_snapshot(path: Path) -> None:
    if not path.exists() or not path.stat().st_size:
        return
    with open(path, "rb") as source:
        head = source.read(20)
    if not is_snapshot(head):
        raise StoreFormatError(
            f"{path} is not a dkron-py snapshot (store format {SNAPSHOT_FORMAT})"
        )
    version = int.from_bytes(head[16:20], "big")
    if version > SNAPSHOT_FORMAT:
        raise StoreFormatError(
            f"{path} is snapshot format {version}, written by a newer dkron-py (this one reads "
            f"format {SNAPSHOT_FORMAT}): upgrade this server, or move the data dir away and "
            "let the server rejoin the cluster"
        )


def _is_new_snapshot(path: Path) -> bool:
    with open(path, "rb") as source:
        return is_snapshot(source.read(20))


def _write_marker(marker: Path) -> None:
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": SNAPSHOT_FORMAT}) + "\n")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, marker)


def convert_entry(command: bytes) -> bytes | None:
    """A journal entry in the new encoding, or None if it needs no change."""
    if command[:1] != _REGULAR:
        return None  # no-op, membership and version entries hold no store command
    try:
        safe_loads(command[1:])
        return None  # already (funcID, (payload bytes,))
    except pickle.UnpicklingError:
        pass
    try:
        call = _legacy_loads(command[1:])
    except Exception as exc:
        raise StoreFormatError(f"a journal entry cannot be read in either format: {exc}") from None
    if not (isinstance(call, tuple) and len(call) >= 2 and len(call[1]) == 1):
        raise StoreFormatError(f"a journal entry is not a store command: {call!r:.80}")
    function_id, (legacy,) = call[0], call[1]
    try:
        payload = encode_command(legacy)
    except (TypeError, CodecError) as exc:
        raise StoreFormatError(f"a journal entry holds an unknown command: {exc}") from exc
    return _REGULAR + pickle.dumps((function_id, (payload,)), _PYSYNCOBJ_PROTOCOL)


def _migrate_journal(path: Path) -> int:
    journal = FileJournal(str(path))
    try:
        entries = [journal[i] for i in range(len(journal))]
    finally:
        journal._destroy()
    rewritten = []
    changed = 0
    for command, index, term in entries:
        new = convert_entry(command)
        if new is not None:
            changed += 1
        rewritten.append((command if new is None else new, index, term))
    if not changed:
        return 0
    tmp = path.with_name(path.name + ".migrating")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    target = FileJournal(str(tmp))
    try:
        for entry in rewritten:
            target.add(*entry)
        target.flush()
    finally:
        target._destroy()
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    shutil.copy2(path, path.with_name(path.name + ".v0"))
    os.replace(tmp, path)
    return changed


def _migrate_snapshot(path: Path, write_snapshot: Any) -> None:
    from core.store.state import StoreState

    try:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as source:
            data, raft_data = _LegacyUnpickler(source).load()
    except Exception as exc:
        raise StoreFormatError(
            f"{path} cannot be read as an old dkron-py snapshot: {exc}"
        ) from None
    state = StoreState()
    state.restore_legacy(data)
    last, previous, cluster = raft_data
    entries = []
    for command, index, term in (last, previous):
        new = convert_entry(command)
        entries.append((command if new is None else new, index, term))
    tmp = path.with_name(path.name + ".migrating")
    write_snapshot(str(tmp), state, (entries[0], entries[1], cluster))
    shutil.copy2(path, path.with_name(path.name + ".v0"))
    os.replace(tmp, path)
