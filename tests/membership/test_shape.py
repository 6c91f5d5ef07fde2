"""Dkron's Member JSON shape for /v1/members and /v1/leader."""

from __future__ import annotations

import json
import uuid

import pytest

from core.membership import MemberInfo, member_json

MEMBER_FIELDS = [
    "Name", "Addr", "Port", "Tags", "Status",
    "ProtocolMin", "ProtocolMax", "ProtocolCur", "DelegateMin", "DelegateMax", "DelegateCur",
]  # fmt: skip


def test_member_json_fields_order_and_values() -> None:
    info = MemberInfo("n1", "10.0.0.5", 8946, {"role": "dkron", "server": "true"}, "alive")
    body = member_json(info)
    assert list(body) == [*MEMBER_FIELDS, "id", "statusText"]
    assert body["Name"] == "n1" and body["Addr"] == "10.0.0.5" and body["Port"] == 8946
    assert body["Tags"] == {"role": "dkron", "server": "true"}
    assert (body["Status"], body["statusText"]) == (1, "alive")
    assert [body[k] for k in MEMBER_FIELDS[5:]] == [1, 5, 2, 2, 5, 4]
    assert uuid.UUID(body["id"]).version == 4
    assert member_json(info)["id"] != body["id"]  # a fresh id on every call, as Dkron
    json.dumps(body)  # plain JSON types only


def test_leader_shape_has_no_identity() -> None:
    info = MemberInfo("n1", "10.0.0.5", 8946, {}, "alive")
    assert list(member_json(info, with_identity=False)) == MEMBER_FIELDS


@pytest.mark.parametrize(
    ("status", "code"), [("alive", 1), ("leaving", 2), ("left", 3), ("failed", 4), ("odd", 0)]
)
def test_status_numbers_are_serfs(status: str, code: int) -> None:
    info = MemberInfo("n", "127.0.0.1", 1, {}, status)
    assert info.status_code == code
    body = member_json(info)
    assert body["Status"] == code
    assert body["statusText"] == (status if code else "none")


def test_member_info_is_frozen_and_hashable() -> None:
    info = MemberInfo("n", "127.0.0.1", 1, {"a": "b"}, "alive")
    with pytest.raises(AttributeError):
        info.status = "failed"  # type: ignore[misc]
    same = MemberInfo("n", "127.0.0.1", 1, {"a": "b"}, "alive")
    retagged = MemberInfo("n", "127.0.0.1", 1, {"a": "c"}, "alive")
    assert len({info, same}) == 1  # usable in sets although tags is a dict
    assert info != retagged  # tags still count for equality
