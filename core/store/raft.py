"""The replicated store: pysyncobj under the state machine, ticked from the asyncio loop.

pysyncobj normally runs a tick thread and commits on its period (~50-100 ms per
synchronous write). Here ``autoTick`` is off and the event loop ticks it: right
after each submission (a single-node commit then costs tens of microseconds) and
every ``tick_interval`` otherwise. Because Raft applies commands on the loop's
thread, API reads of the state need no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import logging
import os
import pickle
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import SyncObjException

from core.store import _journal_file, _raft_wire
from core.store._journal_file import GuardedFileJournal, is_disk_full
from core.store.base import DiskFullError, ReplicationError
from core.store.codec import CodecError, decode_command, encode_command, read_snapshot
from core.store.codec import write_snapshot as write_snapshot_file
from core.store.commands import Batch, Command, FinishExecution, StartExecution
from core.store.events import E, EventBus, LeadershipChanged, Unsubscribe
from core.store.migrate import StoreFormatError, prepare_raft_dir
from core.store.state import Capture, StoreError, StoreState

__all__ = ["DiskFullError", "RaftConfig", "RaftStore", "ReplicationError", "StoreFormatError"]

log = logging.getLogger("dkron.raft")

# Every frame, entry and journal record pysyncobj decodes goes through the guards, and
# its journal reserves disk space before writing.
_raft_wire.install()
_journal_file.install()
# While the disk is full: how often to look for room again, and how much to look for.
_DISK_PROBE_INTERVAL = 1.0
_DISK_PROBE_BYTES = 64 << 10


# Without a quorum a command cannot commit; stop spinning and fall back to the period.
_MAX_EAGER_TICKS = 50
# A batch of finishes carries their output: keep one log entry to about a megabyte.
_MAX_BATCH_BYTES = 1 << 20
_NO_CHUNKING_BYTES = 64 << 20


@dataclass(frozen=True)
class RaftConfig:
    bind: str  # "host:port": this server's Raft identity, the address peers dial
    listen: str | None = None  # where to listen when not ``bind`` (e.g. 0.0.0.0:port)
    peers: Sequence[str] = ()
    data_dir: Path | None = None  # None: in memory only (--dev)
    password: str | None = None
    tick_interval: float = 0.005
    # Tuned for cron: a leader that loses its quorum stops acting within ~2 s, and a
    # dead one is replaced in about a second. Below ~0.5 s a loaded 2-core machine
    # (the event loop busy with a burst of fires) triggers needless elections.
    raft_min_timeout: float = 0.3
    raft_max_timeout: float = 0.9
    append_entries_period: float = 0.05
    leader_fallback_timeout: float = 2.0
    # Dkron's apply timeout. pysyncobj holds commands while there is no leader; an
    # API call gets a 503 after this long instead of hanging.
    apply_timeout: float = 30.0
    log_compaction_min_entries: int = 20_000
    log_compaction_min_time: float = 300.0


class _Replicated(SyncObjConsumer):  # type: ignore[misc]
    def __init__(self, state: StoreState, on_fatal: Callable[[str], None]) -> None:
        super().__init__()
        self.state = state
        self._on_fatal = on_fatal

    # The one replicated method: pysyncobj numbers replicated methods by name, so its
    # name is part of every journal entry.
    @replicated  # type: ignore[untyped-decorator]
    def apply(self, payload: bytes) -> tuple[bool, Any]:
        # An exception here would abort the tick; refusals travel back as values.
        try:
            command = decode_command(payload)
        except CodecError as exc:
            # Every server applies the same log: one that cannot read an entry must stop
            # rather than diverge from the others.
            self._on_fatal(f"cannot apply a Raft log entry: {exc}")
            raise
        try:
            return True, self.state.apply(command)
        except StoreError as exc:
            return False, exc

    # Without a data dir (--dev) pysyncobj keeps snapshots in memory and sends them to
    # followers pickled: hand it our own encoding, as bytes. This one still runs on the
    # loop: pysyncobj's in-memory path pickles and gzips what this returns right away,
    # and has no way to wait for a result (only the file path consults a checker).
    def _serialize(self) -> Any:
        buffer = io.BytesIO()
        write_snapshot_file(buffer, self.state.snapshot_sections(), None)
        return buffer.getvalue()

    def _deserialize(self, data: Any) -> None:
        _, sections = read_snapshot(io.BytesIO(data), "in-memory snapshot")
        self.state.restore_sections(sections)


class RaftStore:
    """The replicated state. ``start(peers)`` joins or forms the Raft group; until then
    the (empty or restored) state can be read but nothing can be written."""

    def __init__(self, config: RaftConfig, state: StoreState | None = None) -> None:
        self.config = config
        self.state = state or StoreState()
        self._consumer = _Replicated(self.state, self._fail)
        # Set when this server cannot go on (an entry or snapshot it cannot read): the
        # agent stops with this message instead of running with a stale state.
        self.fatal: str | None = None
        self.failed = asyncio.Event()
        # Set while the journal cannot grow (see _journal_file); cleared once it can.
        self.disk_full: str | None = None
        self._disk_probed = 0.0
        self._raft_dir: Path | None = None
        if config.data_dir is not None:
            self._raft_dir = Path(config.data_dir) / "raft"
            self._raft_dir.mkdir(parents=True, exist_ok=True)
        self._sync: SyncObj | None = None
        self._written_peers: list[str] | None = None  # what peers.json holds, once written
        self._ticker: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._events = EventBus()  # leadership; the state machine has its own
        self._was_leader = False
        self._led_term = 0
        self._closed = False
        self._pending = 0
        self._batch: list[tuple[StartExecution | FinishExecution, asyncio.Future[Any]]] = []
        self._batch_bytes = 0
        self._batch_tasks: set[asyncio.Future[None]] = set()
        # The snapshot being written by a thread (see _write_snapshot), and how many
        # have been started / reported done to pysyncobj.
        self._snapshot: _SnapshotWrite | None = None
        self._snapshot_generation = 0  # bumped when a snapshot is loaded (see _read_snapshot)
        self.snapshots_started = 0
        self.snapshots_reported = 0
        self.last_snapshot_ok: bool | None = None
        self._snapshot_reported = asyncio.Event()

    # -- cluster configuration -------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._sync is not None

    def _peers_file(self) -> Path | None:
        return None if self._raft_dir is None else self._raft_dir / "peers.json"

    def saved_peers(self) -> list[str] | None:
        """The peers this node last ran with (None: it never joined a Raft group).

        pysyncobj replays membership changes from its journal and snapshot, but
        needs the configuration it started from to get there."""
        path = self._peers_file()
        if path is None or not path.exists():
            return None
        data = json.loads(path.read_text())
        return [str(peer) for peer in data.get("peers", [])]

    def _save_peers(self, peers: Sequence[str]) -> None:
        path = self._peers_file()
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"self": self.config.bind, "peers": sorted(peers)}))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self._written_peers = sorted(peers)

    def _build(self, peers: Sequence[str]) -> SyncObj:
        journal = dump = None
        if self._raft_dir is not None:
            journal = str(self._raft_dir / "journal.bin")
            dump = str(self._raft_dir / "snapshot.bin")
        config = self.config
        conf = SyncObjConf(
            autoTick=False,
            # gRPC shares this process and is not fork-safe: snapshot in-process.
            useFork=False,
            appendEntriesUseBatch=False,
            # pysyncobj 0.3.17 splits an entry bigger than this into chunks and marks
            # the last one by comparing with the unpickled size, so a follower can
            # unpickle a truncated entry ("pickle data was truncated", seen with a
            # 150 kB batch). Entries here stay near 1 MB (a batch, or one 256 kB
            # output): never chunk them.
            appendEntriesBatchSizeBytes=_NO_CHUNKING_BYTES,
            dynamicMembershipChange=True,
            commandsWaitLeader=True,
            journalFile=journal,
            fullDumpFile=dump,
            serializer=self._write_snapshot if dump else None,
            deserializer=self._read_snapshot if dump else None,
            serializeChecker=self._snapshot_progress if dump else None,
            password=config.password,
            bindAddress=config.listen,
            raftMinTimeout=config.raft_min_timeout,
            raftMaxTimeout=config.raft_max_timeout,
            appendEntriesPeriod=config.append_entries_period,
            leaderFallbackTimeout=config.leader_fallback_timeout,
            logCompactionMinEntries=config.log_compaction_min_entries,
            logCompactionMinTime=config.log_compaction_min_time,
            # Without autoTick, pysyncobj's constructor retries a failed bind in a busy
            # loop, forever by default: the event loop (API, gossip, everything) froze
            # with a taken Raft port. One attempt, then a clear error.
            maxBindRetries=1,
        )
        quiet = logging.getLogger("pysyncobj.syncobj")  # its traceback adds nothing to ours
        was_disabled, quiet.disabled = quiet.disabled, True
        try:
            return SyncObj(
                config.bind,
                list(peers),
                conf,
                consumers=[self._consumer],
                transportClass=_raft_wire.GuardedTransport,
            )
        except SyncObjException as exc:
            raise ReplicationError(self._bind_failure() or f"raft did not start: {exc}") from None
        finally:
            quiet.disabled = was_disabled

    def _fail(self, reason: str) -> None:
        if self.fatal is None:
            self.fatal = reason
            log.critical("%s; this server stops", reason)
            self.failed.set()

    def raft_peers(self) -> list[str]:
        """Every Raft address in the current configuration, this node's included."""
        if self._sync is None:
            return []
        status = self._sync.getStatus()
        others = [
            key.removeprefix("partner_node_status_server_")
            for key in status
            if key.startswith("partner_node_status_server_")
        ]
        return sorted([self.config.bind, *others])

    async def _membership(self, change: Callable[..., None], address: str) -> None:
        if self._sync is None:
            raise ReplicationError("raft has not started on this server")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done(_result: Any, error: int) -> None:
            if future.done():
                return
            if error != FAIL_REASON.SUCCESS:
                future.set_exception(ReplicationError(_fail_reason(error)))
            else:
                future.set_result(None)

        self._pending += 1
        try:
            change(address, callback=done)
            self._kick.set()
            async with asyncio.timeout(self.config.apply_timeout):
                await future
        except TimeoutError:
            raise ReplicationError(f"membership change of {address} timed out") from None
        finally:
            self._pending -= 1
        self.refresh_saved_peers()

    async def add_peer(self, address: str) -> None:
        """Add a server (leader only); it must not already be voting elsewhere."""
        assert self._sync is not None
        await self._membership(self._sync.addNodeToCluster, address)

    async def remove_peer(self, address: str) -> None:
        assert self._sync is not None
        await self._membership(self._sync.removeNodeFromCluster, address)

    def refresh_saved_peers(self) -> None:
        """Record the live configuration, so a restart starts from the latest one."""
        if self._sync is None or self._peers_file() is None:
            return
        current = sorted(p for p in self.raft_peers() if p != self.config.bind)
        if current != self._written_peers:
            self._save_peers(current)

    def transfer_leadership(self) -> None:
        """Hand leadership to another server (Raft TimeoutNow) before leaving."""
        if self._sync is not None and self.is_leader:
            self._sync.transferLeadership()
            self._kick.set()

    # -- snapshots -------------------------------------------------------------------------

    # pysyncobj's own dump pickles through gzip level 9 on the ticking thread, which
    # is this event loop. Ours is the store's versioned encoding with fast compression,
    # and only its capture runs on the loop: pysyncobj calls this from doTick, we copy
    # the state's containers (O(jobs) pointers: jobs and history tuples are replaced,
    # never changed) and a thread encodes, writes and fsyncs the file. pysyncobj asks
    # _snapshot_progress on every tick; once the file is complete, that renames it to
    # the snapshot's name and says SUCCESS, and pysyncobj truncates the journal in the
    # same call. The two must go together: on start pysyncobj drops a journal that
    # does not begin where the snapshot ends, so a snapshot renamed in by the thread
    # while the journal still held everything (a stop before the next tick) lost the
    # entries after it.
    def _write_snapshot(self, filename: str, raft_data: Any) -> None:
        # `filename` is pysyncobj's "<snapshot>.tmp", which it renames over the snapshot
        # the moment this returns. It must not exist then: a leftover from a crash of an
        # older dkron-py (which wrote there) would replace a good snapshot. pysyncobj's
        # rename then fails, and it ignores that; our thread renames its own file.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(filename)
        assert self._raft_dir is not None
        final = str(self._raft_dir / _SNAPSHOT_NAME)
        job = _SnapshotWrite(final, self._snapshot_generation)
        self._snapshot = job
        self.snapshots_started += 1
        try:
            capture = self.state.capture()
            job.thread = threading.Thread(
                target=_write_in_background,
                args=(job, capture, raft_data),
                name="raft-snapshot",
                daemon=True,
            )
            job.thread.start()
        except BaseException:
            # Reported FAILED on the next tick (pysyncobj starts no other snapshot
            # until this one is reported).
            job.thread = None
            job.outcome = False
            raise

    def _snapshot_progress(self) -> int:
        """pysyncobj's serializeChecker: the state of the snapshot in the works (on the
        loop, inside doTick)."""
        job = self._snapshot
        if job is None:
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        if job.outcome is None:
            return int(SERIALIZER_STATE.SERIALIZING)
        self._snapshot = None
        if job.outcome:
            job.outcome = self._install(job)
        self.snapshots_reported += 1
        self.last_snapshot_ok = job.outcome
        self._snapshot_reported.set()
        return int(SERIALIZER_STATE.SUCCESS if job.outcome else SERIALIZER_STATE.FAILED)

    def _install(self, job: _SnapshotWrite) -> bool:
        partial = job.final + _PARTIAL_SUFFIX
        try:
            if job.generation != self._snapshot_generation:
                # A snapshot from the leader was installed meanwhile: this older one
                # must not replace it.
                os.unlink(partial)
                return False
            os.replace(partial, job.final)
            _fsync_dir(os.path.dirname(job.final))
        except OSError as exc:
            log.warning("snapshot not installed: %s", exc)
            with contextlib.suppress(OSError):
                os.unlink(partial)
            return False
        return True

    async def compact(self, timeout: float = 60.0) -> bool:
        """Write a snapshot and truncate the journal, and wait for it: True when it was
        written, False when it failed (or there was nothing new to write)."""
        if self._sync is None:
            return False
        target = self.snapshots_started + 1  # the first snapshot started from now on
        self.compact_now()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # pysyncobj declines when nothing was applied since the last snapshot: when none
        # has started this long after it could have, there is none coming.
        idle_since = loop.time()
        while self.snapshots_reported < target:
            now = loop.time()
            if now > deadline:
                raise ReplicationError(f"snapshot not written after {timeout:g}s")
            if self._snapshot is not None:
                idle_since = now  # ours, or one before it that must finish first
            elif now - idle_since > 0.25 + 20 * self.config.tick_interval:
                return False
            self._snapshot_reported.clear()
            self._kick.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self._snapshot_reported.wait()
        return bool(self.last_snapshot_ok)

    def _read_snapshot(self, filename: str) -> Any:
        # pysyncobj logs and swallows a failure here (its own state then goes on), so a
        # snapshot that cannot be read also stops the server.
        # A snapshot still being written is of an older state than this one.
        self._snapshot_generation += 1
        try:
            with open(filename, "rb") as source:
                raft, sections = read_snapshot(source, filename)
            self.state.restore_sections(sections)
            _settle_heap(self.state)
            return _decode_raft_data(raft, filename)
        except (OSError, CodecError) as exc:
            data_dir = self._raft_dir.parent if self._raft_dir is not None else "<data-dir>"
            self._fail(
                f"cannot load the snapshot: {exc}. A snapshot cannot be repaired: move "
                f"{data_dir} away and let this server rejoin the cluster (it is sent a "
                "snapshot), or start afresh and POST a backup to /v1/restore"
            )
            raise

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, peers: Sequence[str] = (), ready_timeout: float = 30.0) -> None:
        """Start Raft with ``peers`` (other servers' Raft addresses) and wait until the
        journal and snapshot are applied."""
        if self._sync is not None:
            return
        if self._raft_dir is not None:
            prepare_raft_dir(self._raft_dir, write_snapshot)
            # A snapshot a crash left half-written: never installed, only taking space.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._raft_dir / (_SNAPSHOT_NAME + _PARTIAL_SUFFIX))
        self._save_peers(peers)
        self._sync = self._build(peers)
        self._ticker = asyncio.create_task(self._tick_forever(), name="raft-tick")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_timeout
        while not self._sync._isReady() and len(peers) == 0:
            if self.fatal is not None:
                raise StoreFormatError(self.fatal)
            if loop.time() > deadline:
                raise ReplicationError(f"raft not ready after {ready_timeout:g}s")
            await asyncio.sleep(self.config.tick_interval)
        _settle_heap(self.state)

    async def _tick_forever(self) -> None:
        while self.fatal is None:
            self._tick()
            # Appending a command and applying it take separate ticks: keep ticking
            # (yielding to the loop in between) while commands await their commit.
            spins = 0
            while self._pending and spins < _MAX_EAGER_TICKS:
                await asyncio.sleep(0)
                self._tick()
                spins += 1
            self._observe_leadership()
            self._kick.clear()
            if self._pending and spins < _MAX_EAGER_TICKS:
                continue
            # Not wait_for: on 3.11 it can swallow close()'s cancel (see Scheduler._run).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.tick_interval):
                    await self._kick.wait()

    def _bind_failure(self) -> str | None:
        """Why the Raft listener cannot bind (tried again here for the OS's reason)."""
        listen = self.config.listen or self.config.bind
        host, _, port = listen.rpartition(":")
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host.strip("[]"), int(port)))
        except OSError as exc:
            return f"raft cannot listen on {listen}: {exc.strerror or exc}"
        return None

    def _journal(self) -> GuardedFileJournal | None:
        journal = None if self._sync is None else self._sync._SyncObj__raftLog
        return journal if isinstance(journal, GuardedFileJournal) else None

    def _out_of_space(self, reason: str) -> None:
        if self.disk_full is None:
            log.error(
                "disk full: %s; writes are refused (reads keep working) until there is room",
                reason,
            )
        self.disk_full = reason

    def _space_is_back(self) -> None:
        if self.disk_full is not None:
            self.disk_full = None
            log.warning("disk space is back: writes resume")

    def _probe_disk(self) -> None:
        journal = self._journal()
        now = asyncio.get_running_loop().time()
        if journal is None or now - self._disk_probed < _DISK_PROBE_INTERVAL:
            return
        self._disk_probed = now
        try:
            journal.room_for(_DISK_PROBE_BYTES)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            return
        self._space_is_back()

    def _tick(self) -> None:
        if self._sync is None:
            return
        if self.disk_full is not None:
            self._probe_disk()
        try:
            # pysyncobj checks its election and leader-lease deadlines first and reads
            # the network last. After the loop was busy for a while, heartbeats that
            # arrived meanwhile must count before those deadlines are judged, or a
            # loaded follower starts a needless election (and a leader steps down).
            self._sync._poller.poll(0.0)
            self._sync.doTick(0.0)
        except (pickle.UnpicklingError, CodecError) as exc:
            # pysyncobj retries an entry it cannot apply on every tick, forever.
            self._fail(f"cannot apply a Raft log entry: {exc}")
        except OSError as exc:
            if not is_disk_full(exc):
                log.exception("raft tick failed")
                return
            # A follower's append (or pysyncobj's own metadata) found no room: nothing of
            # it was taken in; the leader sends it again once this server can hold it.
            self._out_of_space(str(exc))
        except Exception:  # pysyncobj faults must not kill the node's only ticker
            log.exception("raft tick failed")

    def _observe_leadership(self) -> None:
        leader = self.is_leader
        term = self.term
        # Lost and won back between two looks (a rejoining server's vote request makes
        # pysyncobj step down, and it wins the next election at once): that is a new
        # leadership, at a new term, and the listeners must hear of it.
        regained = leader and self._was_leader and term != self._led_term
        if leader != self._was_leader or regained:
            self._was_leader = leader
            if leader:
                self._led_term = term
            state = "acquired" if leader else "lost"
            log.info("raft leadership %s (term %d)", "regained" if regained else state, term)
            self._events.publish(LeadershipChanged(leader, term))

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Unsubscribe:
        """``handler(event)`` for each event of type ``kind``, from the event loop:
        :class:`LeadershipChanged` from here, the rest from the state machine."""
        if kind is LeadershipChanged:
            return self._events.subscribe(kind, handler)
        return self.state.events.subscribe(kind, handler)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._batch_tasks):
            task.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        job = self._snapshot
        if job is not None and job.thread is not None:
            # Let a snapshot being written finish, and one more tick install it with
            # the journal truncated to match (a file left unfinished is ignored).
            await asyncio.to_thread(job.thread.join)
            self._tick()
        if self._sync is not None:
            self._sync.destroy()

    # -- state -----------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._sync is not None and bool(self._sync._isLeader())

    @property
    def leader(self) -> str | None:
        """The leader's Raft address, as far as this server knows."""
        if self._sync is None:
            return None
        node = self._sync._getLeader()
        return None if node is None else str(node.address if hasattr(node, "address") else node)

    @property
    def term(self) -> int:
        return 0 if self._sync is None else int(self._sync.raftCurrentTerm)

    @property
    def applied_index(self) -> int:
        return 0 if self._sync is None else int(self._sync.raftLastApplied)

    def status(self) -> dict[str, Any]:
        return {} if self._sync is None else dict(self._sync.getStatus())

    # -- writes ----------------------------------------------------------------------------

    async def apply(self, command: Command) -> Any:
        """Commit ``command`` through Raft and return the state machine's result.

        Starts and finishes issued in the same event-loop iteration share one log
        entry (a burst of 300 fires is one replication round, not 300).

        Raises the state machine's :class:`StoreError` for a refused command and
        :class:`ReplicationError` when it could not be committed.
        """
        if isinstance(command, StartExecution | FinishExecution):
            return await self._batched(command)
        return await self._apply_one(command)

    async def _batched(self, command: StartExecution | FinishExecution) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        self._batch.append((command, future))
        self._batch_bytes += len(command.execution.output)
        if self._batch_bytes > _MAX_BATCH_BYTES:
            self._flush_batch()
        elif len(self._batch) == 1:
            loop.call_soon(self._flush_batch)
        ok, value = await future
        if not ok:
            raise value
        return value

    def _flush_batch(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        task = asyncio.ensure_future(self._commit_batch(batch))
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)

    async def _commit_batch(
        self, batch: list[tuple[StartExecution | FinishExecution, asyncio.Future[Any]]]
    ) -> None:
        try:
            if len(batch) == 1:
                command, future = batch[0]
                try:
                    value = await self._apply_one(command)
                except StoreError as exc:
                    outcome: list[tuple[bool, Any]] = [(False, exc)]
                else:
                    outcome = [(True, value)]
            else:
                outcome = await self._apply_one(Batch(tuple(c for c, _ in batch)))
        except (ReplicationError, asyncio.CancelledError) as exc:
            error = exc if isinstance(exc, ReplicationError) else ReplicationError("shut down")
            for _, future in batch:
                if not future.done():
                    future.set_result((False, error))
            return
        for (_, future), result in zip(batch, outcome, strict=True):
            if not future.done():
                future.set_result(result)

    async def _apply_one(self, command: Command) -> Any:
        """Commit one log entry.

        Raises the state machine's :class:`StoreError` for a refused command and
        :class:`ReplicationError` when it could not be committed.
        """
        if self._sync is None:
            raise ReplicationError("no raft leader: this server has not joined a cluster yet")
        if self.fatal is not None:
            raise ReplicationError(f"this server has stopped: {self.fatal}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()

        def done(result: Any, error: int) -> None:
            # Runs inside doTick, i.e. on this loop's thread.
            if future.done():
                return  # timed out (and uncounted) already
            self._pending -= 1
            if error != FAIL_REASON.SUCCESS:
                future.set_exception(ReplicationError(_fail_reason(error)))
            else:
                future.set_result(result)

        payload = encode_command(command)
        self._reserve(len(payload))
        self._pending += 1
        # pysyncobj queues the command, then writes a byte to a wake-up pipe that only
        # a tick drains; past ~64k submissions in one loop iteration the pipe is full.
        # The command is already queued and we tick ourselves: the wake-up is redundant.
        with contextlib.suppress(BlockingIOError):
            self._consumer.apply(payload, callback=done)
        self._kick.set()
        try:
            async with asyncio.timeout(self.config.apply_timeout):
                ok, value = await future
        except TimeoutError:
            # Awaiting the future was cancelled, which cancels the future too: the late
            # callback then returns early, so the count is settled here.
            self._pending -= 1
            raise ReplicationError(
                f"timed out after {self.config.apply_timeout:g}s waiting for a raft leader "
                "to commit the command (it may still be committed)"
            ) from None
        if not ok:
            raise value
        return value

    def _reserve(self, size: int) -> None:
        """Room in this server's journal for an entry of ``size`` bytes, before it is
        submitted: a full disk refuses the write instead of losing it later."""
        journal = self._journal()
        if journal is None:
            return
        try:
            journal.room_for(size)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._out_of_space(str(exc))
            assert self._raft_dir is not None
            raise DiskFullError(
                f"disk full: no room in {self._raft_dir} for this write ({size} bytes); "
                "free space there and writes resume by themselves (reads keep working)"
            ) from None
        self._space_is_back()

    def compact_now(self) -> None:
        """Write a snapshot and truncate the journal (tests, and before a planned restart)."""
        if self._sync is not None:
            self._sync.forceLogCompaction()


_SNAPSHOT_NAME = "snapshot.bin"
# Where the snapshot thread writes before renaming; pysyncobj never touches this name.
_PARTIAL_SUFFIX = ".writing"


class _SnapshotWrite:
    """One snapshot being written to ``final`` + ``.writing``: ``outcome`` is None until
    the thread is done, then whether the file is complete (and fsynced)."""

    __slots__ = ("final", "generation", "outcome", "thread")

    def __init__(self, final: str, generation: int) -> None:
        self.final = final
        self.generation = generation
        self.outcome: bool | None = None
        self.thread: threading.Thread | None = None


def _write_in_background(job: _SnapshotWrite, capture: Capture, raft_data: Any) -> None:
    try:
        write_snapshot(job.final + _PARTIAL_SUFFIX, capture, raft_data)
    except BaseException as exc:
        # A full disk, say: write_snapshot removed the half-written file; pysyncobj
        # keeps the previous snapshot and its journal, and tries again later.
        log.warning("snapshot not written: %s", exc)
        job.outcome = False
    else:
        job.outcome = True


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Below this many jobs a full cyclic collection takes a few ms: nothing to settle.
_SETTLE_ABOVE_JOBS = 10_000


def _settle_heap(state: StoreState) -> None:
    """Move a large loaded state out of the cyclic collector's reach (``gc.freeze``).

    The state is millions of long-lived objects (jobs, their dicts, history tuples) that
    form no cycles; a full collection walked all of them on the loop: 69 ms at 100k
    jobs, 720 ms at 1M, a stall at a moment nobody chooses. Done where a state was just
    loaded (start-up, a snapshot installed from the leader): one full collection first,
    so no garbage is frozen with it, then the freeze. Frozen objects are still freed by
    reference counting when the state drops them."""
    if len(state.jobs) < _SETTLE_ABOVE_JOBS:
        return
    gc.collect()
    gc.freeze()


def write_snapshot(filename: str, state: StoreState | Capture, raft_data: Any) -> None:
    """A snapshot file of ``state`` (pysyncobj's ``raft_data``: the last two applied
    entries and the cluster), written as the store's snapshot format."""
    last, previous, cluster = raft_data
    raft = {
        "entries": [[bytes(e[0]), int(e[1]), int(e[2])] for e in (last, previous)],
        "cluster": sorted(node.address for node in cluster),
    }
    try:
        with open(filename, "wb") as out:
            sections = state.sections() if isinstance(state, Capture) else state.snapshot_sections()
            write_snapshot_file(out, sections, raft)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        # A half-written snapshot (a full disk, say) must not keep holding the space;
        # pysyncobj keeps the previous snapshot and tries again later.
        with contextlib.suppress(OSError):
            os.unlink(filename)
        raise


def _decode_raft_data(raft: Any, name: str) -> tuple[Any, Any, set[TCPNode]]:
    try:
        entries = raft["entries"]
        cluster = raft["cluster"]
        (last, previous) = (
            (bytes(command), int(index), int(term)) for command, index, term in entries
        )
        nodes = {TCPNode(str(address)) for address in cluster}
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"{name}: bad Raft section: {exc}") from None
    return last, previous, nodes


def _fail_reason(code: int) -> str:
    names = {
        FAIL_REASON.QUEUE_FULL: "raft command queue is full",
        FAIL_REASON.MISSING_LEADER: "no raft leader",
        FAIL_REASON.DISCARDED: "command discarded by a new raft leader",
        FAIL_REASON.NOT_LEADER: "this server is not the raft leader",
        FAIL_REASON.LEADER_CHANGED: "raft leader changed before the command committed",
        FAIL_REASON.REQUEST_DENIED: "raft request denied",
        getattr(FAIL_REASON, "UNKNOWN_OUTCOME", -1): "raft outcome unknown (leader changed)",
    }
    return names.get(code, f"raft failure {code}")


def data_dir_writable(path: Path) -> None:
    """Fail early with a clear message when the data dir cannot be used."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write-test"
    try:
        probe.write_bytes(b"ok")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(probe)
