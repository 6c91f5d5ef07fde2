"""go-plugin's wire protocol, both ends, in one place.

Handshake, broker, host client and plugin server.
"""

from plugin_sdk.protocol.broker import GRPC_OPTIONS, BrokerClosed, HostBroker, PluginBroker
from plugin_sdk.protocol.client import (
    PluginCallError,
    PluginClient,
    PluginCrashed,
    PluginError,
    PluginStartError,
    PluginTimeout,
)
from plugin_sdk.protocol.handshake import (
    DKRON_HANDSHAKE,
    Handshake,
    HandshakeConfig,
    HandshakeError,
    format_handshake_line,
    parse_handshake_line,
    plugin_environment,
)

__all__ = [
    "DKRON_HANDSHAKE",
    "GRPC_OPTIONS",
    "BrokerClosed",
    "Handshake",
    "HandshakeConfig",
    "HandshakeError",
    "HostBroker",
    "PluginBroker",
    "PluginCallError",
    "PluginClient",
    "PluginCrashed",
    "PluginError",
    "PluginStartError",
    "PluginTimeout",
    "format_handshake_line",
    "parse_handshake_line",
    "plugin_environment",
]
