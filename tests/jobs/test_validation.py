"""Job validation (Dkron's checks, order and messages), Go durations, and the SetJob merge."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from core.jobs import (
    Job,
    JobValidationError,
    RetryBackoff,
    job_from_json,
    merge_for_update,
    stored_form,
    validate_job,
)
from plugin_sdk.gocompat import format_go_duration, parse_go_duration, parse_mem_limit

LONG_UNICODE_NAME = "abcdefghijklmnopqrstuvwxyz0123456789-_ßñëäïüøüáéíóýćàèìòùâêîôûæšłç"


def make_job(**fields: Any) -> Job:
    """A job Dkron accepts, as its API tests build them, with ``fields`` overriding."""
    base: dict[str, Any] = {
        "name": "test_job",
        "schedule": "@every 2s",
        "executor": "shell",
        "executor_config": {"command": "echo hello"},
    }
    base.update(fields)
    return Job(**base)


def make_child(**fields: Any) -> Job:
    """A child job with no schedule: validation never needs the cron parser for it."""
    return make_job(**{"parent_job": "parent", "schedule": "", **fields})


def failure(job: Job) -> str:
    with pytest.raises(JobValidationError) as caught:
        validate_job(job)
    return str(caught.value)


# -- Dkron's API test cases ----------------------------------------------------------------


def test_valid_job_passes() -> None:
    validate_job(make_job())
    validate_job(make_job(concurrency="forbid", timezone="Europe/Berlin"))
    validate_job(make_job(concurrency=""))


def test_bad_name() -> None:
    assert failure(make_job(name="BAD JOB NAME!")) == "name contains illegal character 'B'"


def test_valid_unicode_lower_case_name() -> None:
    validate_job(make_child(name=LONG_UNICODE_NAME))
    validate_job(make_job(name=LONG_UNICODE_NAME))


def test_empty_name() -> None:
    assert failure(make_job(name="")) == "name cannot be empty"


def test_bad_schedule() -> None:
    message = failure(make_job(schedule="@at badtime"))
    assert message.startswith("can't parse job schedule: ")
    assert "badtime" in message


def test_bad_concurrency() -> None:
    expected = 'invalid concurrency policy value, use "allow" or "forbid"'
    assert failure(make_job(concurrency="badvalue")) == expected
    assert failure(make_child(concurrency="Allow")) == expected


def test_bad_timezone() -> None:
    assert failure(make_job(timezone="notatimezone")) == "unknown time zone notatimezone"


def test_bad_shell_executor_timeout() -> None:
    job = make_job(executor_config={"command": "echo", "timeout": "foreverandever"})
    assert failure(job) == "Error parsing job timeout value"
    assert failure(make_child(executor_config={"timeout": "5"})) == (
        "Error parsing job timeout value"
    )


def test_same_parent() -> None:
    assert failure(make_job(name="me", parent_job="me")) == "the job can not have itself as parent"


# -- the rest of Validate -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("Upper", "U"),
        ("with space", " "),
        ("dot.name", "."),
        ("slash/name", "/"),
        ("tab\tname", "\t"),
        ("emoji\U0001f600", "\U0001f600"),
        ("full\uff10width", "\uff10"),  # a digit, but not 0-9
        ("titlecase\u01c5", "\u01c5"),  # Lt, not Ll
        ("mod\u02b0", "\u02b0"),  # Lm, not Ll
        ("ok-then-\u00c9", "\u00c9"),
    ],
)
def test_slug_rule_reports_the_first_illegal_character(name: str, bad: str) -> None:
    assert failure(make_child(name=name)) == f"name contains illegal character '{bad}'"


def test_slug_rule_accepts_lower_case_letters_digits_dash_underscore() -> None:
    for name in ("a", "0", "-", "_", "job-1_b", "\u00df\u0101\u03b1\u0436\u00b5"):
        validate_job(make_child(name=name))


def test_child_without_schedule_skips_the_schedule_check() -> None:
    validate_job(make_child())


def test_child_with_a_bad_schedule_is_still_rejected() -> None:
    message = failure(make_job(parent_job="parent", schedule="not a schedule"))
    assert message.startswith("can't parse job schedule: ")


def test_empty_schedule_without_parent() -> None:
    assert failure(make_job(schedule="")) == "can't parse job schedule: empty spec string"


def test_five_field_cron_is_rejected() -> None:
    message = failure(make_job(schedule="* * * * *"))
    assert message.startswith("can't parse job schedule: expected exactly 6 fields, found 5")


def test_hash_schedule_is_accepted() -> None:
    validate_job(make_job(schedule="0 0 ~ * * *"))


def test_checks_run_in_dkrons_order() -> None:
    # name before everything
    assert failure(make_job(name="X", schedule="", concurrency="no")) == (
        "name contains illegal character 'X'"
    )
    # self-parent before schedule
    assert failure(make_job(name="a", parent_job="a", schedule="bad")) == (
        "the job can not have itself as parent"
    )
    # schedule before concurrency
    assert failure(make_job(schedule="bad", concurrency="no")).startswith("can't parse")
    # concurrency before timezone
    assert failure(make_child(concurrency="no", timezone="Nowhere/City")).startswith(
        "invalid concurrency"
    )
    # timezone before the shell checks
    assert (
        failure(make_job(timezone="Nowhere/City", executor_config={"timeout": "x"}))
        == "unknown time zone Nowhere/City"
    )
    # shell timeout before mem_limit, both before the extensions
    assert (
        failure(make_child(executor_config={"timeout": "x", "mem_limit": "x"}, timeout="bad"))
        == "Error parsing job timeout value"
    )
    assert failure(make_child(executor_config={"mem_limit": "x"}, timeout="bad")) == (
        "Error parsing job memory limit value: invalid memory limit format: x"
    )


@pytest.mark.parametrize(
    ("limit", "detail"),
    [
        ("0", "memory limit must be greater than 0"),
        ("-100MB", "invalid memory limit format: -100MB"),
        ("invalid", "invalid memory limit format: invalid"),
        ("1.2.3MB", "invalid memory limit format: 1.2.3MB"),
        ("5XB", "unsupported memory unit: XB (supported: B, KB, MB, GB, TB)"),
        ("0.0000001KB", "memory limit must be greater than 0"),
    ],
)
def test_bad_shell_mem_limit(limit: str, detail: str) -> None:
    job = make_child(executor_config={"command": "echo", "mem_limit": limit})
    assert failure(job) == f"Error parsing job memory limit value: {detail}"


@pytest.mark.parametrize("limit", ["", "1048576", "1024MB", "512mb", "1024KB", "2GB", "1.5g"])
def test_good_shell_mem_limit(limit: str) -> None:
    validate_job(make_child(executor_config={"command": "echo", "mem_limit": limit}))


def test_shell_checks_apply_only_to_the_shell_executor() -> None:
    config = {"timeout": "foreverandever", "mem_limit": "lots"}
    validate_job(make_child(executor="http", executor_config=config))
    validate_job(make_child(executor="", executor_config=None))
    validate_job(make_child(executor_config={"command": "echo", "timeout": ""}))
    validate_job(make_child(executor_config={"command": "echo", "timeout": "1h30m"}))


def test_missing_parent_is_not_a_validation_error() -> None:
    validate_job(make_child(parent_job="does-not-exist"))


def test_decoded_body_validates_end_to_end() -> None:
    body = (
        b'{"name":"job1","schedule":"@every 10s","executor":"shell",'
        b'"executor_config":{"command":"echo hi","timeout":"foreverandever"}}'
    )
    assert failure(job_from_json(body)) == "Error parsing job timeout value"


# -- extension fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timeout": "soon"}, "invalid timeout 'soon': time: invalid duration \"soon\""),
        ({"timeout": "10"}, "invalid timeout '10': time: missing unit in duration \"10\""),
        ({"timeout": "0s"}, "invalid timeout '0s': must be greater than 0"),
        ({"timeout": "-5s"}, "invalid timeout '-5s': must be greater than 0"),
        (
            {"misfire_policy": "catch_up"},
            'invalid misfire_policy value \'catch_up\', use "skip" or "run_once"',
        ),
        (
            {"misfire_grace": "1d"},
            'invalid misfire_grace \'1d\': time: unknown unit "d" in duration "1d"',
        ),
        ({"misfire_grace": "-1h"}, "invalid misfire_grace '-1h': must not be negative"),
        ({"retry_backoff": RetryBackoff()}, "invalid retry_backoff: delay is required"),
        (
            {"retry_backoff": RetryBackoff(delay="x")},
            "invalid retry_backoff.delay 'x': time: invalid duration \"x\"",
        ),
        (
            {"retry_backoff": RetryBackoff(delay="1s", max="-1s")},
            "invalid retry_backoff.max '-1s': must not be negative",
        ),
        (
            {"retry_backoff": RetryBackoff(delay="1m", max="10s", exponential=True)},
            "invalid retry_backoff: max is shorter than delay",
        ),
    ],
)
def test_bad_extension_fields(fields: dict[str, Any], message: str) -> None:
    assert failure(make_child(**fields)) == message


def test_good_extension_fields() -> None:
    validate_job(
        make_child(
            timeout="90s",
            misfire_policy="run_once",
            misfire_grace="0s",
            retry_backoff=RetryBackoff(delay="0s"),
            retry_any_node=True,
        )
    )
    validate_job(make_child(misfire_policy="", retry_backoff=RetryBackoff("1s", True, "1m")))


# -- Go durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("-0", 0),
        ("1h2m3.5s", 3_723_500_000_000),
        ("300ms", 300_000_000),
        ("2us", 2_000),
        ("2\u00b5s", 2_000),
        ("2\u03bcs", 2_000),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("+5m", 300_000_000_000),
        ("-1.5h", -5_400_000_000_000),
        ("1h1h", 7_200_000_000_000),
        ("9223372036854775807ns", 2**63 - 1),
        ("-9223372036854775808ns", -(2**63)),
    ],
)
def test_parse_go_duration(text: str, nanos: int) -> None:
    assert parse_go_duration(text) == nanos


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("-", 'time: invalid duration "-"'),
        ("s", 'time: invalid duration "s"'),
        (".s", 'time: invalid duration ".s"'),
        ("5", 'time: missing unit in duration "5"'),
        ("1h5", 'time: missing unit in duration "1h5"'),
        ("5 s", 'time: unknown unit " s" in duration "5 s"'),
        ("3d", 'time: unknown unit "d" in duration "3d"'),
        ("1\u00e9", 'time: unknown unit "\\xc3\\xa9" in duration "1\\xc3\\xa9"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
    ],
)
def test_parse_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_go_duration(text)
    assert str(caught.value) == message


def test_format_go_duration() -> None:
    assert format_go_duration(0) == "0s"
    assert format_go_duration(3_723_500_000_000) == "1h2m3.5s"
    assert format_go_duration(60_000_000_000) == "1m0s"
    assert format_go_duration(1_500) == "1.5\u00b5s"
    assert format_go_duration(-300_000_000) == "-300ms"
    assert format_go_duration(7) == "7ns"


def test_parse_mem_limit_units() -> None:
    assert parse_mem_limit("512") == 512
    assert parse_mem_limit("1k") == parse_mem_limit("1KB") == 1024
    assert parse_mem_limit("1.5M") == 1_572_864
    assert parse_mem_limit("100 MB") == 100 << 20
    assert parse_mem_limit("2tb") == 2 << 40


# -- merge_for_update (Store.SetJob) ---------------------------------------------------------

T1 = datetime(2025, 1, 1, tzinfo=UTC)
T2 = datetime(2025, 6, 1, tzinfo=UTC)


def test_merge_keeps_larger_counters_and_later_times() -> None:
    stored = Job(
        name="j", success_count=10, error_count=1, last_success=T2, last_error=T1, status=""
    )
    new = Job(name="j", success_count=3, error_count=7, last_success=T1, last_error=T2)
    merged = merge_for_update(stored, new)
    assert (merged.success_count, merged.error_count) == (10, 7)
    assert (merged.last_success, merged.last_error) == (T2, T2)


def test_merge_nullable_times() -> None:
    # A set time is "after" an unset one, in both directions.
    assert merge_for_update(Job(name="j", last_success=T1), Job(name="j")).last_success == T1
    assert merge_for_update(Job(name="j"), Job(name="j", last_error=T1)).last_error == T1
    assert merge_for_update(Job(name="j"), Job(name="j")).last_error is None


def test_merge_status_non_empty_stored_wins() -> None:
    assert merge_for_update(Job(name="j", status="failed"), Job(name="j")).status == "failed"
    assert (
        merge_for_update(Job(name="j", status="failed"), Job(name="j", status="success")).status
        == "failed"
    )
    assert merge_for_update(Job(name="j"), Job(name="j", status="success")).status == "success"


def test_merge_keeps_existing_dependent_jobs() -> None:
    stored = Job(name="p", dependent_jobs=["c1", "c2"])
    assert merge_for_update(stored, Job(name="p")).dependent_jobs == ["c1", "c2"]
    assert merge_for_update(stored, Job(name="p", dependent_jobs=["x"])).dependent_jobs == [
        "c1",
        "c2",
    ]
    assert merge_for_update(
        Job(name="p", dependent_jobs=[]), Job(name="p", dependent_jobs=["x"])
    ).dependent_jobs == ["x"]
    assert merge_for_update(
        stored, Job(name="p", dependent_jobs=["x"]), keep_dependent_jobs=False
    ).dependent_jobs == ["x"]
    # On first create a client-supplied list is stored as given.
    assert merge_for_update(None, Job(name="p", dependent_jobs=["x"])).dependent_jobs == ["x"]


def test_merge_takes_everything_else_from_the_new_job() -> None:
    stored = Job(
        name="j",
        schedule="@daily",
        disabled=True,
        executor_config={"command": "old"},
        next=T2,
        tags={"a": "b"},
    )
    new = Job(name="j", schedule="@hourly", executor_config={"command": "new"}, next=T1)
    merged = merge_for_update(stored, new)
    assert merged.schedule == "@hourly"
    assert merged.disabled is False
    assert merged.executor_config == {"command": "new"}
    assert merged.tags is None
    assert merged.next == T1  # next is the caller's business


def test_merge_returns_the_stored_form_without_touching_its_arguments() -> None:
    offset = timezone(timedelta(hours=2))
    stored = Job(name="j", dependent_jobs=["c"], last_error=T1)
    new = Job(name="j", id="", last_error=datetime(2025, 7, 1, 12, tzinfo=offset), tags={})
    before = (copy.deepcopy(stored), copy.deepcopy(new))
    merged = merge_for_update(stored, new)
    assert (stored, new) == before
    assert merged.id is None and merged.effective_id == "j"
    assert merged.last_error == datetime(2025, 7, 1, 10, tzinfo=UTC)
    assert merged.last_error is not None and merged.last_error.utcoffset() == timedelta(0)
    assert merged.tags is None and merged.processors == {}
    assert merged.dependent_jobs is not None
    merged.dependent_jobs.append("d")
    assert stored.dependent_jobs == ["c"]


def test_stored_form_normalises_misfire_policy() -> None:
    assert stored_form(Job(name="j", misfire_policy="")).misfire_policy == "skip"
