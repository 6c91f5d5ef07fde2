"""Helpers for the server tests (imported by name; conftest modules shadow each other)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support import finished, free_port, wait_for

from core.node import ServerConfig
from core.plugins.runtime import RuntimeSettings

__all__ = ["finished", "free_port", "server_config", "wait_for"]


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
