"""Dkron's Member JSON (serf.Member plus ``id`` and ``statusText``; reference §2)."""

from __future__ import annotations

import uuid
from typing import Any

from .gossip import MemberInfo

__all__ = ["member_json"]

_STATUS_TEXT = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}


def member_json(m: MemberInfo, *, with_identity: bool = True) -> dict[str, Any]:
    """``m`` as GET /v1/members shows it; without identity as GET /v1/leader does.

    The protocol and delegate versions are the constants a current serf reports. ``id``
    is a fresh random UUID on every call, as in Dkron.
    """
    code = m.status_code
    member: dict[str, Any] = {
        "Name": m.name,
        "Addr": m.addr,
        "Port": m.port,
        "Tags": dict(m.tags),
        "Status": code,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }
    if with_identity:
        member["id"] = str(uuid.uuid4())
        member["statusText"] = _STATUS_TEXT.get(code, "none")
    return member
