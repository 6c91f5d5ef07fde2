"""Real stand-ins for the services notifications reach: an HTTP receiver and an SMTP server.

Imported by name (``from notify_helpers import ...``); the module name is unique so it
cannot shadow another test directory's helpers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from support import finished, free_port, wait_for

from core.jobs.model import Job
from core.node import ServerConfig
from core.notify import NotifyConfig
from core.plugins.runtime import RuntimeSettings

__all__ = [
    "HttpRecorder",
    "Recorded",
    "SmtpSink",
    "closed_port",
    "finished",
    "server_config",
    "shell",
    "wait_for",
]


def closed_port() -> int:
    """A port nothing listens on (bound then released: connecting is refused)."""
    return free_port()


def server_config(data_dir: Path, notify: NotifyConfig) -> ServerConfig:
    plugins = RuntimeSettings(plugin_dir=data_dir / "plugins", load_entry_points=False)
    return ServerConfig(
        node_name="node1",
        data_dir=data_dir,
        rpc_port=0,
        raft_port=free_port(),
        plugins=plugins,
        notify=notify,
    )


def shell(name: str, command: str, **fields: Any) -> Job:
    config = {"command": command, "shell": "true"}
    return Job(name=name, schedule="@manually", executor="shell", executor_config=config, **fields)


# -- HTTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: str
    raw_query: str = ""


@dataclass
class HttpRecorder:
    """An aiohttp server on 127.0.0.1:0 that records every request and answers ``status``.

    While ``hold`` is set and not released, requests get no answer (a hung receiver).
    """

    status: int = 200
    requests: list[Recorded] = field(default_factory=list)
    hold: asyncio.Event | None = None
    _runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> HttpRecorder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                raw_query=request.rel_url.raw_query_string,
            )
        )
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.status, text="ok")

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]


# -- SMTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    login: str | None  # the AUTH user of the session, None without AUTH

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        # SMTP carries CRLF line ends; the tests compare with the text that was sent.
        return payload.decode().replace("\r\n", "\n")


@dataclass
class SmtpSink:
    """aiosmtpd on 127.0.0.1:0 in the test's loop; ``users`` enables AUTH (PLAIN/LOGIN)."""

    users: dict[str, str] | None = None
    auth_required: bool = False
    mails: list[Mail] = field(default_factory=list)
    auth_attempts: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.AbstractServer | None = None

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _protocol(self) -> SMTP:
        return SMTP(
            self,
            hostname="localhost",  # the default asks DNS for the FQDN
            authenticator=self._authenticate if self.users is not None else None,
            auth_required=self.auth_required,
            auth_require_tls=False,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.auth_attempts.append((mechanism, login))
        ok = self.users is not None and self.users.get(login) == password
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        login = session.auth_data if session.authenticated else None
        self.mails.append(
            Mail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                message=message_from_bytes(content),
                login=login if isinstance(login, str) else None,
            )
        )
        return "250 Message accepted for delivery"
