"""Dkron's target selection for a job run (reference §3 "Target selection")."""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Iterable, Mapping

from .gossip import MemberInfo

__all__ = ["clean_tags", "select_targets"]

# strconv.Atoi: optional sign, ASCII digits only, within int64 (Go's int on 64-bit).
_ATOI = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _atoi(text: str) -> int | None:
    if not _ATOI.fullmatch(text):
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def clean_tags(tags: Mapping[str, str]) -> tuple[dict[str, str], int]:
    """Job tags without their ``:count`` suffix, and the lowest count given.

    ``"v:N"`` matches ``v`` and limits the run to N nodes; with no count anywhere the
    limit is ``sys.maxsize``; a count that is not an integer counts as 0 (no node). A
    value with more than one ``:`` matches its first segment and carries no count.
    """
    cardinality = sys.maxsize
    bare: dict[str, str] = {}
    for key, value in tags.items():
        parts = value.split(":")
        bare[key] = parts[0]
        if len(parts) == 2:
            count = _atoi(parts[1])
            cardinality = min(cardinality, 0 if count is None else count)
    return bare, cardinality


def _qualifies(member: MemberInfo, bare_tags: Mapping[str, str], region: str) -> bool:
    # A tag the node lacks reads as "", as a Go map lookup does.
    return (
        member.status == "alive"
        and member.tags.get("region", "") == region
        and all(member.tags.get(key, "") == value for key, value in bare_tags.items())
    )


def select_targets(
    members: Iterable[MemberInfo],
    job_tags: Mapping[str, str] | None,
    region: str,
    rng: random.Random | None = None,
) -> list[MemberInfo]:
    """The nodes a run of a job with ``job_tags`` goes to.

    Alive nodes of ``region`` carrying every tag (AND); no tags means every alive node
    of the region. If the lowest ``:count`` is at least the number of such nodes all of
    them run it, otherwise ``count`` of them picked uniformly at random; a count <= 0
    selects none.
    """
    bare, cardinality = clean_tags(job_tags or {})
    nodes = [m for m in members if _qualifies(m, bare, region)]
    if cardinality >= len(nodes):
        return nodes
    if cardinality <= 0:
        return []
    pick = rng if rng is not None else random.SystemRandom()
    # Dkron's partial Fisher-Yates: move a random survivor out of the prefix each round.
    for size in range(len(nodes), cardinality, -1):
        chosen = pick.randrange(size)
        nodes[chosen], nodes[size - 1] = nodes[size - 1], nodes[chosen]
    return nodes[:cardinality]
