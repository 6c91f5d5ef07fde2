"""The store as its users see it: the state to read, commands to apply, leadership.

Two stores implement :class:`Store`: :class:`core.store.raft.RaftStore` (pysyncobj, the
cluster's) and :class:`core.store.memory.MemoryStore` (one node, always leader, for
tests of the scheduler, dispatch and API where Raft is not what they test). Both apply
commands through the same state machine, :class:`core.store.state.StoreState`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from core.store.commands import Command
from core.store.events import E, Unsubscribe
from core.store.state import StoreState

__all__ = ["DiskFullError", "ReplicationError", "Store"]


class ReplicationError(Exception):
    """The command was not committed (no leader, queue full, shut down)."""


class DiskFullError(ReplicationError):
    """The data dir's filesystem has no room for the command: nothing was written.
    Reads keep working; writes resume by themselves once there is room."""


class Store(Protocol):
    """What the leader, the dispatcher, the job service and the API use of a store."""

    @property
    def state(self) -> StoreState:
        """The applied state: read it on the event loop, change it only by :meth:`apply`."""
        ...

    @property
    def started(self) -> bool: ...

    @property
    def is_leader(self) -> bool: ...

    @property
    def term(self) -> int: ...

    @property
    def leader(self) -> str | None:
        """The leader's Raft address, as far as this server knows."""
        ...

    @property
    def applied_index(self) -> int: ...

    #: Why this store cannot go on (None while it can); ``failed`` is set with it.
    fatal: str | None
    failed: asyncio.Event

    async def apply(self, command: Command) -> Any:
        """Commit ``command`` and return the state machine's result.

        Raises the state machine's :class:`~core.store.state.StoreError` for a refused
        command and :class:`ReplicationError` when it could not be committed."""
        ...

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Unsubscribe:
        """Call ``handler`` for each event of type ``kind`` (from the state machine, or
        :class:`~core.store.events.LeadershipChanged` from the store), on the loop."""
        ...

    async def close(self) -> None: ...
