"""Notifications through a real single-node server, against real HTTP and SMTP servers."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from notify_helpers import (
    HttpRecorder,
    SmtpSink,
    closed_port,
    finished,
    server_config,
    shell,
    wait_for,
)

from core.config import ConfigError, load_config
from core.jobs.model import Execution, RetryBackoff
from core.node import DkronServer
from core.notify import NotifyConfig, TemplateData, TemplateError, render
from core.store.state import JobQuery

Configure = Callable[..., Any]
ALL_FIELDS = (
    "R=<{{.Report}}>|J={{.JobName}}|RN={{.ReportingNode}}|N={{ .NodeName }}|O={{.Output}}"
    "|S={{.StartTime}}|F={{  .FinishedAt  }}|OK={{.Success}}"
)
GO_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? \+0000 UTC")


# One real server for the module (its start dominates a test's time); each test gives it
# its own notification settings, which the notifier reads at every send.
shared_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DkronServer]:
    server = DkronServer(server_config(tmp_path_factory.mktemp("notify"), NotifyConfig()))
    try:
        await server.start()
        await wait_for(lambda: server.is_leader)
        yield server
    finally:
        await server.stop(drain_timeout=5)


@pytest_asyncio.fixture(loop_scope="module")
async def configure(shared_server: DkronServer) -> AsyncIterator[Configure]:
    async def apply(**notify: Any) -> DkronServer:
        shared_server.notifier.config = NotifyConfig(**notify)
        return shared_server

    yield apply
    notifier = shared_server.notifier
    assert await notifier.idle(5), "notifications still in flight after the test"
    notifier.config = NotifyConfig()
    notifier.deliveries.clear()
    jobs, _ = shared_server.list_jobs(JobQuery())
    for job in sorted(jobs, key=lambda j: not j.parent_job):  # children before parents
        await shared_server.delete_job(job.name)


@pytest_asyncio.fixture(loop_scope="module")
async def hooks() -> AsyncIterator[HttpRecorder]:
    recorder = await HttpRecorder().start()
    yield recorder
    await recorder.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = await SmtpSink().start()
    yield sink
    await sink.stop()


def go_time(moment: datetime | None) -> str:
    """Go's time.Time.String() for a UTC time, written out independently of the code."""
    if moment is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    moment = moment.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return f"{moment:%Y-%m-%d %H:%M:%S}{fraction} +0000 UTC"


async def run_to_end(server: DkronServer, job: str, count: int = 1) -> list[Execution]:
    await server.run_job(job)
    return await wait_for(lambda: len(finished(server, job)) >= count and finished(server, job))


# -- webhooks ------------------------------------------------------------------------------


@shared_loop
async def test_pre_and_post_webhooks_with_headers(configure, hooks: HttpRecorder) -> None:
    server = await configure(
        pre_webhook_endpoint=f"{hooks.url}/pre",
        pre_webhook_payload="start {{.JobName}} on {{.NodeName}}",
        pre_webhook_headers=("X-Token: a:b:c",),
        webhook_endpoint=f"{hooks.url}/post",
        webhook_payload='{"job": "{{.JobName}}", "ok": {{.Success}}}',
        webhook_headers=(
            "Host: hooks.example.com",
            "Content-Type: application/json",
            "x-token: one",
            "X-Token: two",
        ),
    )
    await server.set_job(shell("hello", "echo hi"))

    [run] = await run_to_end(server, "hello")
    post = await wait_for(lambda: hooks.to("/post"))

    assert run.success
    [pre] = hooks.to("/pre")
    assert hooks.requests.index(pre) < hooks.requests.index(post[0])  # pre goes first
    assert (pre.method, pre.body) == ("POST", "start hello on node1")
    assert pre.headers["x-token"] == "a:b:c"  # Dkron would cut the value at the colon
    assert pre.headers["host"] == f"127.0.0.1:{hooks.port}"
    assert "content-type" not in pre.headers  # none configured, none sent (as Go)
    assert len(post) == 1
    assert post[0].method == "POST"
    assert post[0].body == '{"job": "hello", "ok": true}'
    assert post[0].headers["host"] == "hooks.example.com"
    assert post[0].headers["content-type"] == "application/json"
    assert post[0].headers["x-token"] == "two"  # the last entry for a name wins


@shared_loop
async def test_failed_run_and_receiver_status_is_ignored(configure, hooks: HttpRecorder) -> None:
    hooks.status = 500
    server = await configure(
        webhook_endpoint=f"{hooks.url}/post", webhook_payload="{{.JobName}} {{.Success}}"
    )
    await server.set_job(shell("broken", "echo boom; exit 3"))

    [run] = await run_to_end(server, "broken")
    [post] = await wait_for(lambda: hooks.to("/post"))
    await server.notifier.idle(5)

    assert not run.success
    assert post.body == "broken false"
    [delivery] = server.notifier.deliveries
    assert (delivery.kind, delivery.ok, delivery.detail) == ("webhook", True, "HTTP 500")
    assert delivery.execution_id == run.id


@shared_loop
async def test_every_template_field(configure, hooks: HttpRecorder) -> None:
    server = await configure(
        pre_webhook_endpoint=f"{hooks.url}/pre",
        pre_webhook_payload=ALL_FIELDS,
        webhook_endpoint=f"{hooks.url}/post",
        webhook_payload=ALL_FIELDS,
    )
    await server.set_job(shell("fields", "echo out"))

    [run] = await run_to_end(server, "fields")
    [post] = await wait_for(lambda: hooks.to("/post"))
    [pre] = hooks.to("/pre")

    start, end = go_time(run.started_at), go_time(run.finished_at)
    assert GO_TIME.fullmatch(start) and GO_TIME.fullmatch(end)
    report = (
        f"Executed: fields\nReporting node: node1\nStart time: {start}\nEnd time: {end}\n"
        f"Success: true\nNode: node1\nOutput: out\n\nExecution group: {run.group}\n"
        f"\t[Node]: node1 [Start]: {start} [End]: {end} [Success]: true\n"
    )
    assert post.body == (
        f"R=<{report}>|J=fields|RN=node1|N=node1|O=out\n|S={start}|F={end}|OK=true"
    )
    # At the start: no end time (Go's zero time), no output, no group lines yet.
    zero = "0001-01-01 00:00:00 +0000 UTC"
    pre_report = (
        f"Executed: fields\nReporting node: node1\nStart time: {start}\nEnd time: {zero}\n"
        f"Success: false\nNode: node1\nOutput: \nExecution group: {run.group}\n"
    )
    assert pre.body == (
        f"R=<{pre_report}>|J=fields|RN=node1|N=node1|O=|S={start}|F={zero}|OK=false"
    )


@shared_loop
async def test_template_errors_are_sent_as_dkron_words_them(configure, hooks: HttpRecorder) -> None:
    server = await configure(
        pre_webhook_endpoint=f"{hooks.url}/pre",
        pre_webhook_payload="{{.JobName",
        webhook_endpoint=f"{hooks.url}/post",
        webhook_payload="ok\n  {{.Nope}}",
    )
    await server.set_job(shell("tmpl", "true"))

    [run] = await run_to_end(server, "tmpl")
    [post] = await wait_for(lambda: hooks.to("/post"))

    assert run.success
    assert hooks.to("/pre")[0].body == (
        "Failed to parse template: template: report:1: unclosed action"
    )
    assert post.body.startswith(
        'Failed to execute template:template: report:2:4: executing "report" at <.Nope>: '
        "can't evaluate field Nope in type struct { Report string; JobName string;"
    )


@shared_loop
async def test_webhook_down_does_not_touch_the_run(configure) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    server = await configure(
        pre_webhook_endpoint=f"{dead}/pre",
        pre_webhook_payload="x",
        webhook_endpoint=f"{dead}/post",
        webhook_payload="y",
        cronitor_endpoint=dead,
    )
    await server.set_job(shell("parent", "echo parent"))
    await server.set_job(shell("child", "echo child", parent_job="parent"))

    [run] = await run_to_end(server, "parent")
    [child] = await wait_for(lambda: finished(server, "child"))
    await wait_for(lambda: len(server.notifier.deliveries) >= 8)  # (pre 2 + post 2) x 2 runs

    assert run.success and child.success and child.output == b"child\n"
    assert server.get_job("parent").status == "success"
    assert {d.kind for d in server.notifier.deliveries} == {"pre-webhook", "webhook", "cronitor"}
    assert all(not d.ok for d in server.notifier.deliveries)
    assert all("ClientConnectorError" in d.detail for d in server.notifier.deliveries)


@shared_loop
async def test_a_hung_webhook_neither_blocks_the_run_nor_its_children(
    configure, hooks: HttpRecorder
) -> None:
    hooks.hold = asyncio.Event()  # the receiver never answers
    server = await configure(
        webhook_endpoint=f"{hooks.url}/post", webhook_payload="{{.JobName}}", timeout=1.5
    )
    await server.set_job(shell("parent", "true"))
    await server.set_job(shell("child", "true", parent_job="parent"))

    await server.run_job("parent")
    await wait_for(lambda: hooks.to("/post"))  # the parent's webhook is now hanging
    [child] = await wait_for(lambda: finished(server, "child"))

    parent_hook = [d for d in server.notifier.deliveries if d.job_name == "parent"]
    assert child.success and parent_hook == []  # the child ran while the hook hung
    [timed_out] = await wait_for(
        lambda: [d for d in server.notifier.deliveries if d.job_name == "parent"]
    )
    assert (timed_out.ok, timed_out.detail) == (False, "timed out after 1.5s")


@shared_loop
async def test_webhook_on_failure_only(configure, hooks: HttpRecorder) -> None:
    server = await configure(
        webhook_endpoint=f"{hooks.url}/post",
        webhook_payload="{{.JobName}}",
        webhook_on="failure",
        cronitor_endpoint=f"{hooks.url}/cronitor",
    )
    await server.set_job(shell("good", "true"))
    await server.set_job(shell("bad", "false"))

    await run_to_end(server, "good")
    await run_to_end(server, "bad")
    # The Cronitor ping is sent with the webhook, so once both are in, all was sent.
    await wait_for(
        lambda: (
            [r.query["state"] for r in hooks.requests if r.path.startswith("/cronitor/")]
            == ["run", "complete", "run", "fail"]
        )
    )
    assert await server.notifier.idle(5)

    assert [r.body for r in hooks.to("/post")] == ["bad"]


# -- retries and streaming -----------------------------------------------------------------


@shared_loop
async def test_retries_pre_per_attempt_post_once_cronitor_one_series(
    configure, hooks: HttpRecorder, tmp_path: Path
) -> None:
    server = await configure(
        pre_webhook_endpoint=f"{hooks.url}/pre",
        pre_webhook_payload="{{.StartTime}}",
        webhook_endpoint=f"{hooks.url}/post",
        webhook_payload="{{.Report}}",
        cronitor_endpoint=f"{hooks.url}/ping/key",
    )
    marker = tmp_path / "second-time"
    flaky = f"test -f {marker} || {{ touch {marker}; echo first; exit 1; }}; echo second"
    backoff = RetryBackoff(delay="50ms")
    await server.set_job(shell("flaky", flaky, retries=2, retry_backoff=backoff))
    await server.set_job(shell("doomed", "exit 1", retries=1, retry_backoff=backoff))

    first, second = await run_to_end(server, "flaky", 2)
    [post] = await wait_for(lambda: hooks.to("/post"))
    await run_to_end(server, "doomed", 2)
    await wait_for(lambda: len(hooks.to("/post")) == 2)
    assert await server.notifier.idle(5)

    assert (first.success, second.success) == (False, True)
    # One pre-webhook per attempt start, one post-webhook per run.
    pres = hooks.to("/pre")
    assert len(pres) == 4
    assert pres[0].body == go_time(first.started_at)
    assert pres[1].body == go_time(second.started_at)
    assert post.body.startswith("Executed: flaky\n")
    assert f"Start time: {go_time(second.started_at)}\n" in post.body
    assert post.body.endswith(
        f"\t[Node]: node1 [Start]: {go_time(first.started_at)} "
        f"[End]: {go_time(first.finished_at)} [Success]: false\n"
        f"\t[Node]: node1 [Start]: {go_time(second.started_at)} "
        f"[End]: {go_time(second.finished_at)} [Success]: true\n"
    )
    # Cronitor: one run ping per run, closed by complete/fail in the same series.
    flaky_pings = hooks.to("/ping/key/flaky")
    assert [(p.method, p.query["state"]) for p in flaky_pings] == [
        ("GET", "run"),
        ("GET", "complete"),
    ]
    assert {p.query["series"] for p in flaky_pings} == {first.id}
    assert flaky_pings[0].raw_query == (
        f"host=node1&message=Job+run+by+Dkron&series={first.id}&state=run"
    )
    assert flaky_pings[1].query["message"] == "Job complete by Dkron"
    doomed_pings = hooks.to("/ping/key/doomed")
    assert [p.query["state"] for p in doomed_pings] == ["run", "fail"]
    assert doomed_pings[1].query["message"] == "Job fail by Dkron"


@shared_loop
async def test_a_chatty_job_fires_pre_once(configure, hooks: HttpRecorder, tmp_path: Path) -> None:
    server = await configure(
        pre_webhook_endpoint=f"{hooks.url}/pre",
        pre_webhook_payload="{{.JobName}}",
        cronitor_endpoint=f"{hooks.url}/cronitor",
    )
    go = tmp_path / "go"
    command = (
        f"while [ ! -f {go} ]; do sleep 0.01; done; "
        "for i in $(seq 1 50); do echo line $i; sleep 0.005; done"
    )
    await server.set_job(shell("chatty", command))

    await server.run_job("chatty")
    [running] = await wait_for(server.busy)
    chunks: list[bytes] = []

    async def follow() -> None:
        async for chunk in server.follow(running.id):
            chunks.append(chunk)

    follower = asyncio.create_task(follow())
    await wait_for(lambda: hooks.to("/pre"))
    go.touch()
    [run] = await wait_for(lambda: finished(server, "chatty"))
    await follower
    await wait_for(lambda: len(hooks.to("/cronitor/chatty")) == 2)
    assert await server.notifier.idle(5)

    assert run.output.count(b"\n") == 50
    assert len(chunks) >= 10  # the output really was streamed in many messages
    assert len(hooks.to("/pre")) == 1
    assert [r.query["state"] for r in hooks.to("/cronitor/chatty")] == ["run", "complete"]


# -- email ---------------------------------------------------------------------------------


@shared_loop
async def test_email_with_template_and_subject_prefix(configure, smtp: SmtpSink) -> None:
    server = await configure(
        mail_host="127.0.0.1",
        mail_port=smtp.port,
        mail_from="Dkron <dkron@example.com>",
        mail_payload="{{.JobName}} finished: {{.Success}}\n{{.Output}}",
        mail_subject_prefix="[Ops] ",
    )
    await server.set_job(shell("nightly", "echo all good", owner_email="owner@example.com"))
    await server.set_job(shell("anonymous", "echo x"))  # no owner_email: no mail

    await run_to_end(server, "anonymous")
    await run_to_end(server, "nightly")
    [mail] = await wait_for(lambda: smtp.mails)
    assert await server.notifier.idle(5)

    assert len(smtp.mails) == 1
    assert mail.message["Subject"] == "[Ops] Success nightly execution report"
    assert mail.message["From"] == "Dkron <dkron@example.com>"
    assert mail.message["To"] == "owner@example.com"
    assert (mail.mail_from, mail.rcpt_tos) == ("dkron@example.com", ["owner@example.com"])
    assert mail.body == "nightly finished: true\nall good\n"
    assert mail.login is None and smtp.auth_attempts == []


@shared_loop
async def test_email_of_a_failure_is_the_raw_output(configure, smtp: SmtpSink) -> None:
    server = await configure(
        mail_host="127.0.0.1", mail_port=smtp.port, mail_from="dkron@example.com"
    )
    await server.set_job(shell("broken", "echo boom; exit 1", owner_email="ops@example.com"))

    [run] = await run_to_end(server, "broken")
    [mail] = await wait_for(lambda: smtp.mails)

    assert mail.message["Subject"] == "[Dkron]Failed broken execution report"
    assert run.output == b"exit status 1\nboom\n"  # the executor's error, then the output
    assert mail.body == run.output.decode()


@shared_loop
async def test_email_without_mail_from_is_a_recorded_error(configure, smtp: SmtpSink) -> None:
    server = await configure(mail_host="127.0.0.1", mail_port=smtp.port)
    await server.set_job(shell("nofrom", "true", owner_email="ops@example.com"))

    [run] = await run_to_end(server, "nofrom")
    [delivery] = await wait_for(lambda: list(server.notifier.deliveries))

    assert run.success and smtp.mails == []
    assert (delivery.kind, delivery.ok) == ("mail", False)
    assert delivery.detail == "ValueError: mail-from '' is not an email address"


@shared_loop
@pytest.mark.parametrize(
    ("username", "password", "authenticated"),
    [("ops", "secret", True), ("ops", "", False)],
)
async def test_smtp_auth_only_with_username_and_password(
    configure, username: str, password: str, authenticated: bool
) -> None:
    sink = await SmtpSink(users={"ops": "secret"}).start()
    try:
        server = await configure(
            mail_host="127.0.0.1",
            mail_port=sink.port,
            mail_from="dkron@example.com",
            mail_username=username,
            mail_password=password,
        )
        await server.set_job(shell("j", "echo hi", owner_email="a@example.com"))
        await run_to_end(server, "j")
        [mail] = await wait_for(lambda: sink.mails)
    finally:
        await sink.stop()

    if authenticated:
        assert mail.login == "ops" and sink.auth_attempts == [("PLAIN", "ops")]
    else:
        assert mail.login is None and sink.auth_attempts == []


@shared_loop
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_rejection_is_recorded_and_the_run_still_succeeds(configure) -> None:
    sink = await SmtpSink(users={"ops": "secret"}, auth_required=True).start()
    try:
        server = await configure(
            mail_host="127.0.0.1",
            mail_port=sink.port,
            mail_from="dkron@example.com",
            mail_username="ops",
            mail_password="wrong",
        )
        await server.set_job(shell("p", "true", owner_email="a@example.com"))
        await server.set_job(shell("c", "true", parent_job="p"))
        [run] = await run_to_end(server, "p")
        [child] = await wait_for(lambda: finished(server, "c"))
        [delivery] = await wait_for(lambda: list(server.notifier.deliveries))
    finally:
        await sink.stop()

    assert run.success and child.success
    assert (delivery.kind, delivery.ok) == ("mail", False)
    assert delivery.detail.startswith("SMTPAuthenticationError: SMTP 535")
    assert sink.mails == []


# -- templates (pure functions) ------------------------------------------------------------

DATA = TemplateData(
    report="R",
    job_name="job",
    reporting_node="leader",
    start_time="S",
    finished_at="F",
    success="true",
    node_name="n",
    output="out",
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.JobName}}", "job"),
        ("{{ .JobName }}|{{\t.NodeName\t}}", "job|n"),
        ("a  {{- .JobName -}}  \n b", "ajobb"),
        ("x{{/* a comment */}}y{{- /* trimmed */ -}} z", "xyz"),
        ("{{.ReportingNode}} {{.Success}} {{.Output}}", "leader true out"),
        ("no placeholders }} {", "no placeholders }} {"),
        ("", ""),
    ],
)
def test_template_rendering(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.JobName", "Failed to parse template: template: report:1: unclosed action"),
        ("a\n{{ }}", "Failed to parse template: template: report:2: missing value for command"),
        ("{{jobName}}", 'Failed to parse template: template: report:1: function "jobName" not '),
        ("{{/* open", "Failed to parse template: template: report:1: unclosed comment"),
        ("{{if .Success}}y{{end}}", "Failed to parse template: template: report:1: unsupported"),
        ("{{.StartTime.Unix}}", "Failed to parse template: template: report:1: unsupported"),
        (
            "{{.JobName}} {{.jobname}}",
            'Failed to execute template:template: report:1:15: executing "report" at '
            "<.jobname>: can't evaluate field jobname in type struct {",
        ),
    ],
)
def test_template_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, DATA)
    assert str(caught.value).startswith(message)


def test_go_time_of_nanosecond_free_and_zero_times() -> None:
    from core.notify.templates import go_time_string

    assert go_time_string(None) == "0001-01-01 00:00:00 +0000 UTC"
    assert go_time_string(datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) == (
        "2024-05-01 12:00:00 +0000 UTC"
    )
    assert go_time_string(datetime(2024, 5, 1, 12, 0, 0, 120000, tzinfo=UTC)) == (
        "2024-05-01 12:00:00.12 +0000 UTC"
    )


# -- configuration -------------------------------------------------------------------------


def load(tmp_path: Path, flags: dict[str, object], env: dict[str, str] | None = None) -> Any:
    return load_config(flags, env=env or {}, search_dirs=[tmp_path / "nowhere"])


def test_notification_settings_from_flags_env_and_file(tmp_path: Path) -> None:
    config_file = tmp_path / "dkron.yml"
    config_file.write_text(
        "webhook-endpoint: https://hooks.example.com/x\n"
        "webhook-payload: '{{.Report}}'\n"
        "webhook-headers:\n  - 'Content-Type: application/json'\n  - 'Accept: a, b'\n"
        "mail-host: smtp.example.com\nmail-port: 2525\nwebhook_on: failure\n"
    )
    env = {
        "DKRON_PRE_WEBHOOK_HEADERS": "Content-Type: text/plain,Authorization: Bearer t:k",
        "DKRON_MAIL_SUBJECT_PREFIX": "[cron] ",
    }
    flags: dict[str, object] = {"cronitor_endpoint": "https://cronitor.link/p/abc"}
    config = load_config(flags, env=env, config_file=config_file)
    notify = config.to_server_config().notify

    assert notify.webhook_endpoint == "https://hooks.example.com/x"
    assert notify.webhook_payload == "{{.Report}}"
    assert notify.webhook_headers == ("Content-Type: application/json", "Accept: a, b")
    assert notify.pre_webhook_headers == ("Content-Type: text/plain", "Authorization: Bearer t:k")
    assert (notify.mail_host, notify.mail_port) == ("smtp.example.com", 2525)
    assert notify.mail_subject_prefix == "[cron] "
    assert notify.webhook_on == "failure"
    assert notify.cronitor_endpoint == "https://cronitor.link/p/abc"


def test_notification_defaults(tmp_path: Path) -> None:
    notify = load(tmp_path, {}).to_server_config().notify
    assert notify == NotifyConfig()
    assert (notify.mail_subject_prefix, notify.webhook_on, notify.mail_port) == (
        "[Dkron]",
        "always",
        0,
    )
    assert not (notify.webhook or notify.pre_webhook or notify.mail)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"webhook_headers": ["X-Token"]},
            "for --webhook-headers: invalid header 'X-Token': expected 'Key: Value'",
        ),
        (
            {"pre_webhook_headers": ["Bad Name: v"]},
            "for --pre-webhook-headers: invalid header 'Bad Name: v': 'Bad Name' is not a "
            "valid header name",
        ),
        (
            {"webhook_on": "sometimes"},
            "invalid value 'sometimes' for --webhook-on: expected one of always, failure, success",
        ),
        (
            {"webhook_endpoint": "hooks.example.com/x"},
            "for --webhook-endpoint: expected an http:// or https:// URL",
        ),
        ({"cronitor_endpoint": "ftp://x"}, "for --cronitor-endpoint: expected an http://"),
        ({"mail_port": "smtp"}, "invalid value 'smtp' for --mail-port: expected an integer"),
    ],
)
def test_bad_notification_settings(tmp_path: Path, flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, flags)
    assert message in str(caught.value)


def test_bad_header_in_the_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="for DKRON_WEBHOOK_HEADERS: invalid header"):
        load(tmp_path, {}, env={"DKRON_WEBHOOK_HEADERS": "nocolon"})


def test_notify_config_rejects_bad_values_directly() -> None:
    with pytest.raises(ValueError, match="expected one of always"):
        NotifyConfig(webhook_on="never")
    with pytest.raises(ValueError, match="expected 'Key: Value'"):
        NotifyConfig(webhook_headers=("broken",))
    assert NotifyConfig(webhook_on=" Failure ").webhook_on == "failure"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook-on", "sometimes"], "--webhook-on: expected one of always"),
        (["--webhook-headers", "X: 1", "--webhook-headers", "oops"], "invalid header 'oops'"),
    ],
)
def test_agent_flags_are_wired(tmp_path: Path, args: list[str], message: str) -> None:
    dkronctl = str(Path(sys.executable).parent / "dkronctl")
    completed = subprocess.run(
        [dkronctl, "agent", "--server", "--bootstrap-expect", "1", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert completed.returncode == 2
    assert message in completed.stderr
