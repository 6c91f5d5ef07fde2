"""The field tables in core.jobs.model against their classes, the codec and OpenAPI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime

import plugin_sdk
from core.api.openapi import openapi_document
from core.jobs import execution_to_json, job_to_json
from core.jobs.model import (
    EXECUTION_FIELDS,
    JOB_FIELDS,
    RETRY_BACKOFF_FIELDS,
    Execution,
    Job,
    RetryBackoff,
)
from core.jobs.schema import Record
from core.store.state import SORTABLE_EXECUTION_FIELDS, SORTABLE_JOB_FIELDS


def _attributes(record: Record) -> list[str]:
    return [spec.name for spec in record if not spec.derived]


def test_each_table_lists_every_field_of_its_class_once() -> None:
    for record, cls in (
        (JOB_FIELDS, Job),
        (RETRY_BACKOFF_FIELDS, RetryBackoff),
        (EXECUTION_FIELDS, Execution),
    ):
        assert record.cls is cls
        assert sorted(_attributes(record)) == sorted(f.name for f in dataclasses.fields(cls))


def test_derived_fields_are_properties_or_given_by_the_encoder() -> None:
    assert [spec.name for spec in JOB_FIELDS if spec.derived] == []
    assert [spec.name for spec in EXECUTION_FIELDS if spec.derived] == ["id", "output_truncated"]


def test_the_sdk_and_the_kernel_share_one_execution_class() -> None:
    assert plugin_sdk.Execution is Execution
    execution = Execution(job_name="a", node_name="n")
    assert execution.id == execution.key == ""
    execution.started_at = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert execution.id == execution.key == "1704164645000006000-n"


def test_sort_keys_are_dkrons_indexes() -> None:
    assert SORTABLE_JOB_FIELDS == (
        "name",
        "displayname",
        "schedule",
        "success_count",
        "error_count",
        "last_success",
        "last_error",
        "next",
    )
    assert SORTABLE_EXECUTION_FIELDS == ("started_at", "finished_at", "attempt")


def _full_job() -> Job:
    now = datetime(2024, 1, 2, tzinfo=UTC)
    return Job(
        name="a",
        last_success=now,
        tags={"k": "v"},
        retry_backoff=RetryBackoff("1s", max="5s"),
        timeout="1m",
        misfire_policy="run_once",
        misfire_grace="5m",
        retry_any_node=True,
    )


def test_openapi_schemas_follow_the_json_field_order() -> None:
    schemas = openapi_document("test")["components"]["schemas"]
    assert list(schemas["Job"]["properties"]) == list(job_to_json(_full_job()))
    assert schemas["Job"]["required"] == ["name"]
    backoff = schemas["Job"]["properties"]["retry_backoff"]["properties"]
    assert list(backoff) == ["delay", "exponential", "max"]
    execution = Execution(
        job_name="a",
        started_at=datetime(2024, 1, 2, tzinfo=UTC),
        output=b"x",
        node_name="n",
        group=1,
        attempt=1,
        scheduled_at=datetime(2024, 1, 2, tzinfo=UTC),
        run_id="r",
        processor_errors=["e"],
    )
    written = execution_to_json(execution, list_item=True)
    assert list(schemas["Execution"]["properties"]) == list(written)


def test_openapi_sort_enums_come_from_the_tables() -> None:
    paths = openapi_document("test")["paths"]
    jobs_sort = next(p for p in paths["/v1/jobs"]["get"]["parameters"] if p["name"] == "_sort")
    assert jobs_sort["schema"]["enum"] == ["id", *SORTABLE_JOB_FIELDS]
    listing = paths["/v1/jobs/{job}/executions"]["get"]["parameters"]
    executions_sort = next(p for p in listing if p["name"] == "_sort")
    assert executions_sort["schema"]["enum"] == ["id", *SORTABLE_EXECUTION_FIELDS]


def test_omitempty_fields_are_left_out_at_their_defaults() -> None:
    written = job_to_json(Job(name="a", misfire_policy="skip"))
    omitted = {spec.name for spec in JOB_FIELDS if spec.omitempty}
    assert omitted == {
        "retry_backoff",
        "timeout",
        "misfire_policy",
        "misfire_grace",
        "retry_any_node",
    }
    assert omitted.isdisjoint(written)
    assert list(written) == [spec.name for spec in JOB_FIELDS if not spec.omitempty]


def test_the_shared_execution_and_gocompat_load_without_the_kernel() -> None:
    # plugin_sdk sits below core: the class both use and the Go formats must not need it.
    code = (
        "import sys\n"
        "import plugin_sdk.convert, plugin_sdk.models\n"
        "import plugin_sdk.gocompat.gojson, plugin_sdk.gocompat.gotime\n"
        "loaded = [m for m in sys.modules if m == 'core' or m.startswith('core.')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
