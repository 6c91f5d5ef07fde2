"""The server's parts: the leader's work, the job service, membership lookups, cluster
formation and the RPC service. :mod:`core.node` wires them into a node."""

from __future__ import annotations

from core.server.cluster import ClusterView, form_raft_group, maintain_peers, reconcile_peers
from core.server.jobs import JobService, LeaderLink
from core.server.leader import Launcher, Leader
from core.server.members import Membership
from core.server.rpc import RPC_ACCESS, DkronRpcService, RpcBackend, acl_token_check

__all__ = [
    "RPC_ACCESS",
    "ClusterView",
    "DkronRpcService",
    "JobService",
    "Launcher",
    "Leader",
    "LeaderLink",
    "Membership",
    "RpcBackend",
    "acl_token_check",
    "form_raft_group",
    "maintain_peers",
    "reconcile_peers",
]
