"""Target selection, the cases of Dkron's agent_test.go and tags_test.go (reference §8)."""

from __future__ import annotations

import random
import sys
from collections import Counter

import pytest

from core.membership import MemberInfo, clean_tags, select_targets


def node(
    name: str, status: str = "alive", region: str | None = "global", **tags: str
) -> MemberInfo:
    all_tags = {"role": "dkron", **tags}
    if region is not None:
        all_tags["region"] = region
    return MemberInfo(name, "127.0.0.1", 8946, all_tags, status)


# Test_getTargetNodes: two servers tagged tag=test, one agent tagged tag=test_client.
CLUSTER = [
    node("s1", server="true", tag="test"),
    node("s2", server="true", tag="test"),
    node("a1", tag="test_client"),
]


def names(members: list[MemberInfo]) -> set[str]:
    return {m.name for m in members}


@pytest.mark.parametrize(
    ("job_tags", "expected"),
    [
        ({"tag": "test:2"}, {"s1", "s2"}),
        ({"tag": "test"}, {"s1", "s2"}),
        (None, {"s1", "s2", "a1"}),
        ({}, {"s1", "s2", "a1"}),
        ({"tag": "test_client:1"}, {"a1"}),
        ({"tag": "test_client"}, {"a1"}),
        ({"tag": "no_such_value"}, set()),
        ({"tag": "test", "missing": "tag"}, set()),
        ({"tag": "test:invalid"}, set()),
        ({"tag": "test:0"}, set()),
        ({"tag": "test:-1"}, set()),
        ({"server": "true:5"}, {"s1", "s2"}),
        ({"region": "global:3"}, {"s1", "s2", "a1"}),
    ],
)
def test_get_target_nodes(job_tags: dict[str, str] | None, expected: set[str]) -> None:
    assert names(select_targets(CLUSTER, job_tags, "global", random.Random(1))) == expected


def test_cardinality_one_picks_one_qualifying_node() -> None:
    for seed in range(20):
        chosen = select_targets(CLUSTER, {"tag": "test:1"}, "global", random.Random(seed))
        assert len(chosen) == 1 and chosen[0].name in {"s1", "s2"}
    reserved = select_targets(CLUSTER, {"server": "true:1"}, "global", random.Random(2))
    assert len(reserved) == 1 and reserved[0].tags["server"] == "true"


def test_lowest_cardinality_across_tags_wins() -> None:
    chosen = select_targets(CLUSTER, {"tag": "test:2", "role": "dkron:1"}, "global")
    assert len(chosen) == 1 and chosen[0].name in {"s1", "s2"}


def test_selection_is_uniform() -> None:
    servers = [node(f"s{i}", server="true") for i in range(3)]
    rng = random.Random(42)
    counts = Counter(
        select_targets(servers, {"server": "true:1"}, "global", rng)[0].name for _ in range(3000)
    )
    assert set(counts) == {"s0", "s1", "s2"}
    assert all(800 <= c <= 1200 for c in counts.values()), counts


def test_pairs_are_uniform_too() -> None:
    servers = [node(f"s{i}") for i in range(4)]
    rng = random.Random(7)
    counts = Counter(
        frozenset(names(select_targets(servers, {"role": "dkron:2"}, "global", rng)))
        for _ in range(6000)
    )
    assert len(counts) == 6  # every 2-subset of 4
    assert all(800 <= c <= 1200 for c in counts.values()), counts


def test_seeded_selection_is_reproducible_and_input_untouched() -> None:
    members = [node(f"n{i}") for i in range(6)]
    original = list(members)
    first = select_targets(members, {"role": "dkron:3"}, "global", random.Random(5))
    again = select_targets(members, {"role": "dkron:3"}, "global", random.Random(5))
    assert first == again and len(first) == 3
    assert members == original
    assert len(select_targets(iter(members), {"role": "dkron:2"}, "global")) == 2


def test_get_qualifying_nodes_alive_same_region_all_tags() -> None:
    members = [
        node("ok", tag="x", other="y"),
        node("failed", status="failed", tag="x", other="y"),
        node("left", status="left", tag="x", other="y"),
        node("leaving", status="leaving", tag="x", other="y"),
        node("elsewhere", region="eu", tag="x", other="y"),
        node("half", tag="x"),
    ]
    assert names(select_targets(members, {"tag": "x", "other": "y"}, "global")) == {"ok"}
    assert names(select_targets(members, None, "global")) == {"ok", "half"}
    # Targeting another region never matches (#1402): the region is the leader's.
    assert select_targets(members, {"region": "eu"}, "global") == []
    assert names(select_targets(members, None, "eu")) == {"elsewhere"}


def test_missing_tag_reads_as_empty_like_a_go_map() -> None:
    members = [node("plain"), node("tagged", foo="bar"), node("noregion", region=None)]
    assert names(select_targets(members, {"foo": ""}, "global")) == {"plain"}
    assert names(select_targets(members, None, "")) == {"noregion"}


def test_select_nodes_cardinality_bounds() -> None:
    members = [node(f"n{i}") for i in range(4)]
    assert select_targets(members, {"role": "dkron:0"}, "global") == []
    assert select_targets(members, {"role": "dkron:-3"}, "global") == []
    assert names(select_targets(members, {"role": "dkron:4"}, "global")) == names(members)
    assert names(select_targets(members, {"role": "dkron:99"}, "global")) == names(members)
    three = select_targets(members, {"role": "dkron:3"}, "global", random.Random(3))
    assert len(three) == 3 and len(names(three)) == 3 and names(three) <= names(members)
    assert select_targets([], {"role": "dkron:0"}, "global") == []
    assert select_targets([], None, "global") == []


@pytest.mark.parametrize(
    ("tags", "bare", "card"),
    [
        ({}, {}, sys.maxsize),
        ({"a": "x"}, {"a": "x"}, sys.maxsize),
        ({"a": "x:3", "b": "y:1", "c": "z"}, {"a": "x", "b": "y", "c": "z"}, 1),
        ({"a": "x:abc"}, {"a": "x"}, 0),
        ({"a": "x:5", "b": "y:nope"}, {"a": "x", "b": "y"}, 0),
        ({"a": "x:"}, {"a": "x"}, 0),
        ({"a": "x: 2"}, {"a": "x"}, 0),
        ({"a": "x:2.0"}, {"a": "x"}, 0),
        ({"a": "x:1_0"}, {"a": "x"}, 0),
        ({"a": "x:\u0663"}, {"a": "x"}, 0),  # Arabic-Indic 3: int() takes it, Atoi does not
        ({"a": "x:+2"}, {"a": "x"}, 2),
        ({"a": "x:007"}, {"a": "x"}, 7),
        ({"a": "x:-4"}, {"a": "x"}, -4),
        ({"a": "x:99999999999999999999"}, {"a": "x"}, 0),  # out of int64: Atoi error
        ({"a": "x:1:2"}, {"a": "x"}, sys.maxsize),  # more than one ':' carries no count
        ({"a": ":3"}, {"a": ""}, 3),
    ],
)
def test_clean_tags(tags: dict[str, str], bare: dict[str, str], card: int) -> None:
    assert clean_tags(tags) == (bare, card)
