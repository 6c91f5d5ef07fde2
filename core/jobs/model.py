"""Dkron's Job and Execution, as plain typed records.

Times are timezone-aware ``datetime`` values with microsecond precision (Go keeps
nanoseconds; digits below the microsecond are dropped on input). Go's zero time, which
Dkron uses for "none" in non-nullable time fields (``next``, ``finished_at`` while
running), is ``None`` here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from plugin_sdk.gocompat import parse_go_duration

__all__ = [
    "CONCURRENCY_ALLOW",
    "CONCURRENCY_FORBID",
    "DEFAULT_MISFIRE_GRACE_NS",
    "MISFIRE_RUN_ONCE",
    "MISFIRE_SKIP",
    "STATUS_FAILED",
    "STATUS_PARTIALLY_FAILED",
    "STATUS_SUCCESS",
    "STATUS_UNTRIGGERED",
    "Execution",
    "Job",
    "RetryBackoff",
    "unix_nano",
]

CONCURRENCY_ALLOW = "allow"
CONCURRENCY_FORBID = "forbid"

STATUS_UNTRIGGERED = ""
STATUS_SUCCESS = "success"
STATUS_FAILED = "failed"
STATUS_PARTIALLY_FAILED = "partially_failed"

MISFIRE_SKIP = "skip"
MISFIRE_RUN_ONCE = "run_once"
# A missed fire older than this is dropped under run_once unless misfire_grace says otherwise.
DEFAULT_MISFIRE_GRACE_NS = 3600 * 1_000_000_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unix_nano(moment: datetime) -> int:
    """Go's ``Time.UnixNano`` for an aware datetime (exact integer arithmetic)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


@dataclass(slots=True)
class RetryBackoff:
    """Extension: the wait between retries; absent means Dkron's own formula.

    ``delay`` and ``max`` are Go duration strings, checked by validation. With
    ``exponential`` the n-th retry waits ``delay * 2**(n-1)``, capped by ``max`` when set.
    """

    delay: str = ""
    exponential: bool = False
    max: str = ""

    def delay_ns(self) -> int:
        return parse_go_duration(self.delay) if self.delay else 0

    def max_ns(self) -> int | None:
        return parse_go_duration(self.max) if self.max else None


@dataclass(slots=True)
class Job:
    """Dkron's Job, field for field, followed by this project's additive extensions.

    ``id`` is output-only: ``None`` means "the name", which is what a stored job shows.
    A create body's ``id`` is kept as sent because Dkron echoes it in the 201 response.
    ``processors`` is ``None`` when the request omitted it (the echo shows ``null``);
    stored jobs always carry a dict.
    """

    name: str = ""
    id: str | None = None
    displayname: str = ""
    timezone: str = ""
    schedule: str = ""
    owner: str = ""
    owner_email: str = ""
    success_count: int = 0
    error_count: int = 0
    last_success: datetime | None = None
    last_error: datetime | None = None
    disabled: bool = False
    tags: dict[str, str] | None = None
    metadata: dict[str, str] | None = None
    retries: int = 0
    dependent_jobs: list[str] | None = None
    parent_job: str = ""
    processors: dict[str, dict[str, str]] | None = None
    concurrency: str = CONCURRENCY_ALLOW
    executor: str = ""
    executor_config: dict[str, str] | None = None
    status: str = STATUS_UNTRIGGERED
    next: datetime | None = None
    ephemeral: bool = False
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    # -- extensions (omitted from JSON while at their defaults) --
    retry_backoff: RetryBackoff | None = None
    timeout: str = ""
    misfire_policy: str = MISFIRE_SKIP
    misfire_grace: str = ""
    retry_any_node: bool = False

    @property
    def effective_id(self) -> str:
        return self.name if self.id is None else self.id

    def timeout_ns(self) -> int | None:
        """Per-execution timeout, or ``None`` for none."""
        return parse_go_duration(self.timeout) if self.timeout else None

    def misfire_grace_ns(self) -> int | None:
        """How late a missed fire may still run under ``run_once``; ``None`` = unbounded.

        Empty means the default of one hour; an explicit ``0s`` means no bound.
        """
        if not self.misfire_grace:
            return DEFAULT_MISFIRE_GRACE_NS
        grace = parse_go_duration(self.misfire_grace)
        return None if grace == 0 else grace


@dataclass(slots=True)
class Execution:
    """One run of a job on one node (one attempt).

    ``output`` is kept as bytes; JSON shows it as text with invalid UTF-8 replaced.
    ``scheduled_at``, ``run_id`` and ``processor_errors`` are extensions.
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
    def running(self) -> bool:
        return self.started_at is not None and self.finished_at is None
