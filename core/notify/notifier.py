"""Send Dkron's notifications (webhooks, email, Cronitor) without holding up a run.

Every notification runs as a background task with a deadline; a failure is logged and
recorded in :attr:`Notifier.deliveries`, and never reaches the dispatcher. Dkron sends
them inline, so a slow webhook delays the run's bookkeeping and a failed one skips the
dependent jobs and the ephemeral delete.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from core.jobs.model import Execution, Job
from core.notify.settings import NotifyConfig, split_header
from core.notify.templates import TemplateData, render_payload

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Delivery", "Notifier"]

log = logging.getLogger("dkron.notify")

_USER_AGENT = "dkron-py-notifier"
# Go's net/smtp sends PLAIN credentials in clear text only to these names.
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
# Runs whose post-notification never comes (the job was deleted mid-run) are forgotten
# after this many newer ones.
_MAX_OPEN_RUNS = 10_000


@dataclass(frozen=True)
class Delivery:
    """The outcome of one notification (``kind``: pre-webhook, webhook, mail, cronitor)."""

    kind: str
    job_name: str
    execution_id: str
    ok: bool
    detail: str = ""  # the error, or what the receiver answered
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _Run:
    """Per-run state: so post waits for pre, and Cronitor pairs run and complete."""

    series: str
    pre: asyncio.Task[None] | None = None


class Notifier:
    def __init__(self, config: NotifyConfig, node_name: str, *, history: int = 200) -> None:
        self.config = config
        self.node_name = node_name
        self.deliveries: deque[Delivery] = deque(maxlen=history)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runs: OrderedDict[tuple[str, int], _Run] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        if config.mail and not config.mail_from:
            log.warning("mail-host is set but mail-from is empty: execution emails will fail")

    @property
    def active(self) -> bool:
        """Whether any notification is configured (if not, the hooks need not be called)."""
        config = self.config
        return bool(config.cronitor_endpoint or config.pre_webhook or config.mail or config.webhook)

    # -- hooks (called by the dispatcher; they only schedule work) -------------------------

    async def pre(self, job: Job, execution: Execution) -> None:
        """An attempt has started (its StartExecution is committed)."""
        key = (job.name, execution.group)
        run = self._runs.get(key)
        first = run is None
        if run is None:
            run = self._runs[key] = _Run(series=execution.id)
            while len(self._runs) > _MAX_OPEN_RUNS:
                self._runs.popitem(last=False)
        work: list[tuple[str, Callable[[], Awaitable[str]]]] = []
        config = self.config
        if config.cronitor_endpoint and first:
            # One Cronitor series per run: retries stay inside the run's "run" ping.
            work.append(("cronitor", lambda: self._cronitor("run", execution, run.series)))
        if config.pre_webhook:
            data = TemplateData.build(execution, (), self.node_name)
            work.append(
                (
                    "pre-webhook",
                    lambda: self._webhook(
                        config.pre_webhook_endpoint,
                        render_payload(config.pre_webhook_payload, data),
                        config.pre_webhook_headers,
                    ),
                )
            )
        if work:
            run.pre = self._spawn(self._deliver_all(execution, work, after=run.pre))

    async def post(self, job: Job, execution: Execution, group: list[Execution]) -> None:
        """The run's final attempt is stored; ``group`` holds every attempt of the run."""
        run = self._runs.pop((job.name, execution.group), None)
        series = run.series if run is not None else execution.id
        config = self.config
        work: list[tuple[str, Callable[[], Awaitable[str]]]] = []
        if config.cronitor_endpoint:
            state = "complete" if execution.success else "fail"
            work.append(("cronitor", lambda: self._cronitor(state, execution, series)))
        mail = bool(config.mail and job.owner_email)
        webhook = bool(config.webhook and self._webhook_wanted(execution.success))
        # The template data (Go time strings of every attempt) only when something
        # renders it: it was built for every run, a notifier configured or not.
        data = TemplateData.build(execution, group, self.node_name) if mail or webhook else None
        if mail and data is not None:
            body = render_payload(config.mail_payload, data) if config.mail_payload else data.output
            work.append(("mail", lambda: self._mail(job.owner_email, execution, body)))
        if webhook and data is not None:
            work.append(
                (
                    "webhook",
                    lambda: self._webhook(
                        config.webhook_endpoint,
                        render_payload(config.webhook_payload, data),
                        config.webhook_headers,
                    ),
                )
            )
        if work:
            self._spawn(self._deliver_all(execution, work, after=run.pre if run else None))

    def _webhook_wanted(self, success: bool) -> bool:
        wanted = self.config.webhook_on
        return wanted == "always" or (wanted == "success") == success

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self, timeout: float = 5.0) -> None:
        """Let notifications in flight finish (up to ``timeout``), then cancel the rest."""
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._runs.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def idle(self, timeout: float) -> bool:
        """Wait until no notification is in flight; True if that happened in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(list(self._tasks), timeout=remaining)
        return True

    # -- delivery ----------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        async def run() -> None:
            await work

        task = asyncio.create_task(run(), name="notify")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver_all(
        self,
        execution: Execution,
        work: list[tuple[str, Callable[[], Awaitable[str]]]],
        after: asyncio.Task[None] | None,
    ) -> None:
        if after is not None and not after.done():
            # Keep receivers' view in order (pre before post) without waiting forever.
            await asyncio.wait({after}, timeout=self.config.timeout)
        await asyncio.gather(*(self._deliver(kind, execution, send) for kind, send in work))

    async def _deliver(
        self, kind: str, execution: Execution, send: Callable[[], Awaitable[str]]
    ) -> None:
        try:
            detail = await asyncio.wait_for(send(), self.config.timeout)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._record(kind, execution, False, f"timed out after {self.config.timeout:g}s")
        except Exception as exc:
            self._record(kind, execution, False, _describe(exc))
        else:
            self._record(kind, execution, True, detail)

    def _record(self, kind: str, execution: Execution, ok: bool, detail: str) -> None:
        self.deliveries.append(Delivery(kind, execution.job_name, execution.id, ok, detail))
        if ok:
            log.debug("%s notification for %s sent: %s", kind, execution.id, detail)
        else:
            log.warning("%s notification for %s failed: %s", kind, execution.id, detail)

    def _http(self) -> aiohttp.ClientSession:
        import aiohttp  # the CLI's client commands import this package without needing it

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": _USER_AGENT})
        return self._session

    async def _webhook(self, endpoint: str, body: str, entries: Iterable[str]) -> str:
        headers: dict[str, str] = {}
        for entry in entries:
            key, value = split_header(entry)
            # Go's Header.Set: the last entry for a name wins, whatever its case.
            for existing in [k for k in headers if k.lower() == key.lower()]:
                del headers[existing]
            headers["Host" if key.lower() == "host" else key] = value
        # Go sends no Content-Type unless one is configured; aiohttp would add one.
        skip = () if any(k.lower() == "content-type" for k in headers) else ("Content-Type",)
        async with self._http().post(
            endpoint, data=body.encode(), headers=headers, skip_auto_headers=skip
        ) as response:
            await response.read()
            return f"HTTP {response.status}"

    async def _cronitor(self, state: str, execution: Execution, series: str) -> str:
        import yarl

        query = urlencode(
            {
                "host": execution.node_name,
                "message": f"Job {state} by Dkron",
                "series": series,
                "state": state,
            }
        )
        endpoint = self.config.cronitor_endpoint.rstrip("/")
        url = yarl.URL(f"{endpoint}/{quote(execution.job_name, safe='')}?{query}", encoded=True)
        async with self._http().get(url) as response:
            await response.read()
            return f"HTTP {response.status}"

    async def _mail(self, owner_email: str, execution: Execution, body: str) -> str:
        status = "Success" if execution.success else "Failed"
        subject = f"{self.config.mail_subject_prefix}{status} {execution.job_name} execution report"
        recipients = [address for _, address in getaddresses([owner_email]) if address]
        if not recipients:
            raise ValueError(f"owner_email {owner_email!r} holds no address")
        # smtplib blocks; the socket timeout bounds the thread as wait_for bounds the task.
        await asyncio.to_thread(self._send_mail, recipients, subject, body)
        return f"sent to {', '.join(recipients)}"

    def _send_mail(self, recipients: list[str], subject: str, body: str) -> None:
        config = self.config
        sender = parseaddr(config.mail_from)[1]
        if not sender:
            raise ValueError(f"mail-from {config.mail_from!r} is not an email address")
        message = EmailMessage()
        message["From"] = config.mail_from
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-Id"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        message.set_content(body)
        with smtplib.SMTP(config.mail_host, config.mail_port, timeout=config.timeout) as smtp:
            smtp.ehlo_or_helo_if_needed()
            encrypted = False
            if smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
                encrypted = True
            if config.mail_username and config.mail_password:
                if not encrypted and config.mail_host not in _LOCAL_HOSTS:
                    # As Go's smtp.PlainAuth: no password in clear text over the network.
                    raise ValueError(
                        "refusing SMTP AUTH over an unencrypted connection "
                        f"(the server at {config.mail_host} offers no STARTTLS)"
                    )
                smtp.user, smtp.password = config.mail_username, config.mail_password
                smtp.auth("PLAIN", smtp.auth_plain)
            smtp.send_message(message, from_addr=sender, to_addrs=recipients)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        reason = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        text = f"SMTP {exc.smtp_code} {reason}"
    return f"{type(exc).__name__}: {text}"
