"""``dkronctl agent``'s flags, in-process: each flag reaches its setting, the sources and
spellings Dkron accepts, and the secret-setting handling (the start is stubbed but for one
real agent)."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agent_process import Agent
from typer.testing import CliRunner, Result

import core.cli.agent as agent_module
from core.cli.main import app
from core.config import SECRET_SETTINGS, SETTINGS, AgentConfig, ConfigError, load_config

KEY = base64.b64encode(bytes(range(16))).decode()


def invoke(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[Result, AgentConfig | None]:
    """Run ``dkronctl agent ARGS`` up to the start, which records the config instead."""
    started: list[AgentConfig] = []

    async def run_agent(config: AgentConfig) -> int:
        started.append(config)
        return 0

    monkeypatch.setattr(agent_module, "run_agent", run_agent)
    monkeypatch.setattr(agent_module, "_configure_logging", lambda config: None)
    monkeypatch.setattr(agent_module, "hide_secret_flags", lambda argv: False)
    monkeypatch.chdir(tmp_path)  # no ./config/dkron.yml
    for name in [name for name in os.environ if name.startswith("DKRON_")]:
        monkeypatch.delenv(name)
    result = CliRunner().invoke(app, ["agent", *args], env=env or {})
    return result, started[0] if started else None


def test_every_flag_reaches_its_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, config = invoke(
        monkeypatch,
        tmp_path,
        *("--server", "--bootstrap-expect", "1", "--node-name", "n1"),
        *("--bind-addr", "127.0.0.1:9946", "--advertise-addr", "127.0.0.2"),
        *("--http-addr", "127.0.0.1:9080", "--join", "h:1", "--join", "h:2"),
        *("--retry-join", "r:1", "--retry-interval", "5s", "--retry-max", "3"),
        *("--tag", "a=1", "--tag", "b=2", "--rpc-port", "7000", "--advertise-rpc-port", "7100"),
        *("--data-dir", str(tmp_path / "d"), "--datacenter", "dc9", "--region", "r9"),
        *("--log-level", "debug", "--dev", "--acl-enabled", "--no-auto-tls", "--insecure"),
        *("--strict-job-fields", "--plugin-dir", str(tmp_path / "p"), "--raft-port", "7200"),
        *("--max-history", "7", "--output-limit", "99", "--drain-timeout", "1m"),
        *("--pre-webhook-endpoint", "https://pre.example.com/", "--pre-webhook-payload", "p"),
        *("--pre-webhook-headers", "A: 1", "--pre-webhook-headers", "B: 2"),
        *("--webhook-endpoint", "https://post.example.com/", "--webhook-payload", "w"),
        *("--webhook-headers", "C: 3", "--webhook-on", "failure", "--mail-host", "smtp"),
        *("--mail-port", "2525", "--mail-username", "u", "--mail-from", "f@example.com"),
        *("--mail-payload", "m", "--mail-subject-prefix", "[x] "),
        *("--cronitor-endpoint", "https://cronitor.example.com/", "--disable-http-tls"),
        env={"DKRON_ENCRYPT": KEY},
    )
    assert result.exit_code == 0, result.output
    assert config is not None
    assert (config.server, config.bootstrap_expect, config.node_name) == (True, 1, "n1")
    assert (config.bind_addr, config.advertise_addr) == ("127.0.0.1:9946", "127.0.0.2")
    assert (config.http_addr, config.join, config.retry_join) == (
        "127.0.0.1:9080",
        ("h:1", "h:2"),
        ("r:1",),
    )
    assert (config.retry_interval, config.retry_max) == (5.0, 3)
    assert dict(config.tags) == {"a": "1", "b": "2"}
    assert (config.rpc_port, config.advertise_rpc_port, config.raft_port) == (7000, 7100, 7200)
    assert (config.data_dir, config.datacenter, config.region) == (tmp_path / "d", "dc9", "r9")
    assert (config.log_level, config.dev, config.acl_enabled) == ("debug", True, True)
    assert (config.auto_tls, config.insecure, config.strict_job_fields) == (False, True, True)
    assert config.disable_http_tls is True
    assert config.plugin_dir == tmp_path / "p"
    assert (config.max_history, config.output_limit, config.drain_timeout) == (7, 99, 60.0)
    assert (config.pre_webhook_endpoint, config.pre_webhook_payload) == (
        "https://pre.example.com/",
        "p",
    )
    assert config.pre_webhook_headers == ("A: 1", "B: 2")
    assert (config.webhook_endpoint, config.webhook_payload) == ("https://post.example.com/", "w")
    assert (config.webhook_headers, config.webhook_on) == (("C: 3",), "failure")
    assert (config.mail_host, config.mail_port, config.mail_username) == ("smtp", 2525, "u")
    assert (config.mail_from, config.mail_payload) == ("f@example.com", "m")
    assert config.mail_subject_prefix == "[x] "
    assert config.cronitor_endpoint == "https://cronitor.example.com/"
    assert config.encrypt == KEY


def test_tls_file_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = load_config(
        {
            "cert_file": str(tmp_path / "c.pem"),
            "key_file": str(tmp_path / "k.pem"),
            "trusted_ca_file": str(tmp_path / "ca.pem"),
            "client_cert_auth": True,
            "client_crl_file": str(tmp_path / "crl.pem"),
        },
        env={},
        search_dirs=[tmp_path / "nowhere"],
    )
    assert (config.cert_file, config.key_file) == (tmp_path / "c.pem", tmp_path / "k.pem")
    assert (config.trusted_ca_file, config.client_crl_file) == (
        tmp_path / "ca.pem",
        tmp_path / "crl.pem",
    )
    assert config.client_cert_auth is True


def test_a_bad_flag_value_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result, config = invoke(monkeypatch, tmp_path, "--server", "--rpc-port", "abc")
    assert config is None
    assert result.exit_code == 2
    assert result.output == "dkronctl: invalid value 'abc' for --rpc-port: expected an integer\n"


def test_switches_take_no_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, config = invoke(monkeypatch, tmp_path, "--server=false")
    assert config is None
    assert result.exit_code == 2
    assert "does not take a value" in result.output


def test_auto_tls_is_a_pair(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = ("--join", "h:1")
    for flag, expected in (("--auto-tls", True), ("--no-auto-tls", False), (None, True)):
        result, config = invoke(monkeypatch, tmp_path, *args, *([flag] if flag else []))
        assert result.exit_code == 0, result.output
        assert config is not None and config.auto_tls is expected


def test_secret_flags_are_warned_about_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dkron.agent"):
        result, config = invoke(
            monkeypatch,
            tmp_path,
            *("--join", "h:1", "--encrypt", KEY, "--mail-password", "hunter2"),
        )
    assert result.exit_code == 0, result.output
    assert config is not None and config.mail_password == "hunter2"
    assert "hunter2" not in repr(config) and KEY not in repr(config)
    warnings = [r.getMessage() for r in caplog.records if r.name == "dkron.agent"]
    assert warnings == [
        "--encrypt was given on the command line, which other local users can read while the "
        "process starts: set DKRON_ENCRYPT or put it in the config file instead",
        "--mail-password was given on the command line, which other local users can read "
        "while the process starts: set DKRON_MAIL_PASSWORD or put it in the config file "
        "instead",
    ]
    result, config = invoke(monkeypatch, tmp_path, "--join", "h:1", "--encrypt", "!" + KEY)
    assert result.exit_code == 2
    assert result.output.startswith("dkronctl: invalid value for --encrypt: ")
    assert KEY not in result.output


def test_every_secret_setting_is_redacted_and_scrubbed() -> None:
    # core.security.redact sits below the config and keeps its own list (with the client
    # commands' --token): it must cover every secret setting.
    from core.security.redact import SECRET_ENVIRONMENT, SECRET_FLAGS

    secrets = [spec for spec in SETTINGS if spec.secret]
    assert {spec.name for spec in secrets} == SECRET_SETTINGS == {"encrypt", "mail_password"}
    assert {spec.option for spec in secrets} <= SECRET_FLAGS
    assert {spec.env for spec in secrets} <= SECRET_ENVIRONMENT


def test_help_lists_every_setting_with_its_help(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(app, ["agent", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "Start a dkron-py node. Settings: flag > DKRON_* env var > config file > default." in (
        result.output
    )
    for spec in SETTINGS:
        (line,) = [line for line in lines if line.strip("│ ").startswith(f"{spec.option} ")]
        assert spec.help in line
        assert (spec.metavar or "<bool>") in line
    assert "--no-auto-tls" in result.output
    assert "--config" in result.output


# -- spellings and sections (core.config) -------------------------------------------------


def load(tmp_path: Path, text: str = "", **kwargs: Any) -> AgentConfig:
    kwargs.setdefault("env", {})
    path = tmp_path / "dkron.yml"
    path.write_text(text or "{}\n")
    return load_config(kwargs.pop("flags", {}), config_file=path, **kwargs)


def test_dkron_legacy_spellings_in_file_and_env(tmp_path: Path) -> None:
    config = load(tmp_path, "devmode: true\ntag: [a=1]\nNODE_NAME: upper\n")
    assert (config.dev, dict(config.tags), config.node_name) == (True, {"a": "1"}, "upper")
    config = load(
        tmp_path, env={"DKRON_DEVMODE": "true", "DKRON_TAGS": "b=2", "DKRON_node-name": "x"}
    )
    assert (config.dev, dict(config.tags), config.node_name) == (True, {"b": "2"}, "x")


def test_acl_section_and_its_flat_spellings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load(tmp_path, "acl:\n  enabled: true\n").acl_enabled is True
    assert load(tmp_path, "acl_enabled: true\n").acl_enabled is True
    assert load(tmp_path, env={"DKRON_ACL_ENABLED": "1"}).acl_enabled is True
    with caplog.at_level(logging.WARNING, logger="dkron.config"):
        assert load(tmp_path, "acl:\n  enabled: false\n  bogus: 1\n").acl_enabled is False
    assert "ignoring unknown or unsupported 'acl_bogus'" in caplog.text


def test_known_unsupported_dkron_keys_are_ignored_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "".join(
        f"{key}: 1\n"
        for key in (
            "profile",
            "raft-multiplier",
            "serf_reconnect_timeout",
            "disable-usage-stats",
            "bootstrap",
            "reconcile-interval",
        )
    )
    with caplog.at_level(logging.WARNING, logger="dkron.config"):
        load(tmp_path, text)
    assert caplog.text == ""


def test_unknown_flags_and_their_order_against_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^unknown settings: bogus, other$"):
        load(tmp_path, flags={"bogus": 1, "other": None})
    # A bad value is reported before an unknown name.
    with pytest.raises(ConfigError, match="for --rpc-port"):
        load(tmp_path, flags={"bogus": 1, "rpc_port": "x"})


def test_the_first_bad_setting_in_flag_order_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="for --server"):
        load(tmp_path, flags={"cronitor_endpoint": "ftp://x", "server": "maybe"})
    with pytest.raises(ConfigError, match="for --mail-port"):
        load(tmp_path, flags={"cronitor_endpoint": "ftp://x", "mail_port": "x"})


def test_a_bad_secret_is_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "mail_password: [a, b]\n")
    assert (
        str(caught.value)
        == f"invalid value for mail-password in {tmp_path / 'dkron.yml'}: expected a string"
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={"DKRON_ENCRYPT": "secret-but-bad"})
    assert "secret-but-bad" not in str(caught.value)
    assert str(caught.value).startswith("invalid value for DKRON_ENCRYPT: ")


def test_non_string_file_values_are_shown_as_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "region: [a, b]\n")
    path = tmp_path / "dkron.yml"
    assert (
        str(caught.value) == f'invalid value \'["a", "b"]\' for region in {path}: expected a string'
    )


# -- ui (Dkron's --ui; the UI itself comes with the web UI) -----------------------------


def test_ui_is_on_unless_a_source_turns_it_off(tmp_path: Path) -> None:
    nowhere = [tmp_path / "nowhere"]
    assert load_config({}, env={}, search_dirs=nowhere).ui is True
    assert load_config({}, env={"DKRON_UI": "false"}, search_dirs=nowhere).ui is False
    path = tmp_path / "dkron.yml"
    path.write_text("ui: false\n")
    assert load_config({}, env={}, config_file=path).ui is False
    assert load_config({"ui": "true"}, env={}, config_file=path).ui is True
    with pytest.raises(ConfigError, match=r"^invalid value 'maybe' for --ui: expected true or"):
        load_config({"ui": "maybe"}, env={}, config_file=path)


def test_the_ui_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for args, expected in ((["--ui=false"], False), (["--ui", "true"], True), ([], True)):
        result, config = invoke(monkeypatch, tmp_path, "--join", "h:1", *args)
        assert result.exit_code == 0, result.output
        assert config is not None and config.ui is expected


def test_an_agent_starts_with_ui_off(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    agent.start("--ui=false")
    assert agent.api("/v1/")["agent"]["name"]


def test_the_client_commands_load_no_grpc_or_aiohttp() -> None:
    # dkronctl's client commands import the settings schema; the server's parts (gRPC,
    # aiohttp, the dispatcher) must stay out of it, or every CLI call pays ~0.1 s more.
    import subprocess
    import sys

    probe = (
        "import sys, core.config, core.cli; "
        "bad = [m for m in ('grpc', 'aiohttp', 'core.dispatch') if m in sys.modules]; "
        "sys.exit(', '.join(bad) or None)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, f"loaded: {done.stderr or done.stdout}"
