"""The values plugin authors see: plain dataclasses, no protobuf."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from plugin_sdk.gocompat.gotime import unix_nano

__all__ = [
    "ExecuteRequest",
    "ExecuteResponse",
    "Execution",
    "Executor",
    "Processor",
    "StatusHelper",
]


@dataclass(frozen=True)
class ExecuteRequest:
    """One execution: the job's name and its ``executor_config``."""

    job_name: str
    config: Mapping[str, str] = field(default_factory=dict)
    # Set when the host gives up on the execution (deadline, cancellation) or the
    # call otherwise ends; executors running external work should stop it then.
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass
class ExecuteResponse:
    """The result. A non-empty ``error`` marks the execution failed."""

    output: bytes = b""
    error: str = ""


class StatusHelper(Protocol):
    """Streams output to the host while the execution runs."""

    def update(self, chunk: bytes | str, is_error: bool = False) -> int:
        """Send one chunk (not the accumulated output); ``is_error`` marks stderr."""
        ...


@runtime_checkable
class Executor(Protocol):
    def execute(self, request: ExecuteRequest, status: StatusHelper) -> ExecuteResponse: ...


@dataclass(slots=True)
class Execution:
    """One run of a job on one node (one attempt): Dkron's Execution.

    The one Execution class: processors receive and return it, and the host stores and
    serves it (``core.jobs`` uses this class). ``output`` is bytes. ``scheduled_at``,
    ``run_id`` and ``processor_errors`` are dkron-py extensions, which processors are not
    sent.
    """

    job_name: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    success: bool = False
    output: bytes = b""
    node_name: str = ""
    group: int = 0
    attempt: int = 0
    scheduled_at: datetime | None = None
    run_id: str = ""
    processor_errors: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """Dkron's execution key ``<started_at UnixNano>-<node_name>`` ("" before it starts)."""
        if self.started_at is None:
            return ""
        return f"{unix_nano(self.started_at)}-{self.node_name}"

    @property
    def key(self) -> str:
        """Dkron's name (``Execution.Key()``) for :attr:`id`."""
        return self.id

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.finished_at is None


@runtime_checkable
class Processor(Protocol):
    def process(self, execution: Execution, config: Mapping[str, str]) -> Execution: ...
