"""Job and Execution JSON: Dkron's field order, Go's serialisation and Go's decode errors."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.jobs import (
    ZERO_TIME,
    Execution,
    GoTimeError,
    Job,
    JobDecodeError,
    RetryBackoff,
    execution_from_json,
    execution_to_json,
    format_go_time,
    go_json_dumps,
    job_from_json,
    job_to_json,
    jobs_from_json,
    parse_go_time,
    stored_form,
)

# -- encoding -------------------------------------------------------------------------------

FULL_JOB = Job(
    name="backup",
    displayname="Nightly backup",
    timezone="Europe/Berlin",
    schedule="0 30 2 * * *",
    owner="ops",
    owner_email="ops@example.com",
    success_count=12,
    error_count=3,
    last_success=datetime(2025, 12, 19, 2, 30, 1, 250000, tzinfo=UTC),
    last_error=datetime(2025, 12, 18, 2, 30, 0, tzinfo=UTC),
    tags={"role": "db:1", "dc": "eu"},
    metadata={"team": "infra"},
    retries=2,
    dependent_jobs=["report"],
    processors={"log": {"forward": "true"}, "files": {"log_dir": "/var/log/dkron"}},
    concurrency="forbid",
    executor="shell",
    executor_config={"timeout": "1h", "command": "/usr/local/bin/backup.sh"},
    status="success",
    next=datetime(2025, 12, 20, 1, 30, tzinfo=UTC),
    expires_at=datetime(2026, 1, 1, tzinfo=UTC),
)

# Written out by hand from Dkron's Job struct order; map keys sorted as Go sorts them.
FULL_JOB_JSON = (
    '{"id":"backup","name":"backup","displayname":"Nightly backup","timezone":"Europe/Berlin",'
    '"schedule":"0 30 2 * * *","owner":"ops","owner_email":"ops@example.com",'
    '"success_count":12,"error_count":3,"last_success":"2025-12-19T02:30:01.25Z",'
    '"last_error":"2025-12-18T02:30:00Z","disabled":false,'
    '"tags":{"dc":"eu","role":"db:1"},"metadata":{"team":"infra"},"retries":2,'
    '"dependent_jobs":["report"],"parent_job":"",'
    '"processors":{"files":{"log_dir":"/var/log/dkron"},"log":{"forward":"true"}},'
    '"concurrency":"forbid","executor":"shell",'
    '"executor_config":{"command":"/usr/local/bin/backup.sh","timeout":"1h"},'
    '"status":"success","next":"2025-12-20T01:30:00Z","ephemeral":false,'
    '"starts_at":null,"expires_at":"2026-01-01T00:00:00Z"}'
)


def test_full_job_serialises_in_dkron_field_order() -> None:
    assert go_json_dumps(job_to_json(FULL_JOB)) == FULL_JOB_JSON.encode()


def test_pretty_output_is_go_indented_json() -> None:
    pretty = go_json_dumps({"a": [1, {}], "b": [], "c": {"d": "<x>"}}, pretty=True)
    assert pretty == (
        b'{\n    "a": [\n        1,\n        {}\n    ],\n    "b": [],\n'
        b'    "c": {\n        "d": "\\u003cx\\u003e"\n    }\n}'
    )


def test_go_escaping_of_html_and_line_separators_only_inside_strings() -> None:
    text = go_json_dumps({"k": "<a href='x'>&\u2028\u2029é\x01\x7f\t"})
    assert text == (
        b'{"k":"\\u003ca href=\'x\'\\u003e\\u0026\\u2028\\u2029\xc3\xa9\\u0001\x7f\\t"}'
    )


MINIMAL_BODY = (
    b'{"name":"job1","schedule":"@every 10s","executor":"shell",'
    b'"executor_config":{"command":"echo hi"}}'
)


def test_create_echo_shows_the_request_as_parsed() -> None:
    # Dkron's 201 body: id as sent (""), preset concurrency, null processors, zero next.
    job = job_from_json(MINIMAL_BODY)
    assert go_json_dumps(job_to_json(job)) == (
        b'{"id":"","name":"job1","displayname":"","timezone":"","schedule":"@every 10s",'
        b'"owner":"","owner_email":"","success_count":0,"error_count":0,"last_success":null,'
        b'"last_error":null,"disabled":false,"tags":null,"metadata":null,"retries":0,'
        b'"dependent_jobs":null,"parent_job":"","processors":null,"concurrency":"allow",'
        b'"executor":"shell","executor_config":{"command":"echo hi"},"status":"",'
        b'"next":"0001-01-01T00:00:00Z","ephemeral":false,"starts_at":null,"expires_at":null}'
    )


def test_stored_form_matches_what_dkron_returns_after_storing() -> None:
    job = job_from_json(
        b'{"name":"job1","id":"whatever","tags":{},"metadata":{},"dependent_jobs":[],'
        b'"executor_config":{},"processors":{"log":{}},'
        b'"last_success":"2025-12-19T09:09:00.5+01:00"}'
    )
    as_sent = job_to_json(job)
    assert as_sent["id"] == "whatever"
    assert as_sent["tags"] == {} and as_sent["dependent_jobs"] == []
    assert as_sent["last_success"] == "2025-12-19T09:09:00.5+01:00"
    stored = job_to_json(stored_form(job))
    assert stored["id"] == "job1"
    assert stored["tags"] is None
    assert stored["metadata"] is None
    assert stored["dependent_jobs"] is None
    assert stored["executor_config"] is None
    assert stored["processors"] == {"log": {}}
    assert stored["last_success"] == "2025-12-19T08:09:00.5Z"
    # An omitted processors map is stored as an empty one and shown as {}.
    assert job_to_json(stored_form(job_from_json(MINIMAL_BODY)))["processors"] == {}


def test_extension_fields_follow_dkron_fields_and_are_omitted_at_defaults() -> None:
    plain = job_to_json(Job(name="a"))
    assert list(plain)[-1] == "expires_at"
    extended = job_to_json(
        Job(
            name="a",
            retry_backoff=RetryBackoff(delay="5s", exponential=True, max="1m"),
            timeout="30s",
            misfire_policy="run_once",
            misfire_grace="2h",
            retry_any_node=True,
        )
    )
    assert list(extended)[-6:] == [
        "expires_at",
        "retry_backoff",
        "timeout",
        "misfire_policy",
        "misfire_grace",
        "retry_any_node",
    ]
    assert extended["retry_backoff"] == {"delay": "5s", "exponential": True, "max": "1m"}
    assert job_to_json(Job(name="a", retry_backoff=RetryBackoff(delay="1s")))["retry_backoff"] == {
        "delay": "1s",
        "exponential": False,
    }
    decoded = job_from_json(go_json_dumps(extended))
    assert decoded.retry_backoff == RetryBackoff(delay="5s", exponential=True, max="1m")
    assert (decoded.timeout, decoded.misfire_policy, decoded.misfire_grace) == (
        "30s",
        "run_once",
        "2h",
    )
    assert decoded.retry_any_node is True
    assert job_from_json(b'{"misfire_policy":""}').misfire_policy == "skip"


def test_model_helpers_for_extension_durations() -> None:
    job = Job(name="a", timeout="1m30s", retry_backoff=RetryBackoff(delay="2s", max="1m"))
    assert job.timeout_ns() == 90_000_000_000
    assert job.retry_backoff is not None
    assert job.retry_backoff.delay_ns() == 2_000_000_000
    assert job.retry_backoff.max_ns() == 60_000_000_000
    assert Job(name="a").timeout_ns() is None
    assert Job(name="a").misfire_grace_ns() == 3600 * 10**9
    assert Job(name="a", misfire_grace="0s").misfire_grace_ns() is None
    assert Job(name="a", misfire_grace="10m").misfire_grace_ns() == 600 * 10**9


# -- Go time text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (None, "0001-01-01T00:00:00Z"),
        (datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "2025-01-02T03:04:05Z"),
        (datetime(2025, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), "2025-01-02T03:04:05.12Z"),
        (datetime(2025, 1, 2, 3, 4, 5, 1, tzinfo=UTC), "2025-01-02T03:04:05.000001Z"),
        (
            datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2025-01-02T03:04:05+05:30",
        ),
        (datetime(2025, 1, 2, tzinfo=timezone(timedelta(hours=-8))), "2025-01-02T00:00:00-08:00"),
        (datetime(2025, 1, 2, tzinfo=timezone(timedelta(0))), "2025-01-02T00:00:00Z"),
        # Go drops an offset's seconds, truncating toward zero.
        (
            datetime(1890, 1, 1, tzinfo=timezone(timedelta(seconds=3208))),
            "1890-01-01T00:00:00+00:53",
        ),
        (
            datetime(1890, 1, 1, tzinfo=timezone(timedelta(seconds=-30))),
            "1890-01-01T00:00:00+00:00",
        ),
    ],
)
def test_format_go_time(moment: datetime | None, text: str) -> None:
    assert format_go_time(moment) == text


def test_format_go_time_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_go_time(datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-12-19T09:09:00Z", datetime(2025, 12, 19, 9, 9, tzinfo=UTC)),
        ("2025-12-19T09:09:00.5+01:00", datetime(2025, 12, 19, 8, 9, 0, 500000, tzinfo=UTC)),
        ("2025-12-19T09:09:00,25Z", datetime(2025, 12, 19, 9, 9, 0, 250000, tzinfo=UTC)),
        ("2025-12-19T09:09:00.1234567891Z", datetime(2025, 12, 19, 9, 9, 0, 123456, tzinfo=UTC)),
        ("2025-12-19T9:09:00Z", datetime(2025, 12, 19, 9, 9, tzinfo=UTC)),
        ("2024-02-29T00:00:00-00:30", datetime(2024, 2, 29, 0, 30, tzinfo=UTC)),
    ],
)
def test_parse_go_time_accepts_what_go_accepts(text: str, expected: datetime) -> None:
    parsed = parse_go_time(text)
    assert parsed == expected
    assert parsed.utcoffset() is not None


def test_parse_go_time_keeps_the_offset() -> None:
    parsed = parse_go_time("2025-12-19T09:09:00+01:00")
    assert parsed.utcoffset() == timedelta(hours=1)
    assert format_go_time(parsed) == "2025-12-19T09:09:00+01:00"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'parsing time "" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "2006"'),
        (
            "2025-12-19",
            'parsing time "2025-12-19" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "T"',
        ),
        (
            "2025-12-19 09:09:00Z",
            'parsing time "2025-12-19 09:09:00Z" as "2006-01-02T15:04:05Z07:00": '
            'cannot parse " 09:09:00Z" as "T"',
        ),
        (
            "2025-1-19T09:09:00Z",
            'parsing time "2025-1-19T09:09:00Z" as "2006-01-02T15:04:05Z07:00": '
            'cannot parse "1-19T09:09:00Z" as "01"',
        ),
        (
            "2025-12-19T09:09:00+0100",
            'parsing time "2025-12-19T09:09:00+0100" as "2006-01-02T15:04:05Z07:00": '
            'cannot parse "+0100" as "Z07:00"',
        ),
        ("2025-00-19T09:09:00Z", 'parsing time "2025-00-19T09:09:00Z": month out of range'),
        ("2025-12-19T24:09:00Z", 'parsing time "2025-12-19T24:09:00Z": hour out of range'),
        ("2025-12-19T09:60:00Z", 'parsing time "2025-12-19T09:60:00Z": minute out of range'),
        ("2025-12-19T09:09:60Z", 'parsing time "2025-12-19T09:09:60Z": second out of range'),
        ("2025-04-31T00:00:00Z", 'parsing time "2025-04-31T00:00:00Z": day out of range'),
        (
            "2025-12-19T09:09:00+25:00",
            'parsing time "2025-12-19T09:09:00+25:00": time zone offset hour out of range',
        ),
        ("2025-12-19T09:09:00Z ", 'parsing time "2025-12-19T09:09:00Z ": extra text: " "'),
        (
            "2025-12-19T09:09:00Zé",
            'parsing time "2025-12-19T09:09:00Z\\xc3\\xa9": extra text: "\\xc3\\xa9"',
        ),
    ],
)
def test_parse_go_time_errors_are_gos(text: str, message: str) -> None:
    with pytest.raises(GoTimeError) as caught:
        parse_go_time(text)
    assert str(caught.value) == message


def test_years_python_cannot_hold_are_rejected_clearly() -> None:
    with pytest.raises(GoTimeError, match="year outside of range"):
        parse_go_time("0000-01-01T00:00:00Z")
    with pytest.raises(GoTimeError, match="year outside of range"):
        parse_go_time("0001-01-01T00:00:00+01:00")


# -- decoding: Go's errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "EOF"),
        (b" \n\t", "EOF"),
        (b"{", "unexpected EOF"),
        (b'{"name":"x"', "unexpected EOF"),
        (b'{"name":"x', "unexpected EOF"),
        (b'{"retries":1', "unexpected EOF"),
        (b'{"name":"x",}', "invalid character '}' looking for beginning of object key string"),
        (b"{name:1}", "invalid character 'n' looking for beginning of object key string"),
        (b'{"name" "x"}', "invalid character '\"' after object key"),
        (b'{"name":"x" "y"}', "invalid character '\"' after object key:value pair"),
        (b'{"tags":["a" "b"]}', "invalid character '\"' after array element"),
        (b'{"tags":[1,]}', "invalid character ']' looking for beginning of value"),
        (b"\xef\xbb\xbf{}", "invalid character '\u00ef' looking for beginning of value"),
        (b"\x80", "invalid character '\\u0080' looking for beginning of value"),
        (b"'x'", "invalid character '\\'' looking for beginning of value"),
        (b'{"a":tru}', "invalid character '}' in literal true (expecting 'e')"),
        (b'{"a":nul}', "invalid character '}' in literal null (expecting 'l')"),
        (b'{"a":fals}', "invalid character '}' in literal false (expecting 'e')"),
        (b'{"a":-x}', "invalid character 'x' in numeric literal"),
        (b'{"a":01}', "invalid character '1' after object key:value pair"),
        (b'{"a":1.}', "invalid character '}' after decimal point in numeric literal"),
        (b'{"a":1e+}', "invalid character '}' in exponent of numeric literal"),
        (b'{"a":"\\x"}', "invalid character 'x' in string escape code"),
        (b'{"a":"\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"),
        (b'{"a":"\x01"}', "invalid character '\\x01' in string literal"),
        (b'{"a":"\n"}', "invalid character '\\n' in string literal"),
        (b"[" * 10001, "invalid character '[' exceeded max depth"),
        (b"[]", "json: cannot unmarshal array into Go value of type dkron.Job"),
        (b'"job"', "json: cannot unmarshal string into Go value of type dkron.Job"),
        (b"12", "json: cannot unmarshal number into Go value of type dkron.Job"),
        (
            b'{"executor_config":{"command":1}}',
            "json: cannot unmarshal number into Go struct field Job.executor_config of type string",
        ),
        (
            b'{"executor_config":"echo"}',
            "json: cannot unmarshal string into Go struct field Job.executor_config "
            "of type plugin.ExecutorPluginConfig",
        ),
        (
            b'{"tags":{"role":true}}',
            "json: cannot unmarshal bool into Go struct field Job.tags of type string",
        ),
        (
            b'{"metadata":[]}',
            "json: cannot unmarshal array into Go struct field Job.metadata "
            "of type map[string]string",
        ),
        (
            b'{"processors":{"log":{"forward":true}}}',
            "json: cannot unmarshal bool into Go struct field Job.processors of type string",
        ),
        (
            b'{"processors":{"log":"yes"}}',
            "json: cannot unmarshal string into Go struct field Job.processors "
            "of type plugin.Config",
        ),
        (
            b'{"processors":[]}',
            "json: cannot unmarshal array into Go struct field Job.processors "
            "of type map[string]plugin.Config",
        ),
        (
            b'{"retries":-1}',
            "json: cannot unmarshal number -1 into Go struct field Job.retries of type uint",
        ),
        (
            b'{"retries":1.5}',
            "json: cannot unmarshal number 1.5 into Go struct field Job.retries of type uint",
        ),
        (
            b'{"retries":"3"}',
            "json: cannot unmarshal string into Go struct field Job.retries of type uint",
        ),
        (
            b'{"success_count":1e3}',
            "json: cannot unmarshal number 1e3 into Go struct field Job.success_count of type int",
        ),
        (
            b'{"error_count":9223372036854775808}',
            "json: cannot unmarshal number 9223372036854775808 into Go struct field "
            "Job.error_count of type int",
        ),
        (
            b'{"disabled":"true"}',
            "json: cannot unmarshal string into Go struct field Job.disabled of type bool",
        ),
        (
            b'{"name":{"first":"x"}}',
            "json: cannot unmarshal object into Go struct field Job.name of type string",
        ),
        (
            b'{"dependent_jobs":"child"}',
            "json: cannot unmarshal string into Go struct field Job.dependent_jobs "
            "of type []string",
        ),
        (
            b'{"dependent_jobs":[1]}',
            "json: cannot unmarshal number into Go struct field Job.dependent_jobs of type string",
        ),
        (
            b'{"retry_backoff":{"delay":5}}',
            "json: cannot unmarshal number into Go struct field RetryBackoff.retry_backoff.delay "
            "of type string",
        ),
        (
            b'{"retry_backoff":"5s"}',
            "json: cannot unmarshal string into Go struct field Job.retry_backoff "
            "of type dkron.RetryBackoff",
        ),
        (b'{"next":5}', "Time.UnmarshalJSON: input is not a JSON string"),
        (b'{"last_success":{}}', "Time.UnmarshalJSON: input is not a JSON string"),
        (
            b'{"last_error":"yesterday"}',
            'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": '
            'cannot parse "yesterday" as "2006"',
        ),
        (
            b'{"starts_at":"2025-12-19T09:09:00"}',
            'parsing time "2025-12-19T09:09:00" as "2006-01-02T15:04:05Z07:00": '
            'cannot parse "" as "Z07:00"',
        ),
        # Go's time decoding does not undo JSON escapes.
        (
            b'{"expires_at":"2025-12-19T09:09:00\\u005a"}',
            'parsing time "2025-12-19T09:09:00\\\\u005a" as "2006-01-02T15:04:05Z07:00": '
            'cannot parse "\\\\u005a" as "Z07:00"',
        ),
    ],
)
def test_decode_errors_are_gos(body: bytes, message: str) -> None:
    with pytest.raises(JobDecodeError) as caught:
        job_from_json(body)
    assert str(caught.value) == message


def test_first_type_mismatch_wins_but_only_after_the_whole_value_is_read() -> None:
    with pytest.raises(JobDecodeError) as caught:
        job_from_json(b'{"retries":-1,"tags":5}')
    assert str(caught.value).startswith("json: cannot unmarshal number -1")
    # A syntax error anywhere beats a type mismatch.
    with pytest.raises(JobDecodeError) as caught:
        job_from_json(b'{"retries":-1,"tags":5')
    assert str(caught.value) == "unexpected EOF"
    # A time error stops decoding at once, even after an earlier mismatch.
    with pytest.raises(JobDecodeError) as caught:
        job_from_json(b'{"retries":-1,"next":"soon"}')
    assert str(caught.value).startswith('parsing time "soon"')


def test_parsed_python_values_get_the_same_checks() -> None:
    assert job_from_json({"name": "a", "tags": {"k": "v"}}).tags == {"k": "v"}
    with pytest.raises(JobDecodeError) as caught:
        job_from_json({"name": "a", "retries": -1})
    assert str(caught.value) == (
        "json: cannot unmarshal number -1 into Go struct field Job.retries of type uint"
    )
    with pytest.raises(JobDecodeError, match="unsupported value of Python type"):
        job_from_json({"name": object()})


# -- decoding: Go's leniency ------------------------------------------------------------------


def test_unknown_fields_ignored_and_only_the_first_value_read() -> None:
    job = job_from_json(b'{"name":"a","colour":{"deep":[1,2,{"x":null}]}} {"name":"b"} junk')
    assert job.name == "a"


def test_keys_match_case_insensitively_like_go() -> None:
    job = job_from_json('{"NAME":"a","Schedule":"@daily","\u017fTATUS":"x","Executor_Config":{}}')
    assert (job.name, job.schedule, job.status, job.executor_config) == ("a", "@daily", "x", {})
    # An exact match is not needed, and the last duplicate wins.
    assert job_from_json(b'{"name":"a","Name":"b"}').name == "b"


def test_null_semantics_follow_go() -> None:
    job = job_from_json(
        b'{"name":null,"concurrency":null,"retries":null,"disabled":null,'
        b'"tags":null,"dependent_jobs":null,"metadata":{"a":null},"next":null}'
    )
    assert job.name == ""
    assert job.concurrency == "allow"  # null leaves Dkron's preset alone
    assert job.retries == 0 and job.disabled is False
    assert job.tags is None and job.dependent_jobs is None
    assert job.metadata == {"a": ""}
    assert job.next is None
    # A later null clears an earlier map; a repeated map merges into the first.
    assert job_from_json(b'{"tags":{"a":"1"},"tags":null}').tags is None
    assert job_from_json(b'{"tags":{"a":"1"},"tags":{"b":"2"}}').tags == {"a": "1", "b": "2"}
    assert job_from_json(b'{"processors":{"log":null}}').processors == {"log": {}}


def test_strings_are_unescaped_like_go() -> None:
    job = job_from_json(b'{"name":"\\ud83d\\ude00\\ud800x\\u00e9\\/\\t","owner":"a\xffb\xc3"}')
    assert job.name == "\U0001f600\ufffdx\u00e9/\t"
    assert job.owner == "a\ufffdb\ufffd"  # each invalid byte becomes U+FFFD


def test_counters_and_flags_decode() -> None:
    job = job_from_json(
        b'{"success_count":-5,"error_count":9223372036854775807,'
        b'"retries":18446744073709551615,"disabled":true,"ephemeral":true}'
    )
    assert job.success_count == -5
    assert job.error_count == 2**63 - 1
    assert job.retries == 2**64 - 1
    assert job.disabled and job.ephemeral


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"null", None),
        (b'"2025-12-19T09:09:00Z"', datetime(2025, 12, 19, 9, 9, tzinfo=UTC)),
        (b'"2025-12-19T09:09:00.25+01:00"', datetime(2025, 12, 19, 8, 9, 0, 250000, tzinfo=UTC)),
        (b'"2025-12-19T09:09"', datetime(2025, 12, 19, 9, 9, tzinfo=UTC)),  # datetime-local
        (b'"0001-01-01T00:00:00Z"', datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
@pytest.mark.parametrize("name", ["last_success", "last_error", "starts_at", "expires_at"])
def test_nullable_time_inputs(name: str, value: bytes, expected: datetime | None) -> None:
    body = b'{"%s":"2020-01-01T00:00:00Z","%s":%s}' % (name.encode(), name.encode(), value)
    job = job_from_json(body)
    assert getattr(job, name) == expected
    if expected is not None:
        assert job_to_json(stored_form(job))[name] == format_go_time(expected)
    else:
        assert job_to_json(job)[name] is None


def test_next_is_a_plain_go_time() -> None:
    assert job_from_json(b'{"next":"0001-01-01T00:00:00Z"}').next is None
    assert job_from_json(b'{"next":"2025-01-01T00:00:00Z","next":null}').next == datetime(
        2025, 1, 1, tzinfo=UTC
    )
    # datetime-local is a NullableTime extra; next does not take it.
    with pytest.raises(JobDecodeError, match='cannot parse "" as ":"'):
        job_from_json(b'{"next":"2025-12-19T09:09"}')


def test_restore_list_decoding() -> None:
    jobs = jobs_from_json(b'[{"name":"a"},{"name":"b","parent_job":"a","concurrency":"forbid"}]')
    assert [job.name for job in jobs] == ["a", "b"]
    assert jobs[0].concurrency == ""  # no API preset on restore
    assert jobs[1].concurrency == "forbid"
    assert jobs_from_json(b"null") == []
    # json.Unmarshal, not a Decoder: trailing data and truncation are errors.
    for body, message in [
        (b'[{"name":"a"}] x', "invalid character 'x' after top-level value"),
        (b"", "unexpected end of JSON input"),
        (b'[{"name":"a"}', "unexpected end of JSON input"),
        (b'{"name":"a"}', "json: cannot unmarshal object into Go value of type []*dkron.Job"),
        (b'["a"]', "json: cannot unmarshal string into Go value of type dkron.Job"),
        (b"[null]", "null job in list"),
    ]:
        with pytest.raises(JobDecodeError) as caught:
            jobs_from_json(body)
        assert str(caught.value) == message


# -- executions -----------------------------------------------------------------------------

STARTED = datetime(2025, 12, 19, 2, 30, 0, 123456, tzinfo=UTC)
FINISHED = datetime(2025, 12, 19, 2, 30, 1, 250000, tzinfo=UTC)
DONE = Execution(
    job_name="backup",
    started_at=STARTED,
    finished_at=FINISHED,
    success=True,
    output=b"line 1\nline 2 <ok> & done\n",
    node_name="node1",
    group=1766111400000000000,
    attempt=1,
)


def test_single_execution_json() -> None:
    assert go_json_dumps(execution_to_json(DONE, list_item=False)) == (
        b'{"id":"1766111400123456000-node1","job_name":"backup",'
        b'"started_at":"2025-12-19T02:30:00.123456Z","finished_at":"2025-12-19T02:30:01.25Z",'
        b'"success":true,"output":"line 1\\nline 2 \\u003cok\\u003e \\u0026 done\\n",'
        b'"node_name":"node1","group":1766111400000000000,"attempt":1}'
    )


def test_execution_omitempty_and_running_zero_time() -> None:
    running = Execution(job_name="backup", started_at=STARTED, node_name="node1")
    assert execution_to_json(running, list_item=False) == {
        "id": "1766111400123456000-node1",
        "job_name": "backup",
        "started_at": "2025-12-19T02:30:00.123456Z",
        "finished_at": ZERO_TIME,
        "success": False,
        "node_name": "node1",
    }
    assert running.running and not DONE.running
    assert execution_to_json(Execution(), list_item=False) == {
        "started_at": ZERO_TIME,
        "finished_at": ZERO_TIME,
        "success": False,
    }


def test_list_item_carries_output_truncated_after_attempt() -> None:
    item = execution_to_json(DONE, list_item=True)
    assert list(item)[-2:] == ["attempt", "output_truncated"]
    assert item["output_truncated"] is False
    assert "output_truncated" not in execution_to_json(DONE, list_item=False)


def test_output_size_limit_keeps_the_last_bytes() -> None:
    execution = replace(DONE, output=b"0123456789abcdefghij")
    item = execution_to_json(execution, output_size_limit=5, list_item=True)
    assert item["output"] == "fghij"
    assert item["output_truncated"] is True
    same = execution_to_json(execution, output_size_limit=20, list_item=True)
    assert same["output"] == "0123456789abcdefghij" and same["output_truncated"] is False
    for no_limit in (None, -1):
        whole = execution_to_json(execution, output_size_limit=no_limit, list_item=True)
        assert whole["output"] == "0123456789abcdefghij" and whole["output_truncated"] is False
    # Zero keeps nothing, and an empty output is omitted (Go's omitempty).
    empty = execution_to_json(execution, output_size_limit=0, list_item=True)
    assert "output" not in empty and empty["output_truncated"] is True
    # Cutting inside a UTF-8 sequence leaves a stray byte, shown as U+FFFD as Go does.
    split = execution_to_json(
        replace(DONE, output=b"caf\xc3\xa9"), output_size_limit=1, list_item=True
    )
    assert split["output"] == "\ufffd"


def test_invalid_utf8_output_is_replaced_byte_by_byte() -> None:
    execution = replace(DONE, output=b"ok \xff\xfe \xe2\x82 end")
    assert execution_to_json(execution, list_item=False)["output"] == (
        "ok \ufffd\ufffd \ufffd\ufffd end"
    )


def test_list_times_use_the_job_timezone() -> None:
    winter = execution_to_json(DONE, timezone="Europe/Berlin", list_item=True)
    assert winter["started_at"] == "2025-12-19T03:30:00.123456+01:00"
    assert winter["finished_at"] == "2025-12-19T03:30:01.25+01:00"
    summer_start = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    summer = execution_to_json(
        replace(DONE, started_at=summer_start, finished_at=summer_start + timedelta(seconds=2)),
        timezone="America/New_York",
        list_item=True,
    )
    assert summer["started_at"] == "2025-07-01T08:00:00-04:00"
    assert summer["finished_at"] == "2025-07-01T08:00:02-04:00"
    india = execution_to_json(DONE, timezone="Asia/Kolkata", list_item=True)
    assert india["started_at"] == "2025-12-19T08:00:00.123456+05:30"
    # The execution id keeps the UTC instant.
    assert india["id"] == "1766111400123456000-node1"
    # Without a job timezone, and outside lists, times stay UTC.
    assert execution_to_json(DONE, list_item=True)["started_at"] == "2025-12-19T02:30:00.123456Z"
    assert (
        execution_to_json(DONE, timezone="Europe/Berlin", list_item=False)["started_at"]
        == "2025-12-19T02:30:00.123456Z"
    )


def test_list_shows_go_zero_time_shifted_into_the_zone_like_dkron() -> None:
    running = Execution(job_name="backup", started_at=STARTED, node_name="node1")
    berlin = execution_to_json(running, timezone="Europe/Berlin", list_item=True)
    assert berlin["finished_at"] == "0001-01-01T00:53:28+00:53"  # local mean time
    new_york = execution_to_json(running, timezone="America/New_York", list_item=True)
    assert new_york["finished_at"] == "0000-12-31T19:03:58-04:56"
    utc_zone = execution_to_json(running, timezone="Etc/UTC", list_item=True)
    assert utc_zone["finished_at"] == ZERO_TIME


def test_execution_extension_fields() -> None:
    execution = replace(
        DONE,
        scheduled_at=datetime(2025, 12, 19, 2, 30, tzinfo=UTC),
        run_id="r-42",
        processor_errors=["files: permission denied"],
    )
    item = execution_to_json(execution, timezone="Europe/Berlin", list_item=True)
    assert list(item)[-4:] == ["output_truncated", "scheduled_at", "run_id", "processor_errors"]
    assert item["scheduled_at"] == "2025-12-19T03:30:00+01:00"
    assert item["processor_errors"] == ["files: permission denied"]
    back = execution_from_json(go_json_dumps(execution_to_json(execution, list_item=False)))
    assert back == execution


def test_execution_round_trip_and_decode_errors() -> None:
    back = execution_from_json(go_json_dumps(execution_to_json(DONE, list_item=True)))
    assert back == DONE
    running = Execution(job_name="j", started_at=STARTED, node_name="n", attempt=2)
    assert execution_from_json(json.dumps(execution_to_json(running, list_item=False))) == running
    with pytest.raises(JobDecodeError) as caught:
        execution_from_json(b'{"attempt":-1}')
    assert str(caught.value) == (
        "json: cannot unmarshal number -1 into Go struct field Execution.attempt of type uint"
    )


# -- the round-trip property ----------------------------------------------------------------

_text = st.text(max_size=12)
_offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: UTC if minutes == 0 else timezone(timedelta(minutes=minutes))
)
_times = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    _offsets,
)
_maps = st.none() | st.dictionaries(_text, _text, max_size=3)

_jobs = st.builds(
    Job,
    name=_text,
    displayname=_text,
    timezone=_text,
    schedule=_text,
    owner=_text,
    owner_email=_text,
    success_count=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    error_count=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    last_success=st.none() | _times,
    last_error=st.none() | _times,
    disabled=st.booleans(),
    tags=_maps,
    metadata=_maps,
    retries=st.integers(min_value=0, max_value=2**64 - 1),
    dependent_jobs=st.none() | st.lists(_text, max_size=3),
    parent_job=_text,
    processors=st.none() | st.dictionaries(_text, st.dictionaries(_text, _text, max_size=2)),
    concurrency=_text,
    executor=_text,
    executor_config=_maps,
    status=_text,
    next=st.none() | _times,
    ephemeral=st.booleans(),
    starts_at=st.none() | _times,
    expires_at=st.none() | _times,
    retry_backoff=st.none() | st.builds(RetryBackoff, _text, st.booleans(), _text),
    timeout=_text,
    misfire_policy=st.sampled_from(["skip", "run_once", "later"]),
    misfire_grace=_text,
    retry_any_node=st.booleans(),
)

_TIME_FIELDS = ("last_success", "last_error", "next", "starts_at", "expires_at")


@settings(max_examples=200, deadline=None)
@given(job=_jobs, pretty=st.booleans())
def test_json_round_trip_preserves_every_field(job: Job, pretty: bool) -> None:
    decoded = job_from_json(go_json_dumps(job_to_json(job), pretty=pretty))
    assert decoded.id == job.name
    assert replace(decoded, id=None) == job
    for name in _TIME_FIELDS:
        original, back = getattr(job, name), getattr(decoded, name)
        if original is not None:
            assert back.utcoffset() == original.utcoffset()
