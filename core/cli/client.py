"""A small blocking HTTP client for the REST API, plus what the client commands share.

Blocking urllib keeps every client command a plain function: no event loop for a
request or two, and Server-Sent Events are just lines read off the response.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from http.client import HTTPResponse
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = [
    "DEFAULT_ADDRESS",
    "Address",
    "ApiError",
    "AsJson",
    "CaFile",
    "DkronClient",
    "Token",
    "echo_json",
    "fail",
    "short_time",
    "table",
]

DEFAULT_ADDRESS = "http://127.0.0.1:8080"

Address = Annotated[
    str,
    typer.Option("--address", envvar="DKRON_ADDR", help="Base URL of a dkron server's HTTP API."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="DKRON_TOKEN",
        help="ACL token secret, sent as Authorization: Bearer (better: DKRON_TOKEN).",
        show_default=False,
        show_envvar=True,
    ),
]
CaFile = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        envvar="DKRON_CA_FILE",
        help="CA certificate that signs an HTTPS server's (default: the system's).",
        show_default=False,
    ),
]

_ZERO_TIME = "0001-01-01T00:00:00Z"
_MAX_MESSAGE = 300
_NO_TIMEOUT = -1.0


class ApiError(Exception):
    """A request failed; ``str()`` is the one line dkronctl prints after ``dkronctl: ``."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"dkronctl: {message}", err=True)
    raise typer.Exit(code)


class DkronClient:
    def __init__(
        self,
        address: str,
        timeout: float = 10.0,
        *,
        token: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        address = address.strip().rstrip("/")
        if "://" not in address:
            address = "http://" + address
        self.address = address
        self.timeout = timeout
        self._token = token or None
        self._ca_file = ca_file
        self._tls: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext | None:
        if self._ca_file is not None and self._tls is None:
            try:
                self._tls = ssl.create_default_context(cafile=str(self._ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ApiError(f"cannot use --ca-file {self._ca_file}: {_reason(exc)}") from None
        return self._tls

    def url(self, path: str, query: Sequence[tuple[str, str]] | Mapping[str, str] = ()) -> str:
        quoted = urllib.parse.quote(path, safe="/:@")
        encoded = urllib.parse.urlencode(query)
        return f"{self.address}{quoted}" + (f"?{encoded}" if encoded else "")

    def _open(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> HTTPResponse:
        timeout = self.timeout if timeout is None else timeout
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            request = urllib.request.Request(
                self.url(path, query), data=body, method=method, headers=headers
            )
        except ValueError as exc:
            raise ApiError(f"invalid address {self.address!r}: {exc}") from None
        try:
            response: HTTPResponse = urllib.request.urlopen(
                request,
                timeout=None if timeout == _NO_TIMEOUT else timeout,
                context=self._context(),
            )
        except urllib.error.HTTPError as exc:
            raise ApiError(
                f"{what} failed: {exc.code} {_server_message(exc)}", status=exc.code
            ) from None
        except urllib.error.URLError as exc:
            raise ApiError(f"cannot reach dkron at {self.address}: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise ApiError(f"cannot reach dkron at {self.address}: timed out") from None
        except (OSError, ValueError) as exc:
            raise ApiError(f"cannot reach dkron at {self.address}: {_reason(exc)}") from None
        return response

    def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        body: bytes | None = None,
    ) -> Any:
        """Send a request and decode its JSON body; raises :class:`ApiError`."""
        with self._open(method, path, what, query=query, body=body) as response:
            try:
                data = response.read()
            except (OSError, TimeoutError) as exc:
                raise ApiError(f"{what} failed: connection broken: {_reason(exc)}") from None
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise ApiError(f"{what} failed: the server did not answer with JSON") from None

    def get(
        self, path: str, what: str, query: Sequence[tuple[str, str]] | Mapping[str, str] = ()
    ) -> Any:
        return self.call("GET", path, what, query=query)

    def events(self, path: str, what: str) -> Iterator[tuple[str, str]]:
        """Server-Sent Events from ``path`` as ``(event, data)``; ends when the server closes."""
        # No read timeout: an execution may be silent for as long as it likes.
        response = self._open("GET", path, what, timeout=_NO_TIMEOUT)
        with response:
            event, data = "message", list[str]()
            while True:
                try:
                    raw = response.readline()
                except (OSError, TimeoutError) as exc:
                    raise ApiError(f"{what} failed: connection broken: {_reason(exc)}") from None
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if data:
                        yield event, "\n".join(data)
                    event, data = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _server_message(error: urllib.error.HTTPError) -> str:
    try:
        body = error.read().decode("utf-8", "replace").strip()
    except OSError:
        body = ""
    # Dkron answers many errors with an empty body, some with a JSON string.
    if body.startswith('"'):
        try:
            decoded = json.loads(body)
            body = decoded if isinstance(decoded, str) else body
        except ValueError:
            pass
    if body in ("", "null"):
        body = error.reason if isinstance(error.reason, str) else ""
    first = body.splitlines()[0] if body else ""
    return first[:_MAX_MESSAGE]


# -- output ------------------------------------------------------------------------------


def echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def short_time(value: object) -> str:
    """An RFC 3339 time as ``YYYY-MM-DD HH:MM:SS`` plus its zone; ``-`` for none."""
    if not isinstance(value, str) or not value or value == _ZERO_TIME:
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    zone = moment.strftime("%z")
    zone = "Z" if zone in ("+0000", "") else f"{zone[:3]}:{zone[3:]}"
    return moment.strftime("%Y-%m-%d %H:%M:%S") + zone
