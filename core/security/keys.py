"""The cluster key (``--encrypt``) and what is derived from it.

One base64 key, as ``dkronctl keygen`` prints it, serves three purposes; each gets its
own subkey so a secret used by one protocol never appears in another:

- Raft: pysyncobj's password (AES-128 + HMAC, Fernet) for every frame between servers;
- gossip: the HMAC secret signing every SWIM packet;
- RPC: the HMAC key of per-call credentials on node-to-node gRPC (``core.security.rpc``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["ClusterKey", "InvalidKey", "parse_cluster_key"]


class InvalidKey(ValueError):
    """The key is not base64 of 16, 24 or 32 bytes."""


def parse_cluster_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise InvalidKey("expected a base64 key (see dkronctl keygen)") from None
    if len(key) not in (16, 24, 32):
        raise InvalidKey(f"the key is {len(key)} bytes; it must be 16, 24 or 32")
    return key


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)


@dataclass(frozen=True)
class ClusterKey:
    """The decoded ``--encrypt`` key; ``repr`` never shows it."""

    text: str = field(repr=False)
    raw: bytes = field(repr=False, init=False)
    rpc: bytes = field(repr=False, init=False)
    raft_password: str = field(repr=False, init=False)
    gossip_secret: bytes = field(repr=False, init=False)

    def __post_init__(self) -> None:
        raw = parse_cluster_key(self.text)
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "rpc", _derive(raw, b"dkron-py rpc call credentials v1"))
        raft = base64.b64encode(_derive(raw, b"dkron-py raft v1")).decode()
        object.__setattr__(self, "raft_password", raft)
        object.__setattr__(self, "gossip_secret", _derive(raw, b"dkron-py gossip v1"))
