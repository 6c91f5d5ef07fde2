"""ACL policy documents (Dkron Pro's JSON) and matching request paths against them.

A policy is ``{"path": {"<glob>": {"capabilities": [...]}}}``. In a glob, ``*`` matches
within one path segment, ``**`` across segments and ``?`` one character of a segment;
a request is allowed when any rule whose glob matches its path grants the capability.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "CAPABILITIES",
    "DEFAULT_POLICY",
    "DEFAULT_POLICY_NAME",
    "PolicyError",
    "PolicyRules",
    "canonical_rules",
    "parse_rules",
]

CAPABILITIES = ("create", "read", "update", "delete", "list")
DEFAULT_POLICY_NAME = "default"
# Dkron Pro's default policy (website/docs/pro/acls.md), shipped so bootstrap needs no file.
DEFAULT_POLICY: dict[str, Any] = {
    "path": {
        "/v1/members": {"capabilities": ["read"]},
        "/v1/jobs": {"capabilities": ["list", "read", "create", "update", "delete"]},
        "/v1/jobs/*": {"capabilities": ["create", "read", "update", "delete"]},
        "/v1/jobs/*/run": {"capabilities": ["create"]},
        "/v1/jobs/*/toggle": {"capabilities": ["create"]},
        "/v1/jobs/*/executions*": {"capabilities": ["read"]},
        "/v1/jobs/*/executions/*": {"capabilities": ["read"]},
        "/v1/leader": {"capabilities": ["read"]},
        "/v1/isleader": {"capabilities": ["read"]},
        "/v1/leave": {"capabilities": ["create"]},
        "/v1/restore": {"capabilities": ["create"]},
        "/v1/busy": {"capabilities": ["read"]},
    }
}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class PolicyError(ValueError):
    """A policy document or name is malformed; the message says where."""


@dataclass(frozen=True)
class PolicyRules:
    """A parsed policy: ``(compiled glob, capabilities)`` per path rule."""

    rules: tuple[tuple[re.Pattern[str], frozenset[str]], ...]

    def grants(self, path: str, capability: str) -> bool:
        return any(capability in caps and glob.fullmatch(path) for glob, caps in self.rules)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise PolicyError(f"invalid policy name {name!r}: 1-128 letters, digits, '_', '-' or '.'")
    return name


@lru_cache(maxsize=4096)
def _compile(glob: str) -> re.Pattern[str]:
    out = []
    index = 0
    while index < len(glob):
        char = glob[index]
        if glob.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out))


def _load(document: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(document, str | bytes):
        try:
            loaded = json.loads(document)
        except ValueError as exc:
            raise PolicyError(f"the policy is not JSON: {exc}") from None
    else:
        loaded = document
    if not isinstance(loaded, Mapping):
        raise PolicyError('a policy is a JSON object: {"path": {"<glob>": {...}}}')
    return loaded


def parse_rules(document: str | bytes | Mapping[str, Any]) -> PolicyRules:
    loaded = _load(document)
    unknown = set(loaded) - {"path"}
    if unknown or "path" not in loaded:
        hint = " (do not wrap it in a 'rules' object)" if "rules" in loaded else ""
        raise PolicyError(f"a policy must have 'path' at its top level and nothing else{hint}")
    paths = loaded["path"]
    if not isinstance(paths, Mapping):
        raise PolicyError("'path' must map globs to rules")
    compiled = []
    for glob, rule in paths.items():
        if not isinstance(glob, str) or not glob.startswith("/"):
            raise PolicyError(f"path {glob!r} must be a string starting with '/'")
        if not isinstance(rule, Mapping) or set(rule) != {"capabilities"}:
            raise PolicyError(f'path {glob!r}: expected {{"capabilities": [...]}}')
        capabilities = rule["capabilities"]
        if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
            raise PolicyError(f"path {glob!r}: capabilities must be a list of strings")
        bad = [c for c in capabilities if c not in CAPABILITIES]
        if bad:
            raise PolicyError(
                f"path {glob!r}: unknown capability {bad[0]!r} (one of {', '.join(CAPABILITIES)})"
            )
        compiled.append((_compile(glob), frozenset(capabilities)))
    return PolicyRules(tuple(compiled))


def canonical_rules(document: str | bytes | Mapping[str, Any]) -> str:
    """The document checked and written canonically (sorted keys), as it is stored."""
    parse_rules(document)
    return json.dumps(_load(document), sort_keys=True, separators=(",", ":"))


def union(rules: Iterable[PolicyRules]) -> PolicyRules:
    return PolicyRules(tuple(rule for policy in rules for rule in policy.rules))
