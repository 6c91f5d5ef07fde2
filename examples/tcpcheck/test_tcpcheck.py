"""The example's tests: the real plugin process, driven through the go-plugin protocol."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugin_sdk.testing import PluginHarness

PLUGIN = [sys.executable, str(Path(__file__).with_name("dkron_tcpcheck.py"))]


@pytest.fixture(scope="module")
def plugin() -> Iterator[PluginHarness]:
    with PluginHarness(PLUGIN, name="tcpcheck") as harness:
        yield harness


def test_open_port_succeeds_and_streams(plugin: PluginHarness) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        result = plugin.execute(host="127.0.0.1", port=str(port))
    assert result.success, result.error
    assert result.output.startswith(f"127.0.0.1:{port} open".encode())
    assert result.updates == [(result.output, False)]


def test_closed_port_fails_with_cause(plugin: PluginHarness) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    result = plugin.execute(host="127.0.0.1", port=str(port), attempts="2", timeout="0.5")
    assert not result.success
    assert result.error.startswith(f"tcpcheck: 127.0.0.1:{port} unreachable")
    assert [is_error for _, is_error in result.updates] == [True, True]


@pytest.mark.parametrize(
    ("config", "message"),
    [({"port": "1"}, "tcpcheck: host is empty"), ({"host": "x", "port": "p"}, "invalid number")],
)
def test_bad_config_is_a_clear_error(
    plugin: PluginHarness, config: dict[str, str], message: str
) -> None:
    result = plugin.execute(config=config)
    assert message in result.error
