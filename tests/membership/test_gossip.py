"""Gossip membership with real nodes exchanging UDP/TCP packets on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from gossip_helpers import FAIL_DEADLINE, FAST, MakeNode, free_port, gossip_child, status_of, view
from support import wait_for

from core.membership import Gossip, MemberInfo


def all_alive(nodes: list[Gossip], names: set[str]) -> bool:
    return all({m.name for m in node.members() if m.status == "alive"} == names for node in nodes)


async def cluster(make_node: MakeNode, count: int) -> list[Gossip]:
    """``count`` nodes n0..n{count-1}, each joined through n0 only."""
    nodes = [await make_node(f"n{i}", tags={"role": "dkron", "i": str(i)}) for i in range(count)]
    for node in nodes[1:]:
        node.join([nodes[0].address])
    names = {f"n{i}" for i in range(count)}
    await wait_for(lambda: all_alive(nodes, names), timeout=5)
    return nodes


async def test_formation_through_one_seed_shows_everyone_with_tags(make_node: MakeNode) -> None:
    nodes = await cluster(make_node, 5)
    for node in nodes:
        members = node.members()
        assert [m.name for m in members] == ["n0", "n1", "n2", "n3", "n4"]
        for i, member in enumerate(members):
            host, port = nodes[i].address.rsplit(":", 1)
            assert (member.addr, member.port) == (host, int(port))
            assert member.tags == {"role": "dkron", "i": str(i)}
            assert (member.status, member.status_code) == ("alive", 1)
        assert node.local() == members[nodes.index(node)]


async def test_lone_node_keeps_running_and_accepts_a_later_join(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dkron.membership")
    first = await make_node("first")
    # Several failure-detection rounds with nobody to ping (the library asserts there).
    dead = f"127.0.0.1:{free_port()}"
    assert await first.join_wait([dead], timeout=5 * FAST["ping_interval"]) == 0
    assert [m.name for m in first.members()] == ["first"]
    second = await make_node("second")
    assert await second.join_wait([first.address], timeout=3) == 1
    await wait_for(lambda: all_alive([first, second], {"first", "second"}), timeout=5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_unanswered_seed_is_not_listed(make_node: MakeNode) -> None:
    node = await make_node("n0")
    dead = f"127.0.0.1:{free_port()}"
    node.join([dead])
    assert await node.join_wait([dead], timeout=0.3) == 0
    assert [m.name for m in node.members()] == ["n0"]


async def test_tag_update_reaches_everyone_and_fires_on_change(make_node: MakeNode) -> None:
    nodes = await cluster(make_node, 3)
    seen: list[MemberInfo] = []
    nodes[0].on_change(seen.append)
    nodes[2].set_tags({"role": "dkron", "i": "2", "zone": "b"})
    await wait_for(lambda: all(view(n)["n2"].tags.get("zone") == "b" for n in nodes), timeout=5)
    await wait_for(lambda: any(m.name == "n2" and m.tags.get("zone") == "b" for m in seen))
    assert all(m.status == "alive" for m in seen)


async def test_on_change_reports_join_failure_and_leave(make_node: MakeNode) -> None:
    watcher = await make_node("watcher")
    events: list[tuple[str, str]] = []
    watcher.on_change(lambda m: events.append((m.name, m.status)))
    a = await make_node("a")
    b = await make_node("b")
    a.join([watcher.address])
    b.join([watcher.address])
    await wait_for(lambda: ("a", "alive") in events and ("b", "alive") in events, timeout=5)
    await a.leave()
    await wait_for(lambda: ("a", "left") in events, timeout=5)
    await b.close()
    await wait_for(lambda: ("b", "failed") in events, timeout=FAIL_DEADLINE)
    # One event per change, not one per gossip packet.
    assert events.count(("a", "left")) == 1
    assert events.count(("b", "failed")) == 1


async def test_on_change_callback_error_is_logged_and_others_still_run(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = await make_node("watcher")
    seen: list[str] = []

    def broken(member: MemberInfo) -> None:
        raise RuntimeError("callback bug")

    watcher.on_change(broken)
    watcher.on_change(lambda m: seen.append(m.name))
    other = await make_node("other")
    other.join([watcher.address])
    await wait_for(lambda: "other" in seen, timeout=5)
    assert any("on_change callback" in r.getMessage() for r in caplog.records)


async def test_leave_is_seen_as_left_by_the_others(make_node: MakeNode) -> None:
    nodes = await cluster(make_node, 4)
    leaving = nodes[3]
    started = time.monotonic()
    await leaving.leave(timeout=2.0)
    # leave() waits for every alive member's ack, so they already know.
    assert time.monotonic() - started < 2.0
    for node in nodes[:3]:
        member = view(node)["n3"]
        assert (member.status, member.status_code) == ("left", 3)
    assert leaving.local().status == "left"
    await leaving.leave()  # idempotent
    await leaving.close()


async def test_leave_with_an_unreachable_peer_gives_up_after_timeout(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = await cluster(make_node, 3)
    # n2 vanishes without a word; n0 leaves before noticing and cannot get n2's ack.
    await nodes[2].close()
    started = time.monotonic()
    await nodes[0].leave(timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 2.0
    assert status_of(nodes[1], "n0") == "left"
    assert any("leave not acknowledged" in r.getMessage() for r in caplog.records)


async def test_closed_node_becomes_failed(make_node: MakeNode) -> None:
    nodes = await cluster(make_node, 4)
    await nodes[3].close()
    await wait_for(
        lambda: all(status_of(n, "n3") == "failed" for n in nodes[:3]), timeout=FAIL_DEADLINE
    )
    assert view(nodes[0])["n3"].status_code == 4
    assert {m.name for m in nodes[1].members() if m.status == "alive"} == {"n0", "n1", "n2"}


_CHILD = """
import asyncio, sys
from core.membership import Gossip

async def main() -> None:
    node = Gossip(node_name="child", bind_host="127.0.0.1", bind_port=int(sys.argv[1]),
                  tags={"kind": "subprocess"}, ping_interval=0.2, ping_timeout=0.1,
                  suspect_timeout=1.0, sync_interval=0.1)
    await node.start()
    print("joined", await node.join_wait([sys.argv[2]], timeout=10), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_process_killed_with_sigkill_becomes_failed(make_node: MakeNode) -> None:
    nodes = await cluster(make_node, 2)
    async with gossip_child(_CHILD, nodes[0].address, nodes) as proc:
        assert view(nodes[1])["child"].tags == {"kind": "subprocess"}
        os.kill(proc.pid, signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 5) == -signal.SIGKILL
        await wait_for(
            lambda: all(status_of(n, "child") == "failed" for n in nodes), timeout=FAIL_DEADLINE
        )


async def test_paused_process_fails_then_comes_back_alive(make_node: MakeNode) -> None:
    nodes = await cluster(make_node, 2)
    async with gossip_child(_CHILD, nodes[0].address, nodes) as proc:
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            await wait_for(
                lambda: all(status_of(n, "child") == "failed" for n in nodes),
                timeout=FAIL_DEADLINE,
            )
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        await wait_for(lambda: all(status_of(n, "child") == "alive" for n in nodes), timeout=5)


@pytest.mark.parametrize("how", ["close", "leave"])
async def test_restart_at_same_address_comes_back_alive_with_new_tags(
    make_node: MakeNode, how: str
) -> None:
    nodes = await cluster(make_node, 4)
    old = nodes[3]
    port = int(old.address.rsplit(":", 1)[1])
    if how == "close":
        await old.close()
        await wait_for(
            lambda: all(status_of(n, "n3") == "failed" for n in nodes[:3]),
            timeout=FAIL_DEADLINE,
        )
    else:
        await old.leave()
        assert all(status_of(n, "n3") == "left" for n in nodes[:3])
    new = await make_node("n3", port=port, tags={"role": "dkron", "i": "3", "version": "2"})
    assert new.address == old.address
    new.join([nodes[0].address])
    everyone = [*nodes[:3], new]

    def back() -> bool:
        return all_alive(everyone, {"n0", "n1", "n2", "n3"}) and all(
            view(n)["n3"].tags.get("version") == "2" for n in everyone
        )

    await wait_for(back, timeout=5)


async def test_restart_on_another_port_replaces_the_old_entry(make_node: MakeNode) -> None:
    nodes = await cluster(make_node, 3)
    await nodes[2].close()
    new = await make_node("n2", tags={"i": "new"})
    new.join([nodes[0].address])
    await wait_for(lambda: view(nodes[0])["n2"].tags == {"i": "new"}, timeout=5)
    # The old address fails later, but the name keeps showing the alive incarnation.
    await wait_for(
        lambda: (
            len([m for m in nodes[1].members() if m.name == "n2"]) == 1
            and view(nodes[1])["n2"].port == new.local().port
        ),
        timeout=5,
    )
    names = [m.name for m in nodes[0].members()]
    assert names == ["n0", "n1", "n2"]
    assert view(nodes[0])["n2"].status == "alive"


async def test_different_secrets_never_see_each_other(make_node: MakeNode) -> None:
    a = await make_node("a", secret="key-one")
    b = await make_node("b", secret="key-two")
    c = await make_node("c", secret="key-one")
    # Positive control: the same key works.
    assert await c.join_wait([a.address], timeout=3) == 1
    assert await b.join_wait([a.address, c.address], timeout=1.0) == 0
    assert await a.join_wait([b.address], timeout=0.5) == 0
    await wait_for(lambda: all_alive([a, c], {"a", "c"}), timeout=5)
    assert [m.name for m in b.members()] == ["b"]
    assert "b" not in view(a) and "b" not in view(c)


async def test_no_secret_and_a_secret_do_not_mix(make_node: MakeNode) -> None:
    plain = await make_node("plain")
    plain2 = await make_node("plain2")
    keyed = await make_node("keyed", secret="k")
    assert await plain2.join_wait([plain.address], timeout=3) == 1
    assert await keyed.join_wait([plain.address], timeout=0.5) == 0


async def test_join_wait_counts_distinct_answering_addresses(make_node: MakeNode) -> None:
    nodes = await cluster(make_node, 3)
    dead = f"127.0.0.1:{free_port()}"
    joiner = await make_node("joiner")
    answered = await joiner.join_wait(
        [nodes[1].address, nodes[2].address, dead, nodes[1].address, joiner.address],
        timeout=0.6,
    )
    assert answered == 2
    assert await joiner.join_wait([f"localhost:{nodes[0].local().port}"], timeout=3) == 1
    await wait_for(lambda: all_alive([*nodes, joiner], {"n0", "n1", "n2", "joiner"}), timeout=5)


async def test_retry_join_gives_up_after_max_attempts(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dkron.membership")
    node = await make_node("n0")
    dead = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert await node.retry_join([dead], interval=0.15, max_attempts=3) is False
    assert time.monotonic() - started >= 0.45
    attempts = [r for r in caplog.records if "retry-join attempt" in r.getMessage()]
    numbers = [re.search(r"attempt (\S+):", r.getMessage()) for r in attempts]
    assert [m.group(1) for m in numbers if m] == ["1/3", "2/3", "3/3"]
    assert any("giving up after 3 attempts" in r.getMessage() for r in caplog.records)


async def test_retry_join_succeeds_once_the_seed_starts(make_node: MakeNode) -> None:
    node = await make_node("n0")
    seed_port = free_port()
    joining = asyncio.ensure_future(
        node.retry_join([f"127.0.0.1:{seed_port}"], interval=0.2, max_attempts=0)
    )
    seed = await make_node("seed", port=seed_port)
    assert await asyncio.wait_for(joining, 5) is True
    await wait_for(lambda: all_alive([node, seed], {"n0", "seed"}), timeout=5)


async def test_retry_join_stops_when_closed(make_node: MakeNode) -> None:
    node = await make_node("n0")
    joining = asyncio.ensure_future(
        node.retry_join([f"127.0.0.1:{free_port()}"], interval=0.1, max_attempts=0)
    )
    await wait_for(lambda: node.members() and not joining.done(), timeout=1)
    await node.close()
    assert await asyncio.wait_for(joining, 2) is False


async def test_join_before_start_is_applied_at_start(make_node: MakeNode) -> None:
    seed = await make_node("seed")
    late = Gossip(node_name="late", bind_host="127.0.0.1", bind_port=free_port(), tags={}, **FAST)
    late.join([seed.address])
    try:
        await late.start()
        await wait_for(lambda: all_alive([seed, late], {"seed", "late"}), timeout=5)
    finally:
        await late.close()


async def test_large_tags_travel_over_tcp(make_node: MakeNode) -> None:
    big = {f"key{i}": "v" * 40 for i in range(60)}  # about 3 KB: more than one datagram
    a = await make_node("a", tags=big)
    b = await make_node("b")
    b.join([a.address])
    await wait_for(lambda: "a" in view(b) and view(b)["a"].tags == big, timeout=5)


async def test_port_in_use_raises_a_clear_oserror(make_node: MakeNode) -> None:
    first = await make_node("first")
    port = first.local().port
    second = Gossip(node_name="second", bind_host="127.0.0.1", bind_port=port, tags={})
    with pytest.raises(OSError, match=rf"127\.0\.0\.1:{port}.*already in use"):
        await second.start()
    # Only UDP taken (by a program, not a node) fails the same way.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp_port = udp.getsockname()[1]
        third = Gossip(node_name="third", bind_host="127.0.0.1", bind_port=udp_port, tags={})
        with pytest.raises(OSError, match="already in use"):
            await third.start()
    # The failed start left nothing behind, and the first node still works.
    other = await make_node("other")
    assert await other.join_wait([first.address], timeout=3) == 1


async def test_close_cancels_every_task_and_frees_the_port(make_node: MakeNode) -> None:
    before = asyncio.all_tasks()
    nodes = await cluster(make_node, 3)
    await nodes[1].leave()
    for node in nodes:
        await node.close()
        await node.close()  # idempotent
    assert asyncio.all_tasks() - before == set()
    for node in nodes:
        port = node.local().port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", port))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", port))


async def test_port_zero_picks_a_free_port(make_node: MakeNode) -> None:
    a = await make_node("a", port=0)
    b = await make_node("b", port=0)
    assert a.local().port != 0 and a.address == f"127.0.0.1:{a.local().port}"
    assert await b.join_wait([a.address], timeout=3) == 1


async def test_advertise_host_is_the_address_others_see(make_node: MakeNode) -> None:
    a = await make_node("a", advertise_host="127.0.0.1")
    node = Gossip(
        node_name="wild", bind_host="0.0.0.0", bind_port=free_port(),
        advertise_host="127.0.0.1", tags={}, **FAST,
    )  # fmt: skip
    try:
        await node.start()
        assert node.address.startswith("127.0.0.1:")
        assert await node.join_wait([a.address], timeout=3) == 1
        await wait_for(lambda: view(a).get("wild") is not None, timeout=5)
        assert view(a)["wild"].addr == "127.0.0.1"
    finally:
        await node.close()


def test_bad_construction_arguments_are_rejected_with_reasons() -> None:
    base = {"node_name": "n", "bind_host": "127.0.0.1", "bind_port": 8946, "tags": {}}
    cases = [
        ({"node_name": ""}, ValueError, "node_name"),
        ({"bind_port": 70000}, ValueError, "bind_port"),
        ({"bind_host": "0.0.0.0"}, ValueError, "advertise host"),
        ({"advertise_host": "::"}, ValueError, "wildcard"),
        ({"tags": {"k": 1}}, TypeError, "strings"),
        ({"tags": ["k"]}, TypeError, "mapping"),
        ({"secret": ""}, ValueError, "secret"),
        ({"ping_interval": 0}, ValueError, "ping_interval"),
        ({"suspect_timeout": -1.0}, ValueError, "suspect_timeout"),
        ({"ping_timeout": float("nan")}, ValueError, "ping_timeout"),
    ]
    for change, error, text in cases:
        with pytest.raises(error, match=text):
            Gossip(**{**base, **change})  # type: ignore[arg-type]


async def test_bad_join_and_call_order_are_rejected_with_reasons(make_node: MakeNode) -> None:
    fresh = Gossip(node_name="fresh", bind_host="127.0.0.1", bind_port=free_port(), tags={})
    with pytest.raises(RuntimeError, match="start"):
        await fresh.join_wait(["127.0.0.1:1"], timeout=0.1)
    with pytest.raises(RuntimeError, match="start"):
        await fresh.retry_join(["127.0.0.1:1"], interval=0.1, max_attempts=1)
    node = await make_node("n0")
    for bad in ["nocolon", "host:", ":8946", "host:0", "host:70000", "host:http"]:
        with pytest.raises(ValueError, match="invalid gossip address"):
            node.join([bad])
    with pytest.raises(ValueError, match="invalid gossip address"):
        node.join(["127.0.0.1:1", "bad"])  # validated before any is added
    assert [m.name for m in node.members()] == ["n0"]
    with pytest.raises(ValueError, match="timeout"):
        await node.join_wait(["127.0.0.1:1"], timeout=-1)
    with pytest.raises(ValueError, match="interval"):
        await node.retry_join(["127.0.0.1:1"], interval=0, max_attempts=1)
    with pytest.raises(ValueError, match="retry max"):
        await node.retry_join(["127.0.0.1:1"], interval=0.1, max_attempts=-1)
    with pytest.raises(ValueError, match="at least one"):
        await node.retry_join([], interval=0.1, max_attempts=1)
    with pytest.raises(ValueError, match="leave timeout"):
        await node.leave(timeout=-1)
    with pytest.raises(TypeError, match="strings"):
        node.set_tags({"k": 2})  # type: ignore[dict-item]
    assert node.local().tags == {}
    with pytest.raises(RuntimeError, match="once"):
        await node.start()
    assert await node.join_wait(["no-such-host.invalid:8946"], timeout=0.2) == 0
    await node.close()
    with pytest.raises(RuntimeError, match="closed"):
        node.join(["127.0.0.1:1"])


async def test_forged_pickle_is_not_executed(
    make_node: MakeNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A correctly signed packet whose pickle calls a function is dropped, not run."""
    from swimprotocol.packet import Gossip as GossipPacket
    from swimprotocol.packet import Ping, Source
    from swimprotocol.sign import Signatures
    from swimprotocol.status import Status
    from swimprotocol.udp.pack import UdpPack

    from core.membership.gossip import DEFAULT_SECRET

    node = await make_node("target")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(marker), "w"))

    pack = UdpPack(Signatures(DEFAULT_SECRET))
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)  # the node runs on this loop: never block it
        me = Source(f"127.0.0.1:{sock.getsockname()[1]}", b"validity")
        target = ("127.0.0.1", node.local().port)
        sock.sendto(bytes(pack.pack(Exploit())), target)  # type: ignore[arg-type]
        bad_status = GossipPacket(source=me, name=me.name, clock=1, status="x", metadata={})  # type: ignore[arg-type]
        sock.sendto(bytes(pack.pack(bad_status)), target)
        not_bytes = GossipPacket(
            source=me,
            name=me.name,
            clock=1,
            status=Status.ONLINE,
            metadata={"name": "str"},  # type: ignore[dict-item]
        )
        sock.sendto(bytes(pack.pack(not_bytes)), target)
        sock.sendto(b"garbage", target)
        # Datagrams from one socket arrive in order: the ack proves the ones above were
        # handled, and that the node still answers.
        sock.sendto(bytes(pack.pack(Ping(source=me))), target)
        reply = pack.unpack(await asyncio.wait_for(loop.sock_recv(sock, 2048), 5))
    assert reply is not None and reply.source.name == node.address
    assert not marker.exists()
    messages = [r.getMessage() for r in caplog.records]
    assert any("not a SWIM packet" in m for m in messages)
    assert sum("malformed fields" in m for m in messages) == 2
    assert [m.name for m in node.members()] == ["target"]


async def test_wire_compatible_with_the_librarys_own_transport(make_node: MakeNode) -> None:
    """A node on swimprotocol's stock UdpTransport (same secret) joins a dkron-py node."""
    from contextlib import AsyncExitStack

    from swimprotocol.members import Members
    from swimprotocol.udp import UdpTransport
    from swimprotocol.udp.config import UdpConfig
    from swimprotocol.worker import Worker

    from core.membership.gossip import DEFAULT_SECRET

    ours = await make_node("ours")
    port = free_port()
    config = UdpConfig(
        secret=DEFAULT_SECRET,
        local_name=f"127.0.0.1:{port}",
        peers=[ours.address],
        local_metadata={"name": b"stock", "tags": b'{"impl":"swimprotocol"}'},
        ping_interval=0.2, ping_timeout=0.1, sync_interval=0.1,
    )  # fmt: skip
    members = Members(config)
    worker = Worker(config, members)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(UdpTransport(config, worker))
        await stack.enter_async_context(worker)
        await wait_for(lambda: status_of(ours, "stock") == "alive", timeout=5)
        assert view(ours)["stock"].tags == {"impl": "swimprotocol"}

        def knows_ours() -> bool:
            member = members.get(ours.address)
            return member.metadata.get("name") == b"ours"

        await wait_for(knows_ours, timeout=5)
