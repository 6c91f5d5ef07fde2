"""go-plugin's magic-cookie handshake: the launch environment and the first stdout line.

Both sides live here so the host and the plugin cannot drift apart: the plugin
formats the line with :func:`format_handshake_line`, the host validates it with
:func:`parse_handshake_line` in go-plugin's order (core version, app version,
network, protocol) and with go-plugin's error texts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "CORE_PROTOCOL_VERSION",
    "Handshake",
    "HandshakeConfig",
    "HandshakeError",
    "format_handshake_line",
    "negotiate_app_version",
    "parse_handshake_line",
    "plugin_environment",
]

CORE_PROTOCOL_VERSION = 1
# go-plugin only trusts field 6 as a certificate when it is longer than this.
_CERT_MIN_LENGTH = 50


@dataclass(frozen=True)
class HandshakeConfig:
    """go-plugin's ``HandshakeConfig``: the application's protocol version and magic cookie."""

    protocol_version: int
    cookie_key: str
    cookie_value: str


class HandshakeError(Exception):
    """The plugin's first stdout line is missing, malformed or incompatible."""


@dataclass(frozen=True)
class Handshake:
    core_version: int
    app_version: int
    network: str  # "unix" | "tcp"
    address: str
    protocol: str  # "grpc" | "netrpc"
    server_cert: str = ""
    multiplex: bool | None = None

    @property
    def target(self) -> str:
        """The gRPC target for this address."""
        return f"unix:{self.address}" if self.network == "unix" else self.address


def plugin_environment(
    config: HandshakeConfig,
    versions: Iterable[int] = (1,),
    base: Mapping[str, str] | None = None,
    min_port: int = 10000,
    max_port: int = 25000,
) -> dict[str, str]:
    """The environment a host gives a plugin: its own, then go-plugin's variables on top."""
    env = dict(os.environ if base is None else base)
    env[config.cookie_key] = config.cookie_value
    env["PLUGIN_MIN_PORT"] = str(min_port)
    env["PLUGIN_MAX_PORT"] = str(max_port)
    env["PLUGIN_PROTOCOL_VERSIONS"] = ",".join(str(v) for v in versions)
    return env


def negotiate_app_version(supported: Iterable[int], offered: str) -> int:
    """go-plugin's choice: the highest version both sides know, else our lowest."""
    ours = sorted(set(supported))
    theirs: set[int] = set()
    for part in offered.split(","):
        try:
            theirs.add(int(part.strip()))
        except ValueError:
            continue
    common = [v for v in ours if v in theirs]
    return common[-1] if common else ours[0]


def format_handshake_line(
    app_version: int,
    network: str,
    address: str,
    protocol: str = "grpc",
    multiplex_requested: bool = False,
) -> str:
    """The plugin's first stdout line, newline included. Field 6 (cert) stays empty."""
    fields = [str(CORE_PROTOCOL_VERSION), str(app_version), network, address, protocol, ""]
    if multiplex_requested:
        fields.append("false")  # we never multiplex; a host that insists refuses us clearly
    return "|".join(fields) + "\n"


def parse_handshake_line(
    line: str,
    host_versions: Iterable[int] = (1,),
    allowed_protocols: Iterable[str] = ("grpc",),
) -> Handshake:
    """Validate a handshake line in go-plugin's order; raise HandshakeError on the first fault."""
    stripped = line.strip()
    parts = stripped.split("|")
    if len(parts) < 4:
        raise HandshakeError(
            f"Unrecognized remote plugin message: {stripped!r}. This usually means the "
            "plugin was not built for this host, or printed something to stdout before "
            "its handshake."
        )
    try:
        core = int(parts[0])
    except ValueError:
        core = -1
    if core != CORE_PROTOCOL_VERSION:
        raise HandshakeError(
            f"incompatible core API version with plugin. Plugin version: {parts[0]}, "
            f"Core version: {CORE_PROTOCOL_VERSION}"
        )
    versions = sorted(set(host_versions))
    try:
        app = int(parts[1])
    except ValueError as exc:
        raise HandshakeError(f"error parsing plugin API version {parts[1]!r}: {exc}") from None
    if app not in versions:
        raise HandshakeError(
            f"incompatible API version with plugin. Plugin version: {app}, "
            f"Client versions: {versions}"
        )
    network, address = parts[2], parts[3]
    if network == "unix":
        if not address:
            raise HandshakeError("plugin announced an empty unix socket path")
    elif network == "tcp":
        _host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise HandshakeError(f"plugin announced an invalid tcp address {address!r}")
    else:
        raise HandshakeError(f"unknown address type {network!r} in plugin handshake")
    protocol = parts[4] if len(parts) > 4 and parts[4] else "netrpc"
    allowed = list(allowed_protocols)
    if protocol not in allowed:
        raise HandshakeError(f'unsupported plugin protocol "{protocol}". Supported: {allowed}')
    cert = parts[5] if len(parts) > 5 else ""
    if len(cert) > _CERT_MIN_LENGTH:
        raise HandshakeError(
            "plugin requires AutoMTLS (it sent a server certificate), which this host "
            "does not negotiate"
        )
    multiplex = None
    if len(parts) > 6:
        multiplex = parts[6] == "true"
    return Handshake(core, app, network, address, protocol, cert, multiplex)
