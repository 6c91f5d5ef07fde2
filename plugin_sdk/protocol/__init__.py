"""Dkron's layer over go-plugin: its cookie, ``Execute`` and ``Process`` on the host side,
and serving with Dkron's environment on the plugin side.

The protocol itself (handshake, broker, process supervision, client and server) is
:mod:`plugin_sdk.goplugin`, which knows nothing of Dkron.
"""

from plugin_sdk.protocol.client import PluginClient, UpdateCallback
from plugin_sdk.protocol.handshake import DKRON_HANDSHAKE
from plugin_sdk.protocol.server import LOG_LEVEL_ENV, NETWORK_ENV, serve_plugin

__all__ = [
    "DKRON_HANDSHAKE",
    "LOG_LEVEL_ENV",
    "NETWORK_ENV",
    "PluginClient",
    "UpdateCallback",
    "serve_plugin",
]
