"""Access control (Dkron Pro's ACLs, in the open build): tokens, policies, checks.

With ``acl.enabled``, every API request and client RPC carries
``Authorization: Bearer <secret>``; management tokens may do anything, client tokens
what their policies' path rules grant. See ``docs/security.md``.
"""

from core.acl._policy import (
    CAPABILITIES,
    DEFAULT_POLICY,
    DEFAULT_POLICY_NAME,
    PolicyError,
    PolicyRules,
    canonical_rules,
    parse_rules,
)
from core.acl._rpc import AclRpcService, token_to_proto
from core.acl._service import AclService, IssuedToken, Refusal, hash_secret

__all__ = [
    "CAPABILITIES",
    "DEFAULT_POLICY",
    "DEFAULT_POLICY_NAME",
    "AclRpcService",
    "AclService",
    "IssuedToken",
    "PolicyError",
    "PolicyRules",
    "Refusal",
    "canonical_rules",
    "hash_secret",
    "parse_rules",
    "token_to_proto",
]
