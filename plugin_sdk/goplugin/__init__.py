"""hashicorp/go-plugin's gRPC protocol, both ends, with no application in it.

The host launches a plugin with :meth:`Client.launch` (magic cookie, protocol
negotiation, handshake line, connection, GRPCBroker stream, stderr/GRPCStdio relay)
and ends it with :meth:`Client.shutdown` or :meth:`Client.kill`, which also end
every process the plugin started. The plugin calls :func:`serve` from ``main``
(cookie check, listener, health, GRPCBroker, GRPCController, GRPCStdio, reflection,
handshake line). The application's services, cookie and messages are the caller's:
Dkron's live in :mod:`plugin_sdk.protocol`.

Modules are private (``_client``, ``_server``, ``_broker``, ``_handshake``,
``_hclog``, ``_tree``); this package's ``__all__`` is the supported surface.
"""

from plugin_sdk.goplugin._broker import (
    DIAL_TIMEOUT,
    GRPC_OPTIONS,
    BrokerClosed,
    HostBroker,
    PluginBroker,
)
from plugin_sdk.goplugin._client import (
    DEFAULT_RECEIVE_LIMIT,
    Client,
    PluginCallError,
    PluginCrashed,
    PluginError,
    PluginStartError,
    PluginTimeout,
)
from plugin_sdk.goplugin._handshake import (
    CORE_PROTOCOL_VERSION,
    Handshake,
    HandshakeConfig,
    HandshakeError,
    format_handshake_line,
    negotiate_app_version,
    parse_handshake_line,
    plugin_environment,
)
from plugin_sdk.goplugin._server import DEFAULT_MAX_WORKERS, NOT_A_HOST, Registrar, serve

__all__ = [
    "CORE_PROTOCOL_VERSION",
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_RECEIVE_LIMIT",
    "DIAL_TIMEOUT",
    "GRPC_OPTIONS",
    "NOT_A_HOST",
    "BrokerClosed",
    "Client",
    "Handshake",
    "HandshakeConfig",
    "HandshakeError",
    "HostBroker",
    "PluginBroker",
    "PluginCallError",
    "PluginCrashed",
    "PluginError",
    "PluginStartError",
    "PluginTimeout",
    "Registrar",
    "format_handshake_line",
    "negotiate_app_version",
    "parse_handshake_line",
    "plugin_environment",
    "serve",
]
