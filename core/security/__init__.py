"""Node-to-node trust: the cluster key and what is derived from it, per-call RPC
credentials, TLS from the operator's files, and keeping secrets out of sight."""

from core.security.channels import NodeChannels
from core.security.keys import ClusterKey, InvalidKey, parse_cluster_key
from core.security.rpc import Access, CallSigner, CallVerifier, RpcGuard, TokenCheck
from core.security.tls import TlsError, TlsFiles

__all__ = [
    "Access",
    "CallSigner",
    "CallVerifier",
    "ClusterKey",
    "InvalidKey",
    "NodeChannels",
    "RpcGuard",
    "TlsError",
    "TlsFiles",
    "TokenCheck",
    "parse_cluster_key",
]
