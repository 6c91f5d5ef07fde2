"""plugin_sdk.goplugin on its own: another application's cookie and version, no Dkron layer."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from plugin_sdk.goplugin import NOT_A_HOST, Client, HandshakeConfig, PluginStartError

OTHER_APP = HandshakeConfig(protocol_version=3, cookie_key="OTHER_APP_COOKIE", cookie_value="x1")

_PLUGIN = """\
from plugin_sdk.goplugin import HandshakeConfig, serve

serve(
    lambda server, broker: [],
    handshake=HandshakeConfig(3, "OTHER_APP_COOKIE", "x1"),
    versions=(2, 3),
)
"""

WritePlugin = Callable[[str, str], Path]


async def test_a_plugin_with_another_apps_cookie_is_launched_pinged_and_shut_down(
    python_plugin: WritePlugin,
) -> None:
    plugin = python_plugin("other-app-plugin", _PLUGIN)

    client = await Client.launch([str(plugin)], handshake=OTHER_APP, versions=(3,))
    try:
        assert client.handshake is not None and client.handshake.app_version == 3
        assert client.name == "other-app-plugin"
        assert client.log is logging.getLogger("goplugin.other-app-plugin")
        assert Path(client.socket_dir).name.startswith("plugin-")
        assert await client.ping()
    finally:
        await client.shutdown()
    assert client.process.returncode == 0
    assert not Path(client.socket_dir).exists()


async def test_the_wrong_cookie_is_refused_with_go_plugins_text(
    python_plugin: WritePlugin,
) -> None:
    plugin = python_plugin("other-app-plugin", _PLUGIN)
    wrong = HandshakeConfig(3, "OTHER_APP_COOKIE", "not-it")

    with pytest.raises(PluginStartError, match="exited before we could connect"):
        await Client.launch([str(plugin)], handshake=wrong, versions=(3,), start_timeout=10)

    by_hand = subprocess.run([str(plugin)], capture_output=True, text=True, timeout=30)
    assert by_hand.returncode == 1 and by_hand.stderr == NOT_A_HOST
