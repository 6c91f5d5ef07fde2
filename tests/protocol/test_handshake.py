"""Unit tests of the handshake line and launch environment (go-plugin §2-§4)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugin_sdk.goplugin import (
    HandshakeConfig,
    HandshakeError,
    format_handshake_line,
    negotiate_app_version,
    parse_handshake_line,
    plugin_environment,
)
from plugin_sdk.protocol import DKRON_HANDSHAKE

# -- format (plugin side) -----------------------------------------------------------------


def test_format_is_go_plugins_six_fields_with_empty_cert() -> None:
    assert format_handshake_line(1, "unix", "/tmp/x") == "1|1|unix|/tmp/x|grpc|\n"


def test_format_adds_multiplex_false_only_when_requested() -> None:
    assert format_handshake_line(1, "unix", "/tmp/x", multiplex_requested=True) == (
        "1|1|unix|/tmp/x|grpc||false\n"
    )
    assert format_handshake_line(1, "tcp", "127.0.0.1:10000", multiplex_requested=False) == (
        "1|1|tcp|127.0.0.1:10000|grpc|\n"
    )


def test_format_carries_the_negotiated_app_version() -> None:
    assert format_handshake_line(3, "unix", "/tmp/x").startswith("1|3|unix|")


# -- parse (host side) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("1|1|unix|/tmp/p|grpc", ("unix", "/tmp/p", "grpc", "", None)),
        ("1|1|unix|/tmp/p|grpc|", ("unix", "/tmp/p", "grpc", "", None)),
        ("1|1|unix|/tmp/p|grpc||false", ("unix", "/tmp/p", "grpc", "", False)),
        ("1|1|unix|/tmp/p|grpc||true", ("unix", "/tmp/p", "grpc", "", True)),
        ("  1|1|tcp|127.0.0.1:10001|grpc|\r\n", ("tcp", "127.0.0.1:10001", "grpc", "", None)),
    ],
)
def test_parse_accepts_five_to_seven_fields(
    line: str, fields: tuple[str, str, str, str, bool | None]
) -> None:
    parsed = parse_handshake_line(line)
    assert (parsed.core_version, parsed.app_version) == (1, 1)
    assert (
        parsed.network,
        parsed.address,
        parsed.protocol,
        parsed.server_cert,
        parsed.multiplex,
    ) == fields


def test_parse_accepts_four_fields_when_netrpc_is_allowed() -> None:
    parsed = parse_handshake_line("1|1|unix|/tmp/p", allowed_protocols=("netrpc",))
    assert parsed.protocol == "netrpc"


def test_target_for_each_network() -> None:
    assert parse_handshake_line("1|1|unix|/tmp/p|grpc|").target == "unix:/tmp/p"
    assert parse_handshake_line("1|1|tcp|127.0.0.1:9|grpc|").target == "127.0.0.1:9"


def test_short_cert_field_is_legacy_filler() -> None:
    filler = "c" * 50
    assert parse_handshake_line(f"1|1|unix|/tmp/p|grpc|{filler}").server_cert == filler


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "Unrecognized remote plugin message"),
        ("hello world", "Unrecognized remote plugin message: 'hello world'"),
        ("1|1|unix", "Unrecognized remote plugin message"),
        ("2|1|unix|/tmp/p|grpc|", "incompatible core API version with plugin. Plugin version: 2"),
        ("x|1|unix|/tmp/p|grpc|", "incompatible core API version"),
        (
            "1|2|unix|/tmp/p|grpc|",
            "incompatible API version with plugin. Plugin version: 2, Client versions: [1]",
        ),
        ("1|one|unix|/tmp/p|grpc|", "error parsing plugin API version 'one'"),
        ("1|1|udp|host:1|grpc|", "unknown address type 'udp'"),
        ("1|1|unix||grpc|", "empty unix socket path"),
        ("1|1|tcp|localhost|grpc|", "invalid tcp address 'localhost'"),
        ("1|1|unix|/tmp/p", "unsupported plugin protocol \"netrpc\". Supported: ['grpc']"),
        ("1|1|unix|/tmp/p|", 'unsupported plugin protocol "netrpc"'),
        ("1|1|unix|/tmp/p|netrpc|", 'unsupported plugin protocol "netrpc"'),
        ("1|1|unix|/tmp/p|grpc|" + "A" * 51, "AutoMTLS"),
    ],
)
def test_parse_rejects_with_go_plugins_messages(line: str, message: str) -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_handshake_line(line)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("line", "first_fault"),
    [
        # Everything is wrong: the core version is reported first.
        ("9|9|udp|x|netrpc|" + "A" * 60, "core API version"),
        # Core fine: the app version is next, before network/protocol/cert.
        ("1|9|udp|x|netrpc|" + "A" * 60, "incompatible API version"),
        ("1|1|udp|x|netrpc|" + "A" * 60, "unknown address type"),
        ("1|1|unix|/tmp/p|netrpc|" + "A" * 60, "unsupported plugin protocol"),
        ("1|1|unix|/tmp/p|grpc|" + "A" * 60, "AutoMTLS"),
    ],
)
def test_validation_order_is_go_plugins(line: str, first_fault: str) -> None:
    with pytest.raises(HandshakeError, match=first_fault):
        parse_handshake_line(line)


def test_host_versions_decide_the_app_version() -> None:
    assert parse_handshake_line("1|2|unix|/tmp/p|grpc|", host_versions=(1, 2)).app_version == 2
    with pytest.raises(HandshakeError, match=r"Client versions: \[2, 3\]"):
        parse_handshake_line("1|1|unix|/tmp/p|grpc|", host_versions=(3, 2))


def test_allowed_protocols_are_the_hosts_choice() -> None:
    with pytest.raises(HandshakeError, match=r'"grpc". Supported: \[\'netrpc\'\]'):
        parse_handshake_line("1|1|unix|/tmp/p|grpc|", allowed_protocols=("netrpc",))


# -- properties -----------------------------------------------------------------------------

_no_pipes = st.text(alphabet=st.characters(blacklist_characters="|"), max_size=40)
_path_chars = string.ascii_letters + string.digits + "/._-"


@given(st.lists(_no_pipes, min_size=1, max_size=3))
def test_fewer_than_four_fields_is_unrecognized(fields: list[str]) -> None:
    with pytest.raises(HandshakeError, match="Unrecognized remote plugin message"):
        parse_handshake_line("|".join(fields))


@given(
    app=st.integers(min_value=1, max_value=50),
    path=st.text(alphabet=_path_chars, min_size=1, max_size=100).map(lambda p: "/" + p),
    multiplex=st.booleans(),
)
def test_unix_format_then_parse_round_trips(app: int, path: str, multiplex: bool) -> None:
    line = format_handshake_line(app, "unix", path, multiplex_requested=multiplex)
    parsed = parse_handshake_line(line, host_versions=(app,))
    assert (parsed.core_version, parsed.app_version) == (1, app)
    assert (parsed.network, parsed.address, parsed.protocol) == ("unix", path, "grpc")
    assert parsed.server_cert == ""
    assert parsed.multiplex is (False if multiplex else None)


@given(port=st.integers(min_value=0, max_value=65535))
def test_tcp_format_then_parse_round_trips(port: int) -> None:
    parsed = parse_handshake_line(format_handshake_line(1, "tcp", f"127.0.0.1:{port}"))
    assert parsed.target == f"127.0.0.1:{port}"


# -- app version negotiation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("supported", "offered", "chosen"),
    [
        ((1,), "1", 1),
        ((1, 2, 3), "2,3", 3),
        ((1, 2, 3), "3,1", 3),
        ((1, 2), " 2 , 9 ", 2),
        ((2, 3), "1", 2),  # nothing in common: our lowest, and the host reports the mismatch
        ((2, 3), "", 2),
        ((1, 2), "x,2", 2),
    ],
)
def test_negotiate_app_version(supported: tuple[int, ...], offered: str, chosen: int) -> None:
    assert negotiate_app_version(supported, offered) == chosen


# -- launch environment -------------------------------------------------------------------------


def test_plugin_environment_defaults_for_dkron() -> None:
    env = plugin_environment(DKRON_HANDSHAKE, base={"PATH": "/bin", "HOME": "/root"})
    assert env == {
        "PATH": "/bin",
        "HOME": "/root",
        "DKRON_PLUGIN_MAGIC_COOKIE": DKRON_HANDSHAKE.cookie_value,
        "PLUGIN_MIN_PORT": "10000",
        "PLUGIN_MAX_PORT": "25000",
        "PLUGIN_PROTOCOL_VERSIONS": "1",
    }


def test_plugin_environment_overrides_inherited_values() -> None:
    inherited = {
        "DKRON_PLUGIN_MAGIC_COOKIE": "stale",
        "PLUGIN_MIN_PORT": "1",
        "PLUGIN_MAX_PORT": "2",
        "PLUGIN_PROTOCOL_VERSIONS": "7,8",
        "KEEP": "me",
    }
    env = plugin_environment(
        HandshakeConfig(2, "DKRON_PLUGIN_MAGIC_COOKIE", "fresh"),
        versions=(1, 2),
        base=inherited,
        min_port=3000,
        max_port=3005,
    )
    assert env["DKRON_PLUGIN_MAGIC_COOKIE"] == "fresh"
    assert (env["PLUGIN_MIN_PORT"], env["PLUGIN_MAX_PORT"]) == ("3000", "3005")
    assert env["PLUGIN_PROTOCOL_VERSIONS"] == "1,2"
    assert env["KEEP"] == "me"
    assert inherited["PLUGIN_MIN_PORT"] == "1"  # the caller's mapping is not modified


def test_plugin_environment_inherits_os_environ_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DKRONPY_TEST_MARKER", "inherited")
    monkeypatch.setenv("PLUGIN_PROTOCOL_VERSIONS", "99")
    env = plugin_environment(DKRON_HANDSHAKE)
    assert env["DKRONPY_TEST_MARKER"] == "inherited"
    assert env["PLUGIN_PROTOCOL_VERSIONS"] == "1"
