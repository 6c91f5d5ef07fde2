"""The server's parts: the leader's work, the job service, membership lookups, cluster
formation and the RPC service. :mod:`core.node` wires them into a node.

``DkronServer`` and ``ServerConfig`` are still importable from here (loaded on first
use, since core.node imports this package's modules)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.server.cluster import ClusterView, form_raft_group, maintain_peers, reconcile_peers
from core.server.jobs import JobService, LeaderLink
from core.server.leader import Launcher, Leader
from core.server.members import VERSION, Membership
from core.server.rpc import RPC_ACCESS, DkronRpcService, RpcBackend, acl_token_check

if TYPE_CHECKING:
    from core.node import DkronServer, ServerConfig

__all__ = [
    "RPC_ACCESS",
    "VERSION",
    "ClusterView",
    "DkronRpcService",
    "DkronServer",
    "JobService",
    "Launcher",
    "Leader",
    "LeaderLink",
    "Membership",
    "RpcBackend",
    "ServerConfig",
    "acl_token_check",
    "form_raft_group",
    "maintain_peers",
    "reconcile_peers",
]


def __getattr__(name: str) -> Any:
    if name in ("DkronServer", "ServerConfig"):
        import core.node

        return getattr(core.node, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
