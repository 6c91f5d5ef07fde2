"""``dkronctl members``, ``leader`` and ``keygen``."""

from __future__ import annotations

import base64
import os
from typing import Any

import typer

from core.cli.client import (
    DEFAULT_ADDRESS,
    Address,
    ApiError,
    AsJson,
    CaFile,
    DkronClient,
    Token,
    echo_json,
    fail,
    table,
)

__all__ = ["keygen", "leader", "members"]

_KEY_BYTES = 16  # serf also takes 24 or 32; Dkron generates 16


def _row(member: dict[str, Any]) -> list[str]:
    tags = member.get("Tags") or {}
    return [
        str(member.get("Name", "")),
        str(member.get("Addr", "")),
        str(tags.get("rpc_addr", "")),
        str(member.get("statusText", "alive" if member.get("Status") == 1 else "")),
        "server" if tags.get("server") == "true" else "agent",
        str(tags.get("dc", "")),
        str(tags.get("region", "")),
    ]


_HEADER = ["NAME", "ADDR", "RPC ADDR", "STATUS", "ROLE", "DC", "REGION"]


def members(
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """List the cluster's members."""
    try:
        found = (
            DkronClient(address, token=token, ca_file=ca_file).get("/v1/members", "list members")
            or []
        )
    except ApiError as exc:
        fail(str(exc))
    if as_json:
        echo_json(found)
    else:
        typer.echo(table([_row(m) for m in found], _HEADER))


def leader(
    address: Address = DEFAULT_ADDRESS,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Show the current leader."""
    try:
        found = DkronClient(address, token=token, ca_file=ca_file).get("/v1/leader", "get leader")
    except ApiError as exc:
        if exc.status == 500:
            fail("get leader failed: no leader elected")
        fail(str(exc))
    if found is None:
        fail("get leader failed: no leader elected")
    if as_json:
        echo_json(found)
    else:
        row = _row(found)
        typer.echo(table([row[:3] + row[4:]], _HEADER[:3] + _HEADER[4:]))


def keygen() -> None:
    """Print a new gossip encryption key (for --encrypt) on stdout."""
    typer.echo(base64.b64encode(os.urandom(_KEY_BYTES)).decode())
