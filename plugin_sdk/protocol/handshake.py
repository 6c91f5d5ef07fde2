"""Dkron's go-plugin handshake: the cookie every Dkron plugin and host share."""

from __future__ import annotations

from plugin_sdk.goplugin import HandshakeConfig

__all__ = ["DKRON_HANDSHAKE"]

DKRON_HANDSHAKE = HandshakeConfig(
    protocol_version=1,
    cookie_key="DKRON_PLUGIN_MAGIC_COOKIE",
    cookie_value="b29a76488b6f3ca7955c5f769b50641f0fcd88748d8cedecda313d516320ca19",
)
