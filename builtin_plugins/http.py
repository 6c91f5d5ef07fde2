"""The builtin ``http`` executor: one HTTP request per execution, like Dkron's.

Config keys (all strings): ``method`` and ``url`` (required), ``body``, ``headers``
(JSON array of ``"Key: Value"``), ``timeout`` (seconds, default 30), ``expectCode``
(``200,206``), ``expectBody`` (regular expression), ``debug``, and the TLS keys
``tlsNoVerifyPeer``, ``tlsCertificateFile``, ``tlsCertificateKeyFile``, ``tlsRootCAsFile``.

Differences from Dkron, all deliberate: header values keep their colons, a header
entry without ``:`` is skipped with a warning instead of crashing the plugin,
``expectCode`` compares whole codes, and a malformed ``expectCode``/``expectBody``
fails before the request is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import re
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from plugin_sdk import ExecuteRequest, ExecuteResponse, StatusHelper, serve

__all__ = ["DEFAULT_TIMEOUT", "MAX_OUTPUT", "HttpExecutor", "main"]

log = logging.getLogger("dkron.executor.http")

DEFAULT_TIMEOUT = 30
MAX_OUTPUT = 256_000  # Dkron keeps the last 256,000 bytes of an execution's output
_SESSION_CACHE_SIZE = 100
# expectBody needs the whole body, but a runaway response must not exhaust memory.
_MATCH_LIMIT = 32 * 1024 * 1024
_READ_CHUNK = 64 * 1024
_MAX_REDIRECTS = 10  # Go's default, which Dkron uses
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name
_INTEGER = re.compile(r"[+-]?[0-9]+")
_SECRET_HEADER = re.compile(
    r"authorization|cookie|token|secret|passw|api[-_]?key|auth|credential|session", re.I
)
_REDACTED = "<redacted>"


class _Output:
    """Keeps the last ``limit`` bytes written, and hands every write to ``forward``."""

    def __init__(self, forward: Callable[[bytes], None], limit: int = MAX_OUTPUT) -> None:
        self._data = bytearray()
        self._limit = limit
        self._forward = forward
        self.total = 0

    def write(self, chunk: bytes | str) -> None:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if not chunk:
            return
        self.total += len(chunk)
        self._data += chunk
        if len(self._data) > self._limit:
            del self._data[: len(self._data) - self._limit]
        self._forward(chunk)

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def getvalue(self) -> bytes:
        return bytes(self._data)


class _ConfigError(Exception):
    """The job's configuration cannot produce a request; the message says why."""


# -- configuration parsing ---------------------------------------------------------------


def _parse_bool(value: str) -> bool:
    # strconv.ParseBool's spelling, so jobs written for Dkron keep their meaning.
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def _parse_timeout(raw: str, out: _Output) -> int | None:
    """Seconds, ``None`` for no limit (``0``, as in Go); a bad value warns and uses 30."""
    text = raw.strip()
    if not text:
        return DEFAULT_TIMEOUT
    if _INTEGER.fullmatch(text) and int(text) >= 0:
        return int(text) or None
    out.line(
        f"Warning: invalid timeout value: {raw!r} is not a whole, non-negative number of seconds, "
        f"using default value of {DEFAULT_TIMEOUT}."
    )
    return DEFAULT_TIMEOUT


def _parse_headers(raw: str, out: _Output) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    if not raw.strip():
        return headers
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError as exc:
        out.line(f"Error: parsing headers failed: {exc}; sending the request without them")
        return headers
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        out.line(
            'Error: parsing headers failed: expected a JSON array of "Key: Value" strings; '
            "sending the request without them"
        )
        return headers
    for entry in entries:
        if not entry:
            continue
        # Only the first colon separates: "Authorization: Basic a:b" keeps its value whole.
        key, colon, value = entry.partition(":")
        key, value = key.strip(), value.strip()
        if not colon:
            out.line(f'Warning: header {entry!r} has no ":" (expected "Key: Value"); skipped.')
        elif not _TOKEN.fullmatch(key):
            out.line(f"Warning: header {entry!r} has an invalid name {key!r}; skipped.")
        elif any(c in value for c in "\r\n\0"):
            out.line(f"Warning: header {key!r} has a line break or NUL in its value; skipped.")
        else:
            headers[key] = value  # Go's Header.Set: the last entry for a name wins
    return headers


def _parse_expect_code(raw: str) -> frozenset[int]:
    codes: set[int] = set()
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 100 <= int(part) <= 999:
            raise _ConfigError(
                f"invalid expectCode {raw!r}: {part!r} is not an HTTP status code "
                "(use a comma-separated list such as 200,206)"
            )
        codes.add(int(part))
    return frozenset(codes)


def _parse_expect_body(raw: str) -> re.Pattern[str] | None:
    if not raw:
        return None
    try:
        return re.compile(raw)
    except re.error as exc:
        raise _ConfigError(f"invalid expectBody regular expression {raw!r}: {exc}") from None


def _parse_url(raw: str) -> URL:
    try:
        url = URL(raw.strip())
    except (ValueError, TypeError) as exc:
        raise _ConfigError(f"invalid url {raw!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise _ConfigError(f"invalid url {raw!r}: expected an absolute http:// or https:// URL")
    return url


def _safe_url(url: URL) -> str:
    """The URL for messages: a password in it must not end up in stored output."""
    return str(url.with_password(_REDACTED)) if url.password is not None else str(url)


def _redacted_config(config: Mapping[str, str]) -> dict[str, str]:
    shown = dict(config)
    if shown.get("url"):
        with contextlib.suppress(ValueError, TypeError):
            shown["url"] = _safe_url(URL(shown["url"]))
    raw_headers = shown.get("headers", "")
    with contextlib.suppress(ValueError):
        entries = json.loads(raw_headers) if raw_headers else None
        if isinstance(entries, list):
            safe = []
            for entry in entries:
                if isinstance(entry, str) and ":" in entry:
                    key = entry.partition(":")[0]
                    if _SECRET_HEADER.search(key):
                        entry = f"{key}: {_REDACTED}"
                safe.append(entry)
            shown["headers"] = json.dumps(safe)
    return shown


# -- clients -----------------------------------------------------------------------------


def _file_signature(path: str) -> tuple[str, int, int] | None:
    # In the cache key so a replaced certificate file takes effect without a restart.
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class _ClientKey:
    timeout: int | None
    no_verify: str
    cert: tuple[str, int, int] | None
    key: tuple[str, int, int] | None
    root_cas: tuple[str, int, int] | None


def _ssl_context(config: Mapping[str, str], warnings: list[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    roots = config.get("tlsRootCAsFile", "")
    loaded_roots = False
    if roots:
        try:
            context.load_verify_locations(cafile=roots)
            loaded_roots = bool(context.get_ca_certs())
            if not loaded_roots:
                raise ssl.SSLError("no certificates in file")
        except (OSError, ssl.SSLError) as exc:
            warnings.append(
                f"using system root CAs instead of configured CAs: {roots}: {_describe(exc)}"
            )
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not loaded_roots:
        context.load_default_certs()

    raw_no_verify = config.get("tlsNoVerifyPeer", "")
    if raw_no_verify:
        try:
            no_verify = _parse_bool(raw_no_verify.strip())
        except ValueError as exc:
            warnings.append(f"not disabling certificate validation: {exc}")
            no_verify = False
        if no_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE

    cert = config.get("tlsCertificateFile", "")
    key = config.get("tlsCertificateKeyFile", "")
    if cert:
        try:
            # Without a key file the key is read from the certificate file (combined PEM).
            context.load_cert_chain(certfile=cert, keyfile=key or None)
        except (OSError, ssl.SSLError) as exc:
            warnings.append(f"not using client certificate: {_describe(exc)}")
    elif key:
        warnings.append(
            "not using client certificate: tlsCertificateKeyFile is set but "
            "tlsCertificateFile is not"
        )
    return context


@dataclass
class _Client:
    session: aiohttp.ClientSession
    warnings: list[str]
    users: int = 0
    evicted: bool = False


@dataclass
class _Plan:
    method: str
    url: URL
    body: bytes | None
    headers: CIMultiDict[str]
    timeout: int | None
    expect_codes: frozenset[int]
    expect_body: re.Pattern[str] | None
    debug: bool
    client_key: _ClientKey
    config: Mapping[str, str] = field(repr=False)


def _describe(exc: BaseException) -> str:
    """The cause in words: "Connection refused", not "[Errno 111] Connect call failed"."""
    if isinstance(exc, ssl.SSLError):
        return str(exc)  # its errno is OpenSSL's, not an OS error number
    if isinstance(exc, socket.gaierror) and exc.strerror:
        return exc.strerror
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        name = f": {exc.filename}" if exc.filename else ""
        return f"{os.strerror(exc.errno)}{name}"
    return str(exc) or type(exc).__name__


def _client_cert_hint(plan: _Plan) -> str:
    # A TLS 1.3 server that wants a client certificate rejects it only after the
    # handshake, so the client sees a bare disconnect or reset: say what likely happened.
    if plan.url.scheme != "https" or plan.config.get("tlsCertificateFile"):
        return ""
    return (
        " (if the server requires a client certificate, set tlsCertificateFile "
        "and tlsCertificateKeyFile)"
    )


def _plan(config: Mapping[str, str], out: _Output) -> _Plan:
    debug = bool(config.get("debug", ""))
    if debug:
        shown = json.dumps(_redacted_config(config), sort_keys=True)
        out.line(f"Config: {shown}")
        log.info("http executor config", extra={"config": shown})
    raw_url = config.get("url", "")
    if not raw_url:
        raise _ConfigError("url is empty")
    method = config.get("method", "")
    if not method:
        raise _ConfigError("method is empty")
    if not _TOKEN.fullmatch(method):
        raise _ConfigError(f"invalid method {method!r}")
    url = _parse_url(raw_url)
    expect_codes = _parse_expect_code(config.get("expectCode", ""))
    expect_body = _parse_expect_body(config.get("expectBody", ""))
    headers = _parse_headers(config.get("headers", ""), out)
    if url.user is not None and "Authorization" in headers:
        # Go's client lets an explicit Authorization header win over URL credentials.
        url = url.with_user(None)
    timeout = _parse_timeout(config.get("timeout", ""), out)
    body = config.get("body", "")
    key = _ClientKey(
        timeout=timeout,
        no_verify=config.get("tlsNoVerifyPeer", ""),
        cert=_file_signature(config.get("tlsCertificateFile", "")),
        key=_file_signature(config.get("tlsCertificateKeyFile", "")),
        root_cas=_file_signature(config.get("tlsRootCAsFile", "")),
    )
    return _Plan(
        method=method,
        url=url,
        body=body.encode() if body else None,
        headers=headers,
        timeout=timeout,
        expect_codes=expect_codes,
        expect_body=expect_body,
        debug=debug,
        client_key=key,
        config=config,
    )


# -- the executor ------------------------------------------------------------------------


class HttpExecutor:
    """Runs requests on one private asyncio loop; ``execute`` may be called from any thread."""

    def __init__(self, cache_size: int = _SESSION_CACHE_SIZE) -> None:
        self._cache_size = cache_size
        # Touched only on the loop thread, so it needs no lock.
        self._clients: OrderedDict[_ClientKey, _Client] = OrderedDict()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="http-executor-loop", daemon=True
        )
        self._thread.start()

    def execute(self, request: ExecuteRequest, status: StatusHelper) -> ExecuteResponse:
        chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        future: Future[ExecuteResponse] = asyncio.run_coroutine_threadsafe(
            self._execute(request.config, chunks), self._loop
        )
        # This worker thread would only wait anyway: let it relay live output meanwhile.
        finished = False
        while not finished:
            try:
                first = chunks.get(timeout=0.5)
            except queue.Empty:
                finished = future.done()
                continue
            pending = [first]
            while pending[-1] is not None:
                try:
                    pending.append(chunks.get_nowait())
                except queue.Empty:
                    break
            if pending[-1] is None:
                finished = True
                pending.pop()
            if pending:
                status.update(b"".join(c for c in pending if c is not None))
        return future.result()

    async def _execute(
        self, config: Mapping[str, str], chunks: queue.SimpleQueue[bytes | None]
    ) -> ExecuteResponse:
        out = _Output(chunks.put)
        try:
            error = await self._request(config, out)
        except _ConfigError as exc:
            error = str(exc)
        finally:
            chunks.put(None)
        return ExecuteResponse(output=out.getvalue(), error=error)

    async def _request(self, config: Mapping[str, str], out: _Output) -> str:
        plan = _plan(config, out)
        client = self._acquire(plan.client_key, config)
        for warning in client.warnings:
            out.line(f"Warning: {warning}.")
        target = f"{plan.method} {_safe_url(plan.url)}"
        try:
            async with client.session.request(
                plan.method,
                plan.url,
                data=plan.body,
                headers=plan.headers,
                max_redirects=_MAX_REDIRECTS,
            ) as response:
                if plan.debug:
                    log.info(
                        "http executor response",
                        extra={"request": target, "status": response.status},
                    )
                matched = await self._read_body(response, out, plan)
        except TimeoutError:
            return (
                f"{target}: timeout exceeded: no complete response within {plan.timeout} s "
                '(raise the "timeout" key to wait longer)'
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            return (
                f"{target}: TLS certificate verification failed: {exc.certificate_error} "
                "(trust the server's CA with tlsRootCAsFile, or set tlsNoVerifyPeer=true)"
            )
        except aiohttp.ClientConnectorError as exc:
            return f"{target}: cannot connect to {exc.host}:{exc.port}: {_describe(exc.os_error)}"
        except aiohttp.ServerDisconnectedError:
            return (
                f"{target}: the server closed the connection without a response"
                f"{_client_cert_hint(plan)}"
            )
        except aiohttp.ClientOSError as exc:
            return f"{target}: connection failed: {_describe(exc)}{_client_cert_hint(plan)}"
        except aiohttp.TooManyRedirects:
            return f"{target}: stopped after {_MAX_REDIRECTS} redirects"
        except aiohttp.ClientPayloadError as exc:
            return f"{target}: reading the response body failed: {exc}"
        except aiohttp.ClientResponseError as exc:
            return f"{target}: invalid response: {exc.message or exc}"
        except aiohttp.ClientError as exc:
            return f"{target}: request failed: {type(exc).__name__}: {_describe(exc)}"
        except ValueError as exc:  # aiohttp's checks on what it is asked to send
            return f"{target}: invalid request: {exc}"
        finally:
            self._release(plan.client_key, client)
        status_code = response.status
        if out.total > MAX_OUTPUT:
            log.info(
                "output truncated",
                extra={"request": target, "bytes": out.total, "kept": MAX_OUTPUT},
            )
        if plan.expect_codes and status_code not in plan.expect_codes:
            return "received response code does not match the expected code"
        if plan.expect_body is not None and not matched:
            return "received response body did not match the expected body"
        return ""

    async def _read_body(self, response: aiohttp.ClientResponse, out: _Output, plan: _Plan) -> bool:
        """Copy the body into ``out``; whether ``expectBody`` matched (False if unset)."""
        kept = bytearray()
        overflow = False
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            out.write(chunk)
            if plan.expect_body is not None and not overflow:
                if len(kept) + len(chunk) > _MATCH_LIMIT:
                    overflow = True
                else:
                    kept += chunk
        if plan.expect_body is None:
            return False
        if overflow:
            out.line(
                f"\nWarning: the body exceeds {_MATCH_LIMIT} bytes; expectBody was searched "
                "in its beginning only."
            )
        return plan.expect_body.search(kept.decode("utf-8", "replace")) is not None

    def _acquire(self, key: _ClientKey, config: Mapping[str, str]) -> _Client:
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
        else:
            warnings: list[str] = []
            if key.timeout is None:
                timeout = aiohttp.ClientTimeout(total=None)
            else:
                timeout = aiohttp.ClientTimeout(total=key.timeout)
            context = _ssl_context(config, warnings)
            # Dkron's transport: 20 connections per host, idle connections dropped after 30 s.
            connector = aiohttp.TCPConnector(
                ssl=context, limit=100, limit_per_host=20, keepalive_timeout=30
            )
            session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=True
            )
            client = _Client(session, warnings)
            self._clients[key] = client
            while len(self._clients) > self._cache_size:
                _, old = self._clients.popitem(last=False)
                old.evicted = True
                if old.users == 0:
                    self._loop.create_task(old.session.close())
        client.users += 1
        return client

    def _release(self, key: _ClientKey, client: _Client) -> None:
        client.users -= 1
        # An evicted session still serving a request is closed when that request ends.
        if client.evicted and client.users == 0:
            self._loop.create_task(client.session.close())

    def close(self) -> None:
        """Close every cached session and stop the loop (the plugin process just exits)."""

        async def close_all() -> None:
            clients, self._clients = list(self._clients.values()), OrderedDict()
            for client in clients:
                await client.session.close()

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def main() -> None:
    serve(HttpExecutor())


if __name__ == "__main__":
    main()
