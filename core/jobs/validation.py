"""Dkron's ``Job.Validate`` (same checks, order and messages) and the store-side merge."""

from __future__ import annotations

import copy
import unicodedata
from datetime import UTC, datetime

from core.jobs.model import JOB_FIELDS, MISFIRE_SKIP, Job
from plugin_sdk.gocompat.goformats import parse_go_duration, parse_mem_limit

__all__ = [
    "MAX_NAME_LENGTH",
    "JobValidationError",
    "merge_for_update",
    "stored_form",
    "validate_job",
]

_SLUG_EXTRA = frozenset("0123456789_-")
# The allowed values are the table's; an empty misfire_policy means the default.
_CONCURRENCY = frozenset(JOB_FIELDS["concurrency"].enum or ())
_MISFIRE_POLICIES = frozenset((*(JOB_FIELDS["misfire_policy"].enum or ()), ""))
# stored_form: these become UTC, and these empty ones null (as after Dkron's protobuf).
_TIMES = JOB_FIELDS.of_kind("time", "nullable_time")
_NULL_WHEN_EMPTY = JOB_FIELDS.of_kind("string_map", "string_list")


class JobValidationError(ValueError):
    """``str()`` is Dkron's message; the API answers ``Job validation failed: <msg>.``"""


def _illegal_name_char(name: str) -> str | None:
    # Go's [^\p{Ll}0-9_-]: Unicode lower-case letters, ASCII digits, '_' and '-'.
    for char in name:
        if char not in _SLUG_EXTRA and unicodedata.category(char) != "Ll":
            return char
    return None


def _duration_problem(value: str, *, positive: bool) -> str | None:
    try:
        nanos = parse_go_duration(value)
    except ValueError as err:
        return str(err)
    if positive and nanos <= 0:
        return "must be greater than 0"
    if nanos < 0:
        return "must not be negative"
    return None


MAX_NAME_LENGTH = 256


def validate_job(job: Job) -> None:
    """Raise ``JobValidationError`` for the first problem, checking in Dkron's order.

    Dkron's checks come first, then this project's extension fields. A missing parent is
    the store's business (404 ``specified parent job not found``), not checked here.
    """
    if job.name == "":
        raise JobValidationError("name cannot be empty")
    if len(job.name) > MAX_NAME_LENGTH:
        # Longer names cannot be fetched or deleted (a URL line has a limit) and break
        # listings; Dkron takes any length.
        raise JobValidationError(
            f"name is {len(job.name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
        )
    bad = _illegal_name_char(job.name)
    if bad is not None:
        raise JobValidationError(f"name contains illegal character '{bad}'")
    if job.parent_job == job.name:
        raise JobValidationError("the job can not have itself as parent")
    # A child's schedule may be empty; one it does have must still parse.
    if job.schedule != "" or job.parent_job == "":
        # Imported late so this package loads, and names are checked, without the scheduler.
        from core.cron import ScheduleError, parse_schedule

        try:
            # No timezone here: Dkron parses the bare spec, and a bad zone is check 6.
            parse_schedule(job.schedule, job_name=job.name)
        except ScheduleError as err:
            raise JobValidationError(f"can't parse job schedule: {err}") from None
    if job.concurrency not in _CONCURRENCY:
        raise JobValidationError('invalid concurrency policy value, use "allow" or "forbid"')
    if job.timezone != "":  # Go's LoadLocation("") is UTC
        from core.cron import ScheduleError, validate_timezone

        try:
            validate_timezone(job.timezone)
        except ScheduleError as err:
            raise JobValidationError(str(err)) from None
    if job.executor == "shell":
        config = job.executor_config or {}
        if config.get("timeout", ""):
            try:
                parse_go_duration(config["timeout"])
            except ValueError:
                raise JobValidationError("Error parsing job timeout value") from None
        if config.get("mem_limit", ""):
            try:
                parse_mem_limit(config["mem_limit"])
            except ValueError as err:
                raise JobValidationError(f"Error parsing job memory limit value: {err}") from None
    _validate_extensions(job)


def _validate_extensions(job: Job) -> None:
    if job.timeout:
        problem = _duration_problem(job.timeout, positive=True)
        if problem:
            raise JobValidationError(f"invalid timeout {job.timeout!r}: {problem}")
    if job.misfire_policy not in _MISFIRE_POLICIES:
        raise JobValidationError(
            f'invalid misfire_policy value {job.misfire_policy!r}, use "skip" or "run_once"'
        )
    if job.misfire_grace:
        problem = _duration_problem(job.misfire_grace, positive=False)
        if problem:
            raise JobValidationError(f"invalid misfire_grace {job.misfire_grace!r}: {problem}")
    backoff = job.retry_backoff
    if backoff is not None:
        if not backoff.delay:
            raise JobValidationError("invalid retry_backoff: delay is required")
        for name, value in (("delay", backoff.delay), ("max", backoff.max)):
            if value:
                problem = _duration_problem(value, positive=False)
                if problem:
                    raise JobValidationError(f"invalid retry_backoff.{name} {value!r}: {problem}")
        if backoff.max and parse_go_duration(backoff.max) < parse_go_duration(backoff.delay):
            raise JobValidationError("invalid retry_backoff: max is shorter than delay")


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def stored_form(job: Job) -> Job:
    """The job as Dkron's store hands it back (after its protobuf round trip).

    ``id`` becomes the name; times become UTC; empty maps and lists (``tags``,
    ``metadata``, ``executor_config``, ``dependent_jobs``) become ``null``; ``processors``
    is always a dict. The argument is not modified.
    """
    stored = copy.deepcopy(job)
    stored.id = None
    for name in _TIMES:
        setattr(stored, name, _utc(getattr(stored, name)))
    for name in _NULL_WHEN_EMPTY:
        setattr(stored, name, getattr(stored, name) or None)
    stored.processors = stored.processors or {}
    stored.misfire_policy = stored.misfire_policy or MISFIRE_SKIP
    return stored


def _later(stored: datetime | None, new: datetime | None) -> datetime | None:
    # ntime.NullableTime.After: a set time is after an unset one.
    if stored is not None and (new is None or stored > new):
        return stored
    return new


def merge_for_update(stored: Job | None, new: Job, *, keep_dependent_jobs: bool = True) -> Job:
    """Dkron's ``Store.SetJob`` merge of an incoming job over the stored one.

    Keeps the larger counters, the later ``last_success``/``last_error``, a non-empty stored
    ``status`` and (unless ``keep_dependent_jobs`` is false) a non-empty stored
    ``dependent_jobs``. ``next`` is left as in ``new`` for the caller to settle. Returns
    ``stored_form`` of the result; neither argument is modified.
    """
    merged = copy.deepcopy(new)
    if stored is not None:
        merged.last_error = _later(stored.last_error, merged.last_error)
        merged.last_success = _later(stored.last_success, merged.last_success)
        merged.success_count = max(stored.success_count, merged.success_count)
        merged.error_count = max(stored.error_count, merged.error_count)
        if keep_dependent_jobs and stored.dependent_jobs:
            merged.dependent_jobs = list(stored.dependent_jobs)
        if stored.status:
            merged.status = stored.status
    return stored_form(merged)
