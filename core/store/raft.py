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
import gzip
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated

from core.store.commands import Command
from core.store.state import StoreError, StoreState

__all__ = ["RaftConfig", "RaftStore", "ReplicationError"]

log = logging.getLogger("dkron.raft")


# Without a quorum a command cannot commit; stop spinning and fall back to the period.
_MAX_EAGER_TICKS = 50


class ReplicationError(Exception):
    """The command was not committed (no leader, queue full, shut down)."""


@dataclass(frozen=True)
class RaftConfig:
    bind: str  # "host:port" this node's Raft transport listens on
    peers: Sequence[str] = ()
    data_dir: Path | None = None  # None: in memory only (--dev)
    password: str | None = None
    tick_interval: float = 0.005
    # Tuned for cron: a leader that loses its quorum stops acting within ~2 s.
    raft_min_timeout: float = 0.4
    raft_max_timeout: float = 0.8
    append_entries_period: float = 0.05
    leader_fallback_timeout: float = 2.0
    log_compaction_min_entries: int = 20_000
    log_compaction_min_time: float = 300.0


class _Replicated(SyncObjConsumer):  # type: ignore[misc]
    def __init__(self, state: StoreState) -> None:
        super().__init__()
        self.state = state

    @replicated  # type: ignore[untyped-decorator]
    def apply(self, command: Command) -> tuple[bool, Any]:
        # An exception here would abort the tick; refusals travel back as values.
        try:
            return True, self.state.apply(command)
        except StoreError as exc:
            return False, exc

    def _serialize(self) -> Any:
        return self.state.snapshot()

    def _deserialize(self, data: Any) -> None:
        self.state.restore(data)


class RaftStore:
    def __init__(self, config: RaftConfig, state: StoreState | None = None) -> None:
        self.config = config
        self.state = state or StoreState()
        self._consumer = _Replicated(self.state)
        journal = dump = None
        if config.data_dir is not None:
            raft_dir = Path(config.data_dir) / "raft"
            raft_dir.mkdir(parents=True, exist_ok=True)
            journal, dump = str(raft_dir / "journal.bin"), str(raft_dir / "snapshot.bin")
        conf = SyncObjConf(
            autoTick=False,
            # gRPC shares this process and is not fork-safe: snapshot in-process.
            useFork=False,
            appendEntriesUseBatch=False,
            dynamicMembershipChange=True,
            commandsWaitLeader=True,
            journalFile=journal,
            fullDumpFile=dump,
            serializer=self._write_snapshot if dump else None,
            deserializer=self._read_snapshot if dump else None,
            password=config.password,
            raftMinTimeout=config.raft_min_timeout,
            raftMaxTimeout=config.raft_max_timeout,
            appendEntriesPeriod=config.append_entries_period,
            leaderFallbackTimeout=config.leader_fallback_timeout,
            logCompactionMinEntries=config.log_compaction_min_entries,
            logCompactionMinTime=config.log_compaction_min_time,
        )
        self._sync = SyncObj(config.bind, list(config.peers), conf, consumers=[self._consumer])
        self._ticker: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._leadership_listeners: list[Callable[[bool], None]] = []
        self._was_leader = False
        self._closed = False
        self._pending = 0

    # -- snapshots -------------------------------------------------------------------------

    # pysyncobj's own dump pickles through gzip level 9 on the ticking thread, which
    # is this event loop: 5.6 s for 20k jobs with 100k executions. Protocol-5 pickle
    # with fast compression takes about a fifth of that.
    def _write_snapshot(self, filename: str, raft_data: Any) -> None:
        with (
            open(filename, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out,
        ):
            pickle.dump((self.state.snapshot(), raft_data), out, protocol=5)

    def _read_snapshot(self, filename: str) -> Any:
        with open(filename, "rb") as raw, gzip.GzipFile(fileobj=raw) as source:
            state, raft_data = pickle.load(source)
        self.state.restore(state)
        return raft_data

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, ready_timeout: float = 30.0) -> None:
        self._ticker = asyncio.create_task(self._tick_forever(), name="raft-tick")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_timeout
        while not self._sync._isReady():
            if loop.time() > deadline:
                raise ReplicationError(f"raft not ready after {ready_timeout:g}s")
            await asyncio.sleep(self.config.tick_interval)

    async def _tick_forever(self) -> None:
        while True:
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

    def _tick(self) -> None:
        try:
            self._sync.doTick(0.0)
        except Exception:  # pysyncobj faults must not kill the node's only ticker
            log.exception("raft tick failed")

    def _observe_leadership(self) -> None:
        leader = self.is_leader
        if leader != self._was_leader:
            self._was_leader = leader
            log.info("raft leadership %s", "acquired" if leader else "lost")
            for listener in list(self._leadership_listeners):
                listener(leader)

    def on_leadership(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(is_leader)`` on every change, from the event loop."""
        self._leadership_listeners.append(listener)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._sync.destroy()

    # -- state -----------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return bool(self._sync._isLeader())

    @property
    def leader(self) -> str | None:
        node = self._sync._getLeader()
        return None if node is None else str(node.address if hasattr(node, "address") else node)

    @property
    def term(self) -> int:
        return int(self._sync.raftCurrentTerm)

    def status(self) -> dict[str, Any]:
        return dict(self._sync.getStatus())

    # -- writes ----------------------------------------------------------------------------

    async def apply(self, command: Command) -> Any:
        """Commit ``command`` through Raft and return the state machine's result.

        Raises the state machine's :class:`StoreError` for a refused command and
        :class:`ReplicationError` when it could not be committed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()

        def done(result: Any, error: int) -> None:
            # Runs inside doTick, i.e. on this loop's thread.
            self._pending -= 1
            if future.done():
                return
            if error != FAIL_REASON.SUCCESS:
                future.set_exception(ReplicationError(_fail_reason(error)))
            else:
                future.set_result(result)

        self._pending += 1
        # pysyncobj queues the command, then writes a byte to a wake-up pipe that only
        # a tick drains; past ~64k submissions in one loop iteration the pipe is full.
        # The command is already queued and we tick ourselves: the wake-up is redundant.
        with contextlib.suppress(BlockingIOError):
            self._consumer.apply(command, callback=done)
        self._kick.set()
        ok, value = await future
        if not ok:
            raise value
        return value

    def compact_now(self) -> None:
        """Write a snapshot and truncate the journal (tests, and before a planned restart)."""
        self._sync.forceLogCompaction()


def _fail_reason(code: int) -> str:
    names = {
        FAIL_REASON.QUEUE_FULL: "raft command queue is full",
        FAIL_REASON.MISSING_LEADER: "no raft leader",
        FAIL_REASON.DISCARDED: "command discarded by a new raft leader",
        FAIL_REASON.NOT_LEADER: "this server is not the raft leader",
        FAIL_REASON.LEADER_CHANGED: "raft leader changed before the command committed",
        FAIL_REASON.REQUEST_DENIED: "raft request denied",
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
