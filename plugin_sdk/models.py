"""The values plugin authors see: plain dataclasses, no protobuf."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

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


@dataclass
class Execution:
    """A finished execution, as processors receive and return it (Dkron's Execution)."""

    job_name: str
    success: bool = False
    output: bytes = b""
    node_name: str = ""
    group: int = 0
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def key(self) -> str:
        """Dkron's execution id: ``<started_at UnixNano>-<node_name>``."""
        nanos = 0
        if self.started_at is not None:
            nanos = int(self.started_at.timestamp()) * 1_000_000_000 + (
                self.started_at.microsecond * 1000
            )
        return f"{nanos}-{self.node_name}"


@runtime_checkable
class Processor(Protocol):
    def process(self, execution: Execution, config: Mapping[str, str]) -> Execution: ...
