"""What the store tells its subscribers: typed, frozen events on one small bus.

The state machine publishes job and execution events as it applies the log (on every
server, in log order); a store publishes its leadership changes. Handlers run on the
event loop's thread, inside the apply: they must only take note and schedule work,
never block or apply commands themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from core.jobs.model import Execution, Job

__all__ = [
    "EventBus",
    "ExecutionFinished",
    "ExecutionStarted",
    "JobChanged",
    "JobDeleted",
    "LeadershipChanged",
    "StoreEvent",
    "Unsubscribe",
]


@dataclass(frozen=True, slots=True)
class JobChanged:
    """A job was stored (created, replaced or merged); ``job`` is the stored record."""

    job: Job


@dataclass(frozen=True, slots=True)
class JobDeleted:
    name: str


@dataclass(frozen=True, slots=True)
class ExecutionStarted:
    execution: Execution


@dataclass(frozen=True, slots=True)
class ExecutionFinished:
    """A final result was recorded; ``job`` is the job's record with its counters."""

    execution: Execution
    job: Job


@dataclass(frozen=True, slots=True)
class LeadershipChanged:
    """This server became (``leader``) or stopped being the Raft leader, at ``term``.
    Leading again at a newer term, unnoticed in between, is a new ``leader=True``."""

    leader: bool
    term: int


StoreEvent = JobChanged | JobDeleted | ExecutionStarted | ExecutionFinished | LeadershipChanged
Unsubscribe = Callable[[], None]

E = TypeVar("E", JobChanged, JobDeleted, ExecutionStarted, ExecutionFinished, LeadershipChanged)


class EventBus:
    """Handlers by event type, called in subscription order."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Callable[[object], None]]] = {}

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Unsubscribe:
        handlers = self._handlers.setdefault(kind, [])
        entry: Callable[[object], None] = handler  # type: ignore[assignment]
        handlers.append(entry)

        def unsubscribe() -> None:
            if entry in handlers:
                handlers.remove(entry)

        return unsubscribe

    def wanted(self, kind: type) -> bool:
        """Whether anyone listens for ``kind`` (so building the event can be skipped)."""
        return bool(self._handlers.get(kind))

    def publish(self, event: StoreEvent) -> None:
        for handler in list(self._handlers.get(type(event), ())):
            handler(event)
