"""Dkron's plugin side over go-plugin: serve with Dkron's cookie and environment."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NoReturn

from plugin_sdk.goplugin import DEFAULT_MAX_WORKERS, Registrar, serve
from plugin_sdk.protocol.handshake import DKRON_HANDSHAKE

__all__ = ["LOG_LEVEL_ENV", "NETWORK_ENV", "serve_plugin"]

# Set to "tcp" to listen on 127.0.0.1 instead of a unix socket.
NETWORK_ENV = "DKRON_PLUGIN_NETWORK"
# The plugin's log level (hclog records on stderr, relayed into the agent's log).
LOG_LEVEL_ENV = "DKRON_PLUGIN_LOG_LEVEL"

# go-plugin's text, and where to go instead.
_NOT_A_HOST = """\
This binary is a plugin. These are not meant to be executed directly.
Please execute the program that consumes these plugins, which will
load any plugins automatically (for dkron-py: `dkronctl plugins exec NAME`,
or drop this file into a plugins.d directory of a running agent).
"""


def serve_plugin(
    register: Registrar,
    *,
    versions: Iterable[int] = (1,),
    network: str | None = None,
    max_workers: int = DEFAULT_MAX_WORKERS,
) -> NoReturn:
    """Serve a Dkron plugin until the host shuts it down; never returns."""
    serve(
        register,
        handshake=DKRON_HANDSHAKE,
        versions=versions,
        network=network or os.environ.get(NETWORK_ENV, "unix"),
        max_workers=max_workers,
        log_level=os.environ.get(LOG_LEVEL_ENV, "INFO"),
        not_a_host=_NOT_A_HOST,
    )
