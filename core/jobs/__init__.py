"""Dkron's Job and Execution: the model and its field tables (``model``, ``schema``), its
JSON as Dkron v4 serves it (``codec``), and validation."""

from core.jobs.codec import (
    ZERO_TIME,
    GoTimeError,
    JobDecodeError,
    execution_from_json,
    execution_to_json,
    format_go_time,
    go_json_dumps,
    job_from_json,
    job_to_json,
    jobs_from_json,
    parse_go_time,
)
from core.jobs.model import (
    EXECUTION_FIELDS,
    JOB_FIELDS,
    RETRY_BACKOFF_FIELDS,
    Execution,
    Job,
    RetryBackoff,
)
from core.jobs.validation import JobValidationError, merge_for_update, stored_form, validate_job

__all__ = [
    "EXECUTION_FIELDS",
    "JOB_FIELDS",
    "RETRY_BACKOFF_FIELDS",
    "ZERO_TIME",
    "Execution",
    "GoTimeError",
    "Job",
    "JobDecodeError",
    "JobValidationError",
    "RetryBackoff",
    "execution_from_json",
    "execution_to_json",
    "format_go_time",
    "go_json_dumps",
    "job_from_json",
    "job_to_json",
    "jobs_from_json",
    "merge_for_update",
    "parse_go_time",
    "stored_form",
    "validate_job",
]
