"""The builtin http executor, driven through the real plugin binary against real servers."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support import installed_script

from builtin_plugins.http import MAX_OUTPUT, HttpExecutor
from plugin_sdk import ExecuteRequest
from plugin_sdk.testing import ExecutionResult, PluginHarness

BIG_BODY = bytes(range(256)) * 1200  # 307,200 bytes: more than the output keeps


@dataclass
class Seen:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class BackgroundServer:
    """An aiohttp server on its own loop and thread, so blocking harness calls never stall it."""

    ssl_context: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None

    @property
    def base(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_route("*", "/echo/{name}", self._echo)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/hang", self._hang)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/big", self._big)
        app.router.add_get("/whoami", self._whoami)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        assert self._release is not None and self._runner is not None
        self._release.set()  # lets a /hang handler end so cleanup need not wait for it
        await self._runner.cleanup()

    async def _record(self, request: web.Request) -> Seen:
        seen = Seen(request.method, request.path, await request.read(), dict(request.headers))
        self.seen.append(seen)
        return seen

    async def _echo(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        payload = {
            "method": seen.method,
            "path": seen.path,
            "body": seen.body.decode(),
            "headers": seen.headers,
        }
        return web.json_response(payload)

    async def _status(self, request: web.Request) -> web.Response:
        await self._record(request)
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code} body")

    async def _hang(self, request: web.Request) -> web.Response:
        await self._record(request)
        assert self._release is not None
        await self._release.wait()  # set only at teardown: the client's timeout must fire
        return web.Response(text="too late")

    async def _redirect(self, request: web.Request) -> web.Response:
        await self._record(request)
        raise web.HTTPFound("/echo/redirected")

    async def _big(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(BIG_BODY), 10_000):  # several chunks, like a real stream
            await response.write(BIG_BODY[start : start + 10_000])
        await response.write_eof()
        return response

    async def _whoami(self, request: web.Request) -> web.Response:
        await self._record(request)
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport else None
        subject = dict(item[0] for item in peer["subject"]) if peer else {}
        return web.Response(text=f"client={subject.get('commonName', 'none')}")


def body_json(result: ExecutionResult) -> dict[str, Any]:
    """The echo server's JSON: the last output line (warnings come before the body)."""
    return json.loads(result.output.decode().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    background = BackgroundServer().start()
    yield background
    background.stop()


@pytest.fixture(scope="module")
def plugin() -> Iterator[PluginHarness]:
    with PluginHarness(installed_script("dkron-executor-http")) as harness:
        yield harness


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there any more


# -- required keys, method, body -----------------------------------------------------------


def test_url_is_required(plugin: PluginHarness) -> None:
    result = plugin.execute(method="GET")
    assert result.error == "url is empty"


def test_method_is_required(plugin: PluginHarness, server: BackgroundServer) -> None:
    result = plugin.execute(url=f"{server.base}/echo/no-method")
    assert result.error == "method is empty"
    assert not server.requests_to("/echo/no-method")


def test_relative_url_is_rejected(plugin: PluginHarness) -> None:
    result = plugin.execute(method="GET", url="example.com/path")
    assert "invalid url 'example.com/path'" in result.error
    assert "http://" in result.error


def test_invalid_method_is_rejected(plugin: PluginHarness, server: BackgroundServer) -> None:
    result = plugin.execute(method="G E T", url=f"{server.base}/echo/bad-method")
    assert result.error == "invalid method 'G E T'"
    assert not server.requests_to("/echo/bad-method")


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_method_and_body_reach_the_server(
    plugin: PluginHarness, server: BackgroundServer, method: str
) -> None:
    result = plugin.execute(method=method, url=f"{server.base}/echo", body=f"payload for {method}")
    assert result.success, result.error
    echoed = body_json(result)
    assert echoed["method"] == method
    assert echoed["body"] == f"payload for {method}"


def test_output_is_streamed_to_the_host(plugin: PluginHarness, server: BackgroundServer) -> None:
    result = plugin.execute(method="GET", url=f"{server.base}/echo")
    assert result.success
    assert result.updates, "the body should reach the host while the request runs"
    assert b"".join(chunk for chunk, _ in result.updates) == result.output
    assert not any(is_error for _, is_error in result.updates)


def test_output_keeps_the_last_256000_bytes(
    plugin: PluginHarness, server: BackgroundServer
) -> None:
    result = plugin.execute(method="GET", url=f"{server.base}/big")
    assert result.success, result.error
    assert len(result.output) == MAX_OUTPUT == 256_000
    assert result.output == BIG_BODY[-MAX_OUTPUT:]


# -- headers ---------------------------------------------------------------------------------


def test_headers_keep_colons_in_values(plugin: PluginHarness, server: BackgroundServer) -> None:
    headers = json.dumps(["X-Time: 12:30:45", "Authorization: Basic dXNlcjpwYXNz", "X-Plain:v"])
    result = plugin.execute(method="GET", url=f"{server.base}/echo", headers=headers)
    assert result.success, result.error
    sent = body_json(result)["headers"]
    assert sent["X-Time"] == "12:30:45"
    assert sent["Authorization"] == "Basic dXNlcjpwYXNz"
    assert sent["X-Plain"] == "v"


def test_header_without_colon_is_skipped_and_plugin_survives(
    plugin: PluginHarness, server: BackgroundServer
) -> None:
    headers = json.dumps(["NoColonHere", "X-Kept: yes"])
    result = plugin.execute(method="GET", url=f"{server.base}/echo/nocolon", headers=headers)
    assert result.success, result.error
    text = result.output.decode()
    assert "Warning: header 'NoColonHere' has no \":\"" in text
    sent = body_json(result)["headers"]
    assert sent["X-Kept"] == "yes"
    assert "NoColonHere" not in sent

    again = plugin.execute(method="GET", url=f"{server.base}/echo/after")
    assert again.success, again.error
    assert body_json(again)["path"] == "/echo/after"


@pytest.mark.parametrize(
    ("entry", "warning"),
    [
        ("Bad Name: v", "Warning: header 'Bad Name: v' has an invalid name 'Bad Name'; skipped."),
        (": v", "Warning: header ': v' has an invalid name ''; skipped."),
        ("X-Split: a\r\nX-Injected: 1", "Warning: header 'X-Split' has a line break or NUL"),
    ],
)
def test_malformed_header_entries_are_skipped(
    plugin: PluginHarness, server: BackgroundServer, entry: str, warning: str
) -> None:
    headers = json.dumps([entry, "X-Kept: yes"])
    result = plugin.execute(method="GET", url=f"{server.base}/echo", headers=headers)
    assert result.success, result.error
    assert result.output.decode().startswith(warning)
    sent = body_json(result)["headers"]
    assert sent["X-Kept"] == "yes"
    assert "X-Injected" not in sent and "X-Split" not in sent


def test_bad_headers_json_is_reported_and_request_goes_on(
    plugin: PluginHarness, server: BackgroundServer
) -> None:
    result = plugin.execute(method="POST", url=f"{server.base}/echo/badjson", headers="[not json")
    assert result.success, result.error
    assert result.output.decode().startswith("Error: parsing headers failed")
    assert len(server.requests_to("/echo/badjson")) == 1


def test_headers_that_are_not_strings_are_reported(
    plugin: PluginHarness, server: BackgroundServer
) -> None:
    result = plugin.execute(
        method="GET", url=f"{server.base}/echo", headers=json.dumps({"X-A": "b"})
    )
    assert result.success, result.error
    assert result.output.decode().startswith("Error: parsing headers failed: expected a JSON")
    assert "X-A" not in body_json(result)["headers"]


# -- expectCode / expectBody -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expect", "ok"),
    [
        (200, "200", True),
        (206, "200,206", True),
        (206, "200, 206", True),
        (500, "", True),  # empty: any status succeeds
        (404, "", True),
        (500, "200", False),
        (200, "201,202", False),
        (200, ",200,", True),
    ],
)
def test_expect_code(
    plugin: PluginHarness, server: BackgroundServer, status: int, expect: str, ok: bool
) -> None:
    result = plugin.execute(method="GET", url=f"{server.base}/status/{status}", expectCode=expect)
    assert result.output == f"status {status} body".encode()
    if ok:
        assert result.success, result.error
    else:
        assert result.error == "received response code does not match the expected code"


@pytest.mark.parametrize(
    ("expect", "culprit"),
    [("200,ok", "ok"), ("1200", "1200"), ("20", "20"), ("2xx", "2xx")],  # Dkron: substring test
)
def test_invalid_expect_code_fails_before_the_request(
    plugin: PluginHarness, server: BackgroundServer, expect: str, culprit: str
) -> None:
    result = plugin.execute(method="GET", url=f"{server.base}/status/299", expectCode=expect)
    assert result.error.startswith(f"invalid expectCode {expect!r}")
    assert f"{culprit!r} is not an HTTP status code" in result.error
    assert not server.requests_to("/status/299")


def test_expect_body_match(plugin: PluginHarness, server: BackgroundServer) -> None:
    result = plugin.execute(method="GET", url=f"{server.base}/status/200", expectBody=r"status \d+")
    assert result.success, result.error
    assert result.output == b"status 200 body"


def test_expect_body_mismatch(plugin: PluginHarness, server: BackgroundServer) -> None:
    result = plugin.execute(method="GET", url=f"{server.base}/status/200", expectBody="^success$")
    assert result.error == "received response body did not match the expected body"
    assert result.output == b"status 200 body"


def test_invalid_expect_body_regex(plugin: PluginHarness, server: BackgroundServer) -> None:
    result = plugin.execute(method="GET", url=f"{server.base}/status/298", expectBody="(unclosed")
    assert result.error.startswith("invalid expectBody regular expression '(unclosed'")
    assert "missing )" in result.error
    assert not server.requests_to("/status/298")


# -- timeout, redirects, connection errors ---------------------------------------------------


def test_timeout_does_not_block_other_executions(
    plugin: PluginHarness, server: BackgroundServer
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        hanging = pool.submit(plugin.execute, method="GET", url=f"{server.base}/hang", timeout="1")
        # The plugin's single loop must keep serving while one request waits.
        quick = plugin.execute(method="GET", url=f"{server.base}/echo/meanwhile")
        assert quick.success, quick.error
        assert not hanging.done()
        result = hanging.result(timeout=30)
    assert "timeout exceeded" in result.error
    assert f"GET {server.base}/hang" in result.error
    assert "1 s" in result.error


@pytest.mark.parametrize("value", ["soon", "-3", "1.5"])
def test_invalid_timeout_warns_and_uses_default(
    plugin: PluginHarness, server: BackgroundServer, value: str
) -> None:
    result = plugin.execute(method="GET", url=f"{server.base}/echo", timeout=value)
    assert result.success, result.error
    first = result.output.decode().splitlines()[0]
    assert first.startswith(f"Warning: invalid timeout value: {value!r}")
    assert first.endswith("using default value of 30.")


def test_redirect_is_followed(plugin: PluginHarness, server: BackgroundServer) -> None:
    result = plugin.execute(method="GET", url=f"{server.base}/redirect", expectCode="200")
    assert result.success, result.error
    assert body_json(result)["path"] == "/echo/redirected"


def test_connection_refused_is_clear(plugin: PluginHarness, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/nothing"
    result = plugin.execute(method="GET", url=url)
    assert result.error == f"GET {url}: cannot connect to 127.0.0.1:{closed_port}: " + (
        "Connection refused"
    )


# -- debug -----------------------------------------------------------------------------------


def test_debug_prefixes_config_with_secrets_redacted(
    plugin: PluginHarness, server: BackgroundServer
) -> None:
    secret = "s3cr3t-t0ken"
    url = f"http://user:pw-{secret}@127.0.0.1:{server.port}/echo/debug"
    headers = json.dumps([f"Authorization: Bearer {secret}", "X-Trace: visible"])
    result = plugin.execute(method="GET", url=url, headers=headers, debug="true")
    assert result.success, result.error
    first, _, rest = result.output.decode().partition("\n")
    assert first.startswith("Config: ")
    assert secret not in first
    shown = json.loads(first.removeprefix("Config: "))
    assert shown["method"] == "GET"
    assert shown["url"] == f"http://user:%3Credacted%3E@127.0.0.1:{server.port}/echo/debug"
    assert json.loads(shown["headers"]) == ["Authorization: <redacted>", "X-Trace: visible"]
    # As in Go, the explicit Authorization header wins over credentials in the URL.
    assert json.loads(rest)["headers"]["Authorization"] == f"Bearer {secret}"


def test_url_credentials_become_basic_auth(plugin: PluginHarness, server: BackgroundServer) -> None:
    result = plugin.execute(method="GET", url=f"http://alice:wonder@127.0.0.1:{server.port}/echo")
    assert result.success, result.error
    expected = "Basic " + base64.b64encode(b"alice:wonder").decode()
    assert body_json(result)["headers"]["Authorization"] == expected


def test_errors_do_not_reveal_url_passwords(plugin: PluginHarness, closed_port: int) -> None:
    result = plugin.execute(method="GET", url=f"http://bob:hunter2@127.0.0.1:{closed_port}/")
    assert "cannot connect" in result.error
    assert "hunter2" not in result.error
    assert f"http://bob:%3Credacted%3E@127.0.0.1:{closed_port}/" in result.error


# -- TLS -------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=30
    )


def _issue(
    folder: Path, name: str, subject: str, extensions: str, ca: Path, ca_key: Path
) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}{s}" for s in (".key", ".csr", ".pem", ".ext"))
    ext.write_text(extensions)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", csr, "-subj", subject, cwd=folder)  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-days", "2", "-out", cert, "-extfile", ext, cwd=folder)  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=dkron-py test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip
    common = (
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    server_cert, server_key = _issue(
        folder,
        "server",
        "/CN=127.0.0.1",
        common + "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
        ca,
        ca_key,
    )
    client_cert, client_key = _issue(
        folder, "client", "/CN=job-runner", common + "extendedKeyUsage=clientAuth\n", ca, ca_key
    )
    return Pki(ca, server_cert, server_key, client_cert, client_key)


def _server_context(pki: Pki, require_client: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client:
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture(scope="module")
def https_server(pki: Pki) -> Iterator[BackgroundServer]:
    background = BackgroundServer(ssl_context=_server_context(pki, False)).start()
    yield background
    background.stop()


@pytest.fixture(scope="module")
def mtls_server(pki: Pki) -> Iterator[BackgroundServer]:
    background = BackgroundServer(ssl_context=_server_context(pki, True)).start()
    yield background
    background.stop()


def test_tls_default_verification_rejects_unknown_ca(
    plugin: PluginHarness, https_server: BackgroundServer
) -> None:
    url = f"{https_server.base}/status/200"
    result = plugin.execute(method="GET", url=url)
    assert result.error.startswith(f"GET {url}: TLS certificate verification failed")
    assert "tlsRootCAsFile" in result.error


def test_tls_root_cas_file_is_trusted(
    plugin: PluginHarness, https_server: BackgroundServer, pki: Pki
) -> None:
    result = plugin.execute(
        method="GET", url=f"{https_server.base}/status/200", tlsRootCAsFile=str(pki.ca)
    )
    assert result.success, result.error
    assert result.output == b"status 200 body"


def test_tls_no_verify_peer(plugin: PluginHarness, https_server: BackgroundServer) -> None:
    result = plugin.execute(
        method="GET", url=f"{https_server.base}/status/200", tlsNoVerifyPeer="true"
    )
    assert result.success, result.error
    assert result.output == b"status 200 body"


def test_tls_invalid_no_verify_peer_value_warns(
    plugin: PluginHarness, https_server: BackgroundServer
) -> None:
    result = plugin.execute(
        method="GET", url=f"{https_server.base}/status/200", tlsNoVerifyPeer="sure"
    )
    assert "Warning: not disabling certificate validation: 'sure' is not a boolean" in (
        result.output.decode()
    )
    assert "TLS certificate verification failed" in result.error


def test_tls_missing_ca_file_warns(
    plugin: PluginHarness, https_server: BackgroundServer, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    result = plugin.execute(
        method="GET", url=f"{https_server.base}/status/200", tlsRootCAsFile=str(missing)
    )
    assert result.output.decode() == (
        "Warning: using system root CAs instead of configured CAs: "
        f"{missing}: No such file or directory.\n"
    )
    assert "TLS certificate verification failed" in result.error


def test_tls_ca_file_without_certificates_warns(
    plugin: PluginHarness, https_server: BackgroundServer, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    result = plugin.execute(
        method="GET", url=f"{https_server.base}/status/200", tlsRootCAsFile=str(empty)
    )
    assert result.output.decode().startswith(
        f"Warning: using system root CAs instead of configured CAs: {empty}: "
    )
    assert "TLS certificate verification failed" in result.error


def test_tls_client_certificate(
    plugin: PluginHarness, mtls_server: BackgroundServer, pki: Pki
) -> None:
    url = f"{mtls_server.base}/whoami"
    result = plugin.execute(
        method="GET",
        url=url,
        tlsRootCAsFile=str(pki.ca),
        tlsCertificateFile=str(pki.client_cert),
        tlsCertificateKeyFile=str(pki.client_key),
    )
    assert result.success, result.error
    assert result.output == b"client=job-runner"

    refused = plugin.execute(method="GET", url=url, tlsRootCAsFile=str(pki.ca))
    assert refused.error.startswith(f"GET {url}: ")
    # Whether the server's rejection reads as a disconnect or a reset, the cause is named.
    assert refused.error.endswith(
        "(if the server requires a client certificate, set tlsCertificateFile "
        "and tlsCertificateKeyFile)"
    )
    assert refused.output == b""


def test_tls_bad_client_certificate_warns(
    plugin: PluginHarness, https_server: BackgroundServer, pki: Pki, tmp_path: Path
) -> None:
    result = plugin.execute(
        method="GET",
        url=f"{https_server.base}/status/200",
        tlsRootCAsFile=str(pki.ca),
        tlsCertificateFile=str(tmp_path / "missing-client.pem"),
        tlsCertificateKeyFile=str(pki.client_key),
    )
    assert result.success, result.error
    assert result.output.decode() == (
        "Warning: not using client certificate: No such file or directory.\nstatus 200 body"
    )


# -- the session cache, in process ----------------------------------------------------------


class _Collect:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def update(self, chunk: bytes | str, is_error: bool = False) -> int:
        self.chunks.append(chunk if isinstance(chunk, bytes) else chunk.encode())
        return 0


def test_session_cache_evicts_and_closes_least_recently_used(server: BackgroundServer) -> None:
    executor = HttpExecutor(cache_size=2)
    sessions = []

    def run(timeout: str) -> None:
        config = {"method": "GET", "url": f"{server.base}/status/200", "timeout": timeout}
        result = executor.execute(ExecuteRequest("cache", config), _Collect())
        assert result.error == "" and result.output == b"status 200 body"

    run("5")
    first = next(iter(executor._clients.values())).session
    sessions.append(first)
    run("6")
    run("5")  # touches the first session: it is now the most recently used
    run("7")  # evicts the session for "6"
    cached = [client.session for client in executor._clients.values()]
    sessions.extend(cached)
    assert len(cached) == 2
    assert first in cached
    run("5")
    assert len(executor._clients) == 2 and first in [c.session for c in executor._clients.values()]
    run("8")
    run("9")  # two newer keys push "5" out
    assert first not in [c.session for c in executor._clients.values()]
    # The close runs as a task on the executor's loop: poll for it with a deadline.
    deadline = time.monotonic() + 5
    while not first.closed and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert first.closed
    executor.close()
    assert all(session.closed for session in sessions)


def test_client_key_without_certificate_warns(
    plugin: PluginHarness, server: BackgroundServer, pki: Pki
) -> None:
    result = plugin.execute(
        method="GET", url=f"{server.base}/status/200", tlsCertificateKeyFile=str(pki.client_key)
    )
    assert result.success, result.error
    assert result.output.decode() == (
        "Warning: not using client certificate: tlsCertificateKeyFile is set but "
        "tlsCertificateFile is not.\nstatus 200 body"
    )
