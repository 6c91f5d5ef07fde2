"""TLS with the operator's certificates (Dkron Pro's flags): HTTPS for the API, TLS on
the RPC port, client certificates when asked for; the node still runs its jobs."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from agent_process import ZERO_TIME, Agent, run_cli, wait_for
from attacks import CLUSTER_KEY
from certs import Pki, make_pki

pytestmark = pytest.mark.timeout(120)


def _tls_flags(pki: Pki, *extra: str) -> list[str]:
    return [
        "--cert-file", str(pki.server_cert), "--key-file", str(pki.server_key),
        "--trusted-ca-file", str(pki.ca), *extra,
    ]  # fmt: skip


def _https(
    agent: Agent, pki: Pki, path: str, *, client_cert: bool, body: bytes | None = None
) -> object:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    request = urllib.request.Request(
        f"https://127.0.0.1:{agent.http_port}{path}", data=body,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        data = response.read()
    return json.loads(data) if data.strip() else None


def test_https_api_and_tls_rpc_with_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    agent = Agent(tmp_path)
    agent.ssl = ssl.create_default_context(cafile=str(pki.ca))
    agent.ssl.load_cert_chain(pki.client_cert, pki.client_key)
    try:
        agent.start(*_tls_flags(pki, "--client-cert-auth"), env={"DKRON_ENCRYPT": CLUSTER_KEY})
        assert "API https://127.0.0.1:" in agent.stdout()
        # Plain HTTP gets nowhere; HTTPS without a client certificate neither.
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{agent.http_port}/v1/jobs", timeout=5)
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _https(agent, pki, "/v1/jobs", client_cert=False)
        assert _https(agent, pki, "/v1/jobs", client_cert=True) == []

        # The node dials its own agent over TLS with its certificate: jobs still run.
        job = {"name": "over-tls", "schedule": "@manually", "executor": "shell",
               "executor_config": {"command": "echo tls-run"}}  # fmt: skip
        _https(agent, pki, "/v1/jobs", client_cert=True, body=json.dumps(job).encode())
        _https(agent, pki, "/v1/jobs/over-tls/run", client_cert=True, body=b"")

        def finished() -> list[dict[str, object]]:
            runs = _https(agent, pki, "/v1/jobs/over-tls/executions", client_cert=True)
            assert isinstance(runs, list)
            return [r for r in runs if r["finished_at"] != ZERO_TIME]

        done = wait_for(finished)
        assert done[0]["success"] and "tls-run" in str(done[0]["output"])

        # The CLI over TLS, with the operator's client certificate.
        rpc = f"127.0.0.1:{agent.rpc_port}"
        tls = ["--trusted-ca-file", str(pki.ca), "--cert-file", str(pki.client_cert),
               "--key-file", str(pki.client_key)]  # fmt: skip
        peers = run_cli(
            "raft", "list-peers", "--rpc-addr", rpc, "--json", *tls, address=None,
            home=tmp_path, env={"DKRON_ENCRYPT": CLUSTER_KEY},
        )  # fmt: skip
        assert len(peers.json()["servers"]) == 1
        plain = run_cli(
            "raft", "list-peers", "--rpc-addr", rpc, address=None, home=tmp_path, check=False,
            env={"DKRON_ENCRYPT": CLUSTER_KEY},
        )  # fmt: skip
        assert plain.code == 1 and "cannot reach a server" in plain.stderr
    finally:
        agent.kill9()


def test_the_cli_speaks_https_with_a_ca_file_and_disable_http_tls_turns_it_off(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)
    agent = Agent(tmp_path)
    agent.ssl = ssl.create_default_context(cafile=str(pki.ca))
    try:
        agent.start(*_tls_flags(pki), env={"DKRON_ENCRYPT": CLUSTER_KEY})
        address = f"https://127.0.0.1:{agent.http_port}"
        listed = run_cli("jobs", "list", "--ca-file", str(pki.ca), address=address, home=tmp_path)
        assert "no jobs" in listed.stdout
        untrusted = run_cli("jobs", "list", address=address, home=tmp_path, check=False)
        assert untrusted.code == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    finally:
        agent.kill9()

    plain = Agent(tmp_path / "plain")
    plain.workdir.mkdir()
    try:
        plain.start(*_tls_flags(pki, "--disable-http-tls"), env={"DKRON_ENCRYPT": CLUSTER_KEY})
        assert "API http://127.0.0.1:" in plain.stdout()
        assert plain.api("/v1/jobs") == []
    finally:
        plain.kill9()


def test_half_a_tls_configuration_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    agent = Agent(tmp_path)
    for flags, message in (
        (["--cert-file", str(pki.server_cert)], "--cert-file and --key-file go together"),
        (["--cert-file", str(pki.server_cert), "--key-file", str(pki.server_key),
          "--client-cert-auth"], "--client-cert-auth needs --trusted-ca-file"),
        (["--cert-file", str(pki.ca), "--key-file", str(pki.server_key)],
         "cannot load --cert-file"),
        (["--cert-file", str(tmp_path / "missing.pem"), "--key-file", str(pki.server_key)],
         "missing.pem"),
    ):  # fmt: skip
        result = run_cli(*agent.argv(*flags)[1:], address=None, home=tmp_path, check=False)
        assert result.code == 2, (flags, result)
        assert message in result.stderr, (flags, result.stderr)
