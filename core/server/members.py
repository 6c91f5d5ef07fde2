"""This node among the others: its gossip tags, Dkron's member JSON, who leads, where
to reach a node, who can run a job, and the agent's fallback report of a result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import grpc
import grpc.aio

from core import VERSION
from core.jobs.model import Execution, Job
from core.membership import Gossip, MemberInfo, member_json, select_targets
from core.plugins.runtime import PluginRuntime
from core.security import NodeChannels
from core.server.cluster import ClusterView
from core.store.base import Store
from core.wire import execution_to_proto
from dkron_pb.types.v1 import dkron_pb2, dkron_pb2_grpc

__all__ = ["ClusterStore", "Identity", "Membership"]

_REPORT_TIMEOUT = 5.0


class ClusterStore(Store, Protocol):
    def raft_peers(self) -> list[str]:
        """Every Raft address in the current configuration, this node's included."""
        ...


class Identity(Protocol):
    """The settings that say who this node is (core.node.ServerConfig has them)."""

    @property
    def node_name(self) -> str: ...
    @property
    def datacenter(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def server(self) -> bool: ...
    @property
    def bootstrap_expect(self) -> int: ...


class Membership:
    """Lookups over gossip (``view``, from start on) and the store's leadership."""

    def __init__(
        self,
        identity: Identity,
        store: ClusterStore,
        runtime: PluginRuntime,
        channels: NodeChannels,
        *,
        advertise_host: str,
        rpc_address: str,
        raft_address: str,
    ) -> None:
        self._identity = identity
        self._store = store
        self._runtime = runtime
        self._channels = channels
        self.advertise_host = advertise_host
        self.rpc_address = rpc_address  # the bound port once the RPC server listens
        self.raft_address = raft_address
        self.gossip: Gossip | None = None
        self.view: ClusterView | None = None

    def channel(self, address: str) -> grpc.aio.Channel:
        return self._channels.get(address)

    # -- this node -------------------------------------------------------------------------

    def tags(self) -> dict[str, str]:
        me = self._identity
        tags = dict(me.tags)
        tags.update(
            {
                # Ours: what this node can run, so a job naming an executor no live node
                # offers is refused when it is submitted, not when it fails at run time.
                "executors": ",".join(sorted(self._runtime.executors)),
                "role": "dkron",
                "dc": me.datacenter,
                "region": me.region,
                "server": "true" if me.server else "false",
                "version": VERSION,
                "rpc_addr": self.rpc_address,
                "port": self.rpc_address.rsplit(":", 1)[1],
            }
        )
        if me.server:
            tags["expect"] = str(me.bootstrap_expect)
            tags["raft_addr"] = self.raft_address  # ours: Dkron multiplexes Raft on rpc
            if me.bootstrap_expect == 1:
                tags["bootstrap"] = "1"
        return tags

    def member(self, with_identity: bool = True) -> dict[str, Any]:
        """This node in Dkron's Member JSON shape (serf.Member + id/statusText)."""
        if self.gossip is not None:
            return member_json(self.gossip.local(), with_identity=with_identity)
        local = MemberInfo(
            name=self._identity.node_name,
            addr=self.advertise_host,
            port=0,
            tags=self.tags(),
            status="alive",
        )
        return member_json(local, with_identity=with_identity)

    def members(self) -> list[dict[str, Any]]:
        if self.view is None:
            return [self.member()]
        return [member_json(m) for m in self.view.members()]

    def leader(self) -> dict[str, Any] | None:
        if self._store.is_leader:
            return self.member(with_identity=False)
        if self.view is None:
            return None
        found = self.view.by_raft_address(self._store.leader)
        return None if found is None else member_json(found, with_identity=False)

    # -- where others are ------------------------------------------------------------------

    def leader_rpc_address(self) -> str | None:
        if self._store.is_leader:
            return self.rpc_address
        if self.view is None:
            return None
        member = self.view.by_raft_address(self._store.leader)
        if member is None:
            return None
        return str(member.tags.get("rpc_addr", "")) or None

    def node_name_of_raft_address(self, address: str) -> str:
        if address == self.raft_address:
            return self._identity.node_name
        member = None if self.view is None else self.view.by_raft_address(address)
        return address if member is None else member.name

    def raft_address_of(self, id_or_address: str) -> str | None:
        if id_or_address == self._identity.node_name:
            return self.raft_address
        if self.view is not None:
            member = self.view.by_name(id_or_address)
            if member is not None and member.tags.get("raft_addr"):
                return member.tags["raft_addr"]
        if id_or_address in self._store.raft_peers():
            return id_or_address
        return None

    def agent_address(self, node: str) -> str | None:
        if node == self._identity.node_name:
            return self.rpc_address
        return None if self.view is None else self.view.rpc_address(node)

    def target_names(self, job: Job) -> list[str]:
        if self.view is None:
            return [self._identity.node_name]
        chosen = select_targets(self.view.members(), job.tags, self._identity.region)
        return [m.name for m in chosen]

    # -- executors -------------------------------------------------------------------------

    def executor_offers(self) -> dict[str, set[str]] | None:
        """The executors each alive member offers; None when one of them does not say
        (a node of another version), so nothing can be ruled out."""
        mine = set(self._runtime.executors)
        if self.view is None:
            return {self._identity.node_name: mine}
        offers: dict[str, set[str]] = {}
        for member in self.view.members():
            if member.status != "alive":
                continue
            listed = member.tags.get("executors")
            if listed is None:
                return None
            offers[member.name] = {name for name in listed.split(",") if name}
        offers[self._identity.node_name] = mine
        return offers

    async def rescan_plugins(self) -> list[str]:
        """Look for new plugins (SIGHUP, or a job naming an unknown executor) and
        gossip what this node now offers."""
        added = await self._runtime.rescan()
        if self.gossip is not None:
            self.gossip.set_tags(self.tags())
        return added

    async def executor_refusal(self, executor: str) -> str | None:
        """Why a job naming ``executor`` cannot run anywhere, or None."""
        if not executor:
            return None
        offers = self.executor_offers()
        if offers is None or any(executor in names for names in offers.values()):
            return None
        if await self.rescan_plugins():  # dropped into this node's plugin dir just now
            offers = self.executor_offers()
            if offers is None or any(executor in names for names in offers.values()):
                return None
        assert offers is not None
        listing = "; ".join(
            f"{node} offers {', '.join(sorted(names)) or 'none'}"
            for node, names in sorted(offers.items())
        )
        return f"executor {executor!r} is not offered by any live member ({listing})"

    # -- the agent's fallback report -------------------------------------------------------

    async def report_done(self, execution: Execution) -> bool:
        """The agent's fallback when no leader stream took a final result: Dkron's
        ExecutionDone on any server (a follower forwards it to the leader)."""
        if self.view is None:
            return False
        addresses = [m.tags["rpc_addr"] for m in self.view.servers() if m.tags.get("rpc_addr")]
        leader = self.leader_rpc_address() if self._identity.server else None
        if leader in addresses:
            addresses.remove(leader)
            addresses.insert(0, leader)
        request = dkron_pb2.ExecutionDoneRequest(execution=execution_to_proto(execution))
        for address in addresses:
            stub = dkron_pb2_grpc.DkronServiceStub(self.channel(address))
            try:
                await stub.ExecutionDone(request, timeout=_REPORT_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return True  # the job is gone: nothing left to record
                continue
            return True
        return False
