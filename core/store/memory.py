"""A single-node store without Raft: the leader once started (at term 1) until closed.

Commands go through the same state machine as Raft's, encoded and decoded on the way
as a Raft log entry is, so what the state holds never shares objects with the caller.
For tests (and tools) where replication is not what is tested.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from core.store.base import ReplicationError
from core.store.codec import decode_command, encode_command
from core.store.commands import Command
from core.store.events import E, EventBus, LeadershipChanged, Unsubscribe
from core.store.state import StoreState

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`core.store.base.Store` in this process's memory."""

    def __init__(self, state: StoreState | None = None, *, address: str = "memory") -> None:
        self.state = state or StoreState()
        self.address = address
        self.fatal: str | None = None
        self.failed = asyncio.Event()
        self._events = EventBus()
        self._started = False
        self._closed = False
        self._term = 0
        self.applied_index = 0

    @property
    def started(self) -> bool:
        return self._started

    @property
    def is_leader(self) -> bool:
        return self._started and not self._closed

    @property
    def term(self) -> int:
        return self._term

    @property
    def leader(self) -> str | None:
        return self.address if self.is_leader else None

    def raft_peers(self) -> list[str]:
        return [self.address] if self._started else []

    async def remove_peer(self, address: str) -> None:
        raise ReplicationError("the in-memory store has no other servers")

    async def start(self, peers: Sequence[str] = ()) -> None:
        """Become the (only) leader; subscribers hear of it as from Raft."""
        if self._started:
            return
        self._started = True
        self._term = 1
        self._events.publish(LeadershipChanged(True, self._term))

    def regain(self) -> None:
        """Lead again at the next term, as a Raft leader does that lost and won an
        election between two looks (tests of the leader's re-establishing)."""
        self._term += 1
        self._events.publish(LeadershipChanged(True, self._term))

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Unsubscribe:
        if kind is LeadershipChanged:
            return self._events.subscribe(kind, handler)
        return self.state.events.subscribe(kind, handler)

    async def apply(self, command: Command) -> Any:
        payload = encode_command(command)
        await asyncio.sleep(0)  # as with Raft, a command is applied after its caller yields
        if not self._started or self._closed:
            raise ReplicationError("no leader: the in-memory store is not running")
        self.applied_index += 1
        return self.state.apply(decode_command(payload))

    async def close(self) -> None:
        if self._closed:
            return
        was_leader = self.is_leader
        self._closed = True
        if was_leader:
            self._events.publish(LeadershipChanged(False, self._term))
