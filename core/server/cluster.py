"""How servers find each other and keep the Raft configuration in step with gossip.

Formation follows Dkron: a server with Raft state restarts with the peers it last
ran with; a fresh server joins a group another server already reports, waiting for
the leader to add it; otherwise ``--bootstrap-expect N`` servers of one region form
the group once N of them, all expecting N, see each other. The leader adds alive
servers that are missing and removes servers that left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from core.membership import Gossip, MemberInfo
from core.store.raft import RaftStore, ReplicationError
from dkron_pb.types.v1 import dkron_pb2_grpc

__all__ = ["ClusterView", "form_raft_group", "maintain_peers", "reconcile_peers"]

log = logging.getLogger("dkron.cluster")

_POLL = 0.2
_CONFIG_TIMEOUT = 1.0
_MAINTAIN_PERIOD = 5.0


class ClusterView:
    """Who is who: gossip members by node name, Raft address and RPC address."""

    def __init__(self, gossip: Gossip, region: str) -> None:
        self.gossip = gossip
        self.region = region
        # Every dispatch looks members up; gossip decodes them on each call.
        self._members: list[MemberInfo] | None = None
        gossip.on_change(self._changed)

    def _changed(self, _member: MemberInfo) -> None:
        self._members = None

    def members(self) -> list[MemberInfo]:
        if self._members is None:
            self._members = self.gossip.members()
        return self._members

    def alive(self) -> list[MemberInfo]:
        return [m for m in self.members() if m.status == "alive"]

    def servers(self, *, alive_only: bool = True) -> list[MemberInfo]:
        pool = self.alive() if alive_only else self.members()
        return [
            m
            for m in pool
            if m.tags.get("server") == "true" and m.tags.get("region") == self.region
        ]

    def by_name(self, name: str) -> MemberInfo | None:
        for member in self.members():
            if member.name == name:
                return member
        return None

    def by_raft_address(self, address: str | None) -> MemberInfo | None:
        if not address:
            return None
        for member in self.members():
            if member.tags.get("raft_addr") == address:
                return member
        return None

    def rpc_address(self, name: str) -> str | None:
        """The alive node's agent-run address (None when unknown or not alive)."""
        member = self.by_name(name)
        if member is None or member.status != "alive":
            return None
        return member.tags.get("rpc_addr") or None


async def _remote_configuration(channel: grpc.aio.Channel) -> list[str] | None:
    """A server's Raft configuration as Raft addresses (None: unreachable)."""
    stub = dkron_pb2_grpc.DkronServiceStub(channel)
    try:
        reply = await stub.RaftGetConfiguration(empty_pb2.Empty(), timeout=_CONFIG_TIMEOUT)
    except grpc.aio.AioRpcError:
        return None
    return [server.address for server in reply.servers]


async def form_raft_group(
    store: RaftStore,
    view: ClusterView,
    bootstrap_expect: int,
    raft_address: str,
    channel: Callable[[str], grpc.aio.Channel],
) -> None:
    """Start ``store`` once this server knows its Raft peers; runs until it has.

    ``channel`` gives a (reused) gRPC channel to another server's RPC address."""
    saved = store.saved_peers()
    if saved is not None:
        log.info("raft: restarting with %d saved peer(s)", len(saved))
        await store.start(saved)
        return
    if bootstrap_expect == 1:
        await store.start(())
        return
    warned_expect = False
    waiting_since_log = 0
    while True:
        servers = [m for m in view.servers() if m.tags.get("raft_addr") != raft_address]
        addresses = [m.tags["rpc_addr"] for m in servers if m.tags.get("rpc_addr")]
        configs = await asyncio.gather(*(_remote_configuration(channel(a)) for a in addresses))
        formed = [c for c in configs if c]
        if formed:
            configuration = max(formed, key=len)
            if raft_address in configuration:
                peers = [a for a in configuration if a != raft_address]
                log.info("raft: joining the existing group %s", ", ".join(configuration))
                await store.start(peers)
                return
            waiting_since_log += 1
            if waiting_since_log % 25 == 1:
                log.info("raft: a group exists; waiting for its leader to add this server")
        elif bootstrap_expect > 1 and len(servers) + 1 >= bootstrap_expect:
            expects = {m.tags.get("expect", "") for m in servers}
            if expects == {str(bootstrap_expect)}:
                peers = sorted(m.tags["raft_addr"] for m in servers if m.tags.get("raft_addr"))
                log.info(
                    "raft: %d servers expecting %d found; bootstrapping with %s",
                    len(servers) + 1,
                    bootstrap_expect,
                    ", ".join(peers),
                )
                await store.start(peers)
                return
            if not warned_expect:
                warned_expect = True
                log.error(
                    "raft: not bootstrapping: servers in region %s disagree on "
                    "bootstrap-expect (%s, this server %d)",
                    view.region,
                    ", ".join(sorted(e or "none" for e in expects)),
                    bootstrap_expect,
                )
        await asyncio.sleep(_POLL)


async def reconcile_peers(store: RaftStore, view: ClusterView) -> bool:
    """Leader only: add an alive server missing from Raft, or remove one that left.

    One change per call, as pysyncobj requires; True if one was made."""
    if not store.is_leader:
        return False
    configuration = set(store.raft_peers())
    for member in view.servers():
        address = member.tags.get("raft_addr")
        if address and address not in configuration:
            return await _change(store.add_peer, "adding", member, address)
    for member in _left(view.servers(alive_only=False)):
        address = member.tags.get("raft_addr")
        if address and address in configuration and address != store.config.bind:
            return await _change(store.remove_peer, "removing", member, address)
    return False


async def _change(
    change: Callable[[str], Awaitable[None]], doing: str, member: MemberInfo, address: str
) -> bool:
    log.info("raft: %s server %s (%s)", doing, member.name, address)
    try:
        await change(address)
    except ReplicationError as exc:
        log.warning("raft: %s server %s failed: %s", doing, member.name, exc)
        return False
    return True


def _left(members: Iterable[MemberInfo]) -> list[MemberInfo]:
    return [m for m in members if m.status == "left"]


async def maintain_peers(store: RaftStore, view: ClusterView, changed: asyncio.Event) -> None:
    """Keep Raft's configuration in step with gossip (leader) and the saved peers
    current (every server): whenever ``changed`` is set, and every 5 s anyway."""
    view.gossip.on_change(lambda _member: changed.set())
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_MAINTAIN_PERIOD):
                await changed.wait()
        changed.clear()
        try:
            if store.started:
                while await reconcile_peers(store, view):
                    pass  # one change at a time, until nothing is left to do
                store.refresh_saved_peers()
        except Exception:
            log.exception("cluster maintenance failed")
