"""The replicated state: commands, the state machine, its events, and the stores.

:class:`Store` is what the rest of the node uses; :class:`MemoryStore` is one without
Raft. The Raft store is imported from :mod:`core.store.raft` by name (importing it
installs pysyncobj's wire and journal guards).
"""

from core.store.base import DiskFullError, ReplicationError, Store
from core.store.events import (
    EventBus,
    ExecutionFinished,
    ExecutionStarted,
    JobChanged,
    JobDeleted,
    LeadershipChanged,
    StoreEvent,
)
from core.store.memory import MemoryStore
from core.store.state import (
    AlreadyFinished,
    JobQuery,
    NotFound,
    QueryError,
    StartResult,
    StoreError,
    StoreState,
)

__all__ = [
    "AlreadyFinished",
    "DiskFullError",
    "EventBus",
    "ExecutionFinished",
    "ExecutionStarted",
    "JobChanged",
    "JobDeleted",
    "JobQuery",
    "LeadershipChanged",
    "MemoryStore",
    "NotFound",
    "QueryError",
    "ReplicationError",
    "StartResult",
    "Store",
    "StoreError",
    "StoreEvent",
    "StoreState",
]
