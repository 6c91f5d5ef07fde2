"""Dkron's Job and Execution, as plain typed records, and their JSON field tables.

Times are timezone-aware ``datetime`` values with microsecond precision (Go keeps
nanoseconds; digits below the microsecond are dropped on input). Go's zero time, which
Dkron uses for "none" in non-nullable time fields (``next``, ``finished_at`` while
running), is ``None`` here.

Each record's table (``JOB_FIELDS``, ``RETRY_BACKOFF_FIELDS``, ``EXECUTION_FIELDS``) is
its JSON form, field by field in output order: the codec, the OpenAPI document, the
store's normalisation, the list routes' sort keys and validation's allowed values are all
read from it. A new field is one attribute and one row here (and its test); the class
and its table are checked against each other by ``tests/jobs/test_schema.py``.
``Execution`` is the SDK's class (``plugin_sdk.models``), shared by host and plugins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.jobs.schema import (
    BOOL,
    INT,
    INT64,
    NULLABLE_TIME,
    OUTPUT,
    PROCESSORS,
    STRING,
    STRING_LIST,
    TIME,
    UINT,
    FieldSpec,
    Record,
    string_map,
    struct,
)
from plugin_sdk.gocompat.goformats import parse_go_duration
from plugin_sdk.gocompat.gotime import unix_nano
from plugin_sdk.models import Execution

__all__ = [
    "CONCURRENCY_ALLOW",
    "CONCURRENCY_FORBID",
    "DEFAULT_MISFIRE_GRACE_NS",
    "EXECUTION_FIELDS",
    "JOB_FIELDS",
    "MISFIRE_RUN_ONCE",
    "MISFIRE_SKIP",
    "RETRY_BACKOFF_FIELDS",
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


# -- JSON field tables ------------------------------------------------------------------------

RETRY_BACKOFF_FIELDS = Record(
    "RetryBackoff",
    RetryBackoff,
    [
        FieldSpec("delay", STRING),
        FieldSpec("exponential", BOOL),
        FieldSpec("max", STRING, omitempty=True),
    ],
)

_MAP = string_map("map[string]string")

# Dkron's fields are always written; the extensions after them only when set.
JOB_FIELDS = Record(
    "Job",
    Job,
    [
        FieldSpec("id", STRING, "Equal to name.", attr="effective_id", read_only=True),
        FieldSpec(
            "name",
            STRING,
            "Unique; lower-case letters, digits, '_' and '-'.",
            required=True,
            sortable=True,
        ),
        FieldSpec("displayname", STRING, sortable=True),
        FieldSpec("timezone", STRING, "IANA zone; empty = server local."),
        FieldSpec(
            "schedule",
            STRING,
            "Cron spec (6 fields with seconds), @every, @at, @manually, ...",
            sortable=True,
        ),
        FieldSpec("owner", STRING),
        FieldSpec("owner_email", STRING),
        FieldSpec("success_count", INT, read_only=True, sortable=True),
        FieldSpec("error_count", INT, read_only=True, sortable=True),
        FieldSpec("last_success", NULLABLE_TIME, sortable=True),
        FieldSpec("last_error", NULLABLE_TIME, sortable=True),
        FieldSpec("disabled", BOOL),
        FieldSpec("tags", _MAP, 'Target nodes, "key": "value[:count]".'),
        FieldSpec("metadata", _MAP),
        FieldSpec("retries", UINT, schema={"minimum": 0}),
        FieldSpec("dependent_jobs", STRING_LIST),
        FieldSpec("parent_job", STRING),
        FieldSpec("processors", PROCESSORS),
        FieldSpec("concurrency", STRING, enum=(CONCURRENCY_ALLOW, CONCURRENCY_FORBID, "")),
        FieldSpec("executor", STRING),
        FieldSpec("executor_config", string_map("plugin.ExecutorPluginConfig")),
        FieldSpec(
            "status",
            STRING,
            read_only=True,
            enum=(STATUS_UNTRIGGERED, STATUS_SUCCESS, STATUS_FAILED, STATUS_PARTIALLY_FAILED),
        ),
        FieldSpec("next", TIME, read_only=True, sortable=True),
        FieldSpec("ephemeral", BOOL),
        FieldSpec("starts_at", NULLABLE_TIME),
        FieldSpec("expires_at", NULLABLE_TIME),
        # -- extensions --
        FieldSpec(
            "retry_backoff",
            struct(RETRY_BACKOFF_FIELDS),
            "Extension: wait between retries.",
            omitempty=True,
        ),
        FieldSpec("timeout", STRING, "Extension: per-execution timeout.", omitempty=True),
        FieldSpec(
            "misfire_policy",
            STRING,
            omitempty=True,
            default=MISFIRE_SKIP,
            enum=(MISFIRE_SKIP, MISFIRE_RUN_ONCE),
        ),
        FieldSpec("misfire_grace", STRING, omitempty=True),
        FieldSpec("retry_any_node", BOOL, omitempty=True),
    ],
)

EXECUTION_FIELDS = Record(
    "Execution",
    Execution,
    [
        FieldSpec("id", STRING, "<started_at UnixNano>-<node_name>", omitempty=True, derived=True),
        FieldSpec("job_name", STRING, omitempty=True),
        FieldSpec("started_at", TIME, sortable=True),
        FieldSpec("finished_at", TIME, "0001-01-01T00:00:00Z while running.", sortable=True),
        FieldSpec("success", BOOL),
        FieldSpec("output", OUTPUT, omitempty=True),
        FieldSpec("node_name", STRING, omitempty=True),
        FieldSpec("group", INT64, omitempty=True),
        FieldSpec("attempt", UINT, omitempty=True, sortable=True),
        # Written by the executions list only (the encoder is given it).
        FieldSpec("output_truncated", BOOL, "Executions list only.", derived=True),
        FieldSpec("scheduled_at", NULLABLE_TIME, omitempty=True, schema={"type": "string"}),
        FieldSpec("run_id", STRING, omitempty=True),
        FieldSpec("processor_errors", STRING_LIST, omitempty=True, schema={"type": "array"}),
    ],
)
