"""ACL tokens and policies over the replicated store, and the checks every request goes
through when ACLs are on. Writes are store commands, so a revocation holds on every
server as soon as it is applied there."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from core.acl._policy import (
    DEFAULT_POLICY,
    DEFAULT_POLICY_NAME,
    PolicyError,
    PolicyRules,
    canonical_rules,
    check_name,
    parse_rules,
    union,
)
from core.store.commands import (
    ACL_TOKEN_TYPES,
    AclBootstrap,
    AclPolicy,
    AclToken,
    Command,
    DeleteAclPolicy,
    DeleteAclToken,
    SetAclPolicy,
    SetAclToken,
)
from core.store.state import StoreState

__all__ = ["AclService", "IssuedToken", "Refusal", "hash_secret"]

MANAGEMENT = "management"
CLIENT = "client"


def hash_secret(secret: str) -> str:
    # Secrets are 122 random bits (UUID4): a plain hash cannot be reversed or guessed.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: the only moment its secret is known."""

    secret: str
    token: AclToken


@dataclass(frozen=True)
class Refusal:
    status: int  # 401: who are you? 403: not allowed
    reason: str


@lru_cache(maxsize=1024)
def _rules(text: str) -> PolicyRules:
    return parse_rules(text)


class AclService:
    def __init__(
        self,
        state: StoreState,
        apply: Callable[[Command], Awaitable[Any]],
        *,
        enabled: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._state = state
        self._apply = apply
        self.enabled = enabled
        self._clock = clock

    # -- checks ----------------------------------------------------------------------------

    def resolve(self, secret: str | None) -> AclToken | None:
        if not secret:
            return None
        return self._state.acl_tokens_by_hash.get(hash_secret(secret))

    def check(
        self, secret: str | None, path: str | None, capabilities: Sequence[str]
    ) -> Refusal | None:
        """None if the bearer of ``secret`` may use any of ``capabilities`` on ``path``
        (``path`` None: management tokens only)."""
        if not self.enabled:
            return None
        if not self._state.acl_bootstrapped:
            return Refusal(
                401, "ACLs are enabled but not bootstrapped: run `dkronctl acl bootstrap`"
            )
        if not secret:
            return Refusal(401, "ACL token missing: send the header Authorization: Bearer <secret>")
        token = self.resolve(secret)
        if token is None:
            return Refusal(401, "ACL token not found: it was revoked or is not of this cluster")
        if token.type == MANAGEMENT:
            return None
        if path is None:
            return Refusal(403, f"token {token.name!r} is not a management token")
        rules = union(
            _rules(policy.rules)
            for name in token.policies
            if (policy := self._state.acl_policies.get(name)) is not None
        )
        if any(rules.grants(path, capability) for capability in capabilities):
            return None
        return Refusal(403, f"token {token.name!r} may not {' or '.join(capabilities)} {path}")

    # -- reads -----------------------------------------------------------------------------

    def policies(self) -> list[AclPolicy]:
        return sorted(self._state.acl_policies.values(), key=lambda p: p.name)

    def policy(self, name: str) -> AclPolicy | None:
        return self._state.acl_policies.get(name)

    def tokens(self) -> list[AclToken]:
        return sorted(self._state.acl_tokens.values(), key=lambda t: (t.create_time, t.name))

    def token(self, accessor_id: str) -> AclToken | None:
        return self._state.acl_tokens.get(accessor_id)

    # -- writes ----------------------------------------------------------------------------

    def _issue(self, name: str, kind: str, policies: Sequence[str]) -> IssuedToken:
        secret = str(uuid.uuid4())
        token = AclToken(
            accessor_id=str(uuid.uuid4()),
            secret_hash=hash_secret(secret),
            name=name,
            type=kind,
            policies=tuple(policies),
            create_time=self._clock(),
        )
        return IssuedToken(secret, token)

    async def bootstrap(self) -> IssuedToken:
        """The first management token (name ``bootstrap``, policy ``default``), once."""
        issued = self._issue("bootstrap", MANAGEMENT, [DEFAULT_POLICY_NAME])
        policy = AclPolicy(DEFAULT_POLICY_NAME, canonical_rules(DEFAULT_POLICY))
        await self._apply(AclBootstrap(issued.token, policy))
        return issued

    async def apply_policy(self, name: str, document: str | bytes | dict[str, Any]) -> AclPolicy:
        policy = AclPolicy(check_name(name), canonical_rules(document))
        await self._apply(SetAclPolicy(policy))
        return policy

    async def delete_policy(self, name: str) -> None:
        await self._apply(DeleteAclPolicy(name))

    async def create_token(self, name: str, kind: str, policies: Sequence[str]) -> IssuedToken:
        name = name.strip()
        if not name:
            raise PolicyError("a token needs a name (-n NAME)")
        if kind not in ACL_TOKEN_TYPES:
            raise PolicyError(f"token type must be client or management, not {kind!r}")
        if kind == MANAGEMENT:
            policies = ()  # a management token is allowed everything
        missing = [p for p in policies if p not in self._state.acl_policies]
        if missing:
            raise PolicyError(f"no such policy: {', '.join(missing)}")
        if kind == CLIENT and not policies:
            raise PolicyError("a client token needs at least one policy (-p NAME)")
        issued = self._issue(name, kind, policies)
        await self._apply(SetAclToken(issued.token))
        return issued

    async def delete_token(self, accessor_id: str) -> AclToken:
        token: AclToken = await self._apply(DeleteAclToken(accessor_id))
        return token
