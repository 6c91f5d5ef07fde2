"""Helpers for the server tests (imported by name; conftest modules shadow each other)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from support import finished, wait_for

from core.node import ServerConfig
from core.plugins.runtime import RuntimeSettings

__all__ = ["finished", "free_port", "server_config", "wait_for"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_config(data_dir: Path, raft_port: int, **overrides: Any) -> ServerConfig:
    plugins = RuntimeSettings(plugin_dir=data_dir / "plugins", load_entry_points=False)
    return ServerConfig(
        node_name="node1",
        data_dir=data_dir,
        rpc_port=0,
        raft_port=raft_port,
        plugins=plugins,
        **overrides,
    )
