"""The composition root: one dkron-py node, wired from its parts.

Data flows one way: API -> store (Raft) -> leader (scheduler) -> dispatcher ->
agent-run service -> plugin -> FinishExecution -> store. The parts:

- ``store`` (core.store): the replicated state; the :class:`~core.store.base.Store`
  protocol, Raft's by default, any other (core.store.memory) when given one.
- ``leader`` (core.server.leader): scheduling and firing while this server leads.
- ``dispatcher`` (core.dispatch): the leader's side of each run.
- ``agent`` (core.agent): runs jobs on this node for whichever server leads.
- ``membership`` (core.server.members, over core.membership's gossip): who is who.
- ``jobs`` (core.server.jobs): what the REST API and RPC read and write.
- ``runtime`` (core.plugins), ``acl`` (core.acl), ``notifier`` (core.notify).

:class:`DkronServer` builds them, starts and stops them in order, and answers the
REST API (core.api.app.ApiBackend) and the RPC service (core.server.rpc.RpcBackend)
by handing each call to the part that does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc.aio

from core import VERSION
from core.acl import AclRpcService, AclService
from core.agent.service import AgentRunService
from core.dispatch.backlog import BacklogLimits
from core.dispatch.dispatcher import Dispatcher
from core.dispatch.live import LiveOutputs
from core.jobs.model import Execution, Job
from core.membership import Gossip
from core.notify import NotifyConfig
from core.notify.notifier import Notifier
from core.plugins.runtime import PluginRuntime, RuntimeSettings
from core.scheduler.scheduler import Scheduler
from core.security import (
    CallSigner,
    CallVerifier,
    ClusterKey,
    NodeChannels,
    RpcGuard,
    TlsFiles,
)
from core.server.cluster import ClusterView, form_raft_group, maintain_peers
from core.server.jobs import JobService
from core.server.leader import Leader
from core.server.members import Membership
from core.server.rpc import RPC_ACCESS, DkronRpcService, RaftPeers, acl_token_check
from core.store.events import LeadershipChanged
from core.store.lock import DataDirLock
from core.store.memory import MemoryStore
from core.store.raft import RaftConfig, RaftStore
from core.store.state import DEFAULT_MAX_HISTORY, JobQuery, StoreState
from dkron_pb.dkronpy.v1 import acl_pb2_grpc
from dkron_pb.types.v1 import agent_pb2_grpc, dkron_pb2_grpc

__all__ = ["VERSION", "DkronServer", "Node", "NodeStore", "ServerConfig", "memory_store"]

log = logging.getLogger("dkron.server")

# How long a stopping node waits for the results of the runs it killed to be recorded.
_RECORD_GRACE = 5.0
# gRPC cancels calls at random once more than 1000 wait to be picked up by the server
# (hard limit 3000). A leader that falls behind a burst of fires has that many AgentRun
# streams queued; they must start late, not fail with a bare CANCELLED.
_AGENT_SERVER_OPTIONS = [
    ("grpc.server.max_pending_requests", 1_000_000),
    ("grpc.server.max_pending_requests_hard_limit", 1_000_000),
]

#: The stores a node runs on: Raft's, or one without replication (core.store.memory).
NodeStore = RaftStore | MemoryStore


@dataclass(frozen=True)
class ServerConfig:
    node_name: str = field(default_factory=socket.gethostname)
    data_dir: Path | None = Path("dkron.data")  # None = in memory (--dev)
    bind_host: str = "127.0.0.1"
    rpc_port: int = 6868
    raft_port: int = 6869
    datacenter: str = "dc1"
    region: str = "global"
    tags: Mapping[str, str] = field(default_factory=dict)
    bootstrap_expect: int = 1
    encrypt: str | None = field(default=None, repr=False)
    acl_enabled: bool = False
    # Refuse job bodies with keys Dkron does not know (400) instead of a Warning header.
    strict_job_fields: bool = False
    tls: TlsFiles = field(default_factory=TlsFiles)  # RPC between nodes (and the API's)
    max_history: int = DEFAULT_MAX_HISTORY
    output_limit: int = 256_000
    plugins: RuntimeSettings = field(default_factory=RuntimeSettings)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    server: bool = True  # False: an agent that only runs jobs (no Raft, no API)
    gossip_port: int = 0  # 0: any free port (tests); the CLI passes --bind-addr's
    advertise_host: str = ""  # the address others reach this node on ("" = bind_host)
    join: tuple[str, ...] = ()
    retry_join: tuple[str, ...] = ()
    retry_interval: float = 30.0
    retry_max: int = 0
    # Gossip failure detection; a failed node stops being a target after about
    # 2 * ping_interval + suspect_timeout.
    gossip_ping_interval: float = 0.5
    gossip_suspect_timeout: float = 3.0
    # Admission of scheduled fires above capacity (core.dispatch.backlog).
    dispatch: BacklogLimits = field(default_factory=BacklogLimits)


class DkronServer:
    """A server (``config.server``) or a plain agent: gossip, the agent-run service,
    and on servers the store, the leader's scheduler and the dispatcher.

    ``store`` replaces the Raft store: :func:`memory_store` makes one for ``config``."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        store: MemoryStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.paused = False  # node-local, like Dkron's
        self.live = LiveOutputs(config.output_limit)
        self.runtime = PluginRuntime(config.plugins)
        advertise_host = config.advertise_host or _advertise(config.bind_host)
        raft_address = f"{advertise_host}:{config.raft_port}"
        self.key = ClusterKey(config.encrypt) if config.encrypt else None
        self.store: NodeStore
        if store is None:
            state = StoreState(max_history=config.max_history, output_limit=config.output_limit)
            self.store = RaftStore(
                RaftConfig(
                    bind=raft_address,
                    listen=f"{config.bind_host}:{config.raft_port}",
                    data_dir=config.data_dir if config.server else None,
                    password=self.key.raft_password if self.key else None,
                ),
                state,
            )
        else:
            self.store = store
        self.channels = NodeChannels(CallSigner(self.key.rpc) if self.key else None, config.tls)
        self.membership = Membership(
            config,
            self.store,
            self.runtime,
            self.channels,
            advertise_host=advertise_host,
            rpc_address=f"{advertise_host}:{config.rpc_port}",
            raft_address=raft_address,
        )
        self.acl = AclService(self.store.state, self.store.apply, enabled=config.acl_enabled)
        self.leader = Leader(self.store, lambda: self.dispatcher, clock)
        agent_state = Path(config.data_dir) / "agent" if config.data_dir is not None else None
        # A finished result is kept (for a new leader to collect) for an hour, at most
        # 1000 of them: up to 1000 x output_limit bytes in the worst case.
        self.agent = AgentRunService(
            self.runtime,
            config.node_name,
            state_dir=agent_state,
            report_done=self.membership.report_done,
            max_results=1000,
        )
        self.notifier = Notifier(config.notify, config.node_name)
        self.dispatcher = Dispatcher(
            self.store,
            self.runtime,
            config.node_name,
            agent_address=self.membership.agent_address,
            live=self.live,
            notifier=self.notifier,
            targets=self.membership.target_names,
            term=lambda: self.leader.term,
            channel=self.channels.get,
            forget_channel=self.channels.forget,
            local_agent=self.agent,
            backlog=config.dispatch,
        )
        self.jobs = JobService(
            self.store, self.leader, lambda: self.dispatcher, self.live, self.membership, clock
        )
        self._grpc: grpc.aio.Server | None = None
        self._background: set[asyncio.Future[None]] = set()
        self.started_at = datetime.now(UTC)
        self.on_leave: Callable[[], None] | None = None
        self._membership_changed = asyncio.Event()
        self._left = False
        self._lock = DataDirLock(config.data_dir) if config.data_dir is not None else None
        self.leader.attach()

    # -- the parts, by the names the rest of the code and the tests know -------------------

    @property
    def scheduler(self) -> Scheduler:
        return self.leader.scheduler

    @property
    def gossip(self) -> Gossip | None:
        return self.membership.gossip

    @property
    def view(self) -> ClusterView | None:
        return self.membership.view

    @property
    def advertise_host(self) -> str:
        return self.membership.advertise_host

    @property
    def rpc_address(self) -> str:
        return self.membership.rpc_address

    @property
    def raft_address(self) -> str:
        return self.membership.raft_address

    @property
    def node_name(self) -> str:
        return self.config.node_name

    @property
    def raft(self) -> RaftPeers:
        return self.store

    @property
    def is_leader(self) -> bool:
        return self.store.is_leader

    @property
    def is_scheduling(self) -> bool:
        return self.leader.running

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        if self._lock is not None:
            self._lock.acquire()  # before anything that could run a job or take the lead
        await self.runtime.start(wait=False)
        verifier = CallVerifier(self.key.rpc) if self.key else None
        guard = RpcGuard(verifier, RPC_ACCESS, acl_token_check(self.acl))
        self._grpc = grpc.aio.server(options=_AGENT_SERVER_OPTIONS, interceptors=[guard])
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.agent, self._grpc)
        if config.server:
            dkron_pb2_grpc.add_DkronServiceServicer_to_server(DkronRpcService(self), self._grpc)
            acl_pb2_grpc.add_AclServiceServicer_to_server(AclRpcService(self.acl), self._grpc)
        listen = f"{config.bind_host}:{config.rpc_port}"
        if config.tls.enabled:
            port = self._grpc.add_secure_port(listen, config.tls.grpc_server_credentials())
        else:
            port = self._grpc.add_insecure_port(listen)
        self.membership.rpc_address = f"{self.advertise_host}:{port}"
        await self._grpc.start()

        gossip = Gossip(
            node_name=config.node_name,
            bind_host=config.bind_host,
            bind_port=config.gossip_port,  # 0: Gossip picks one free for UDP and TCP
            advertise_host=self.advertise_host,
            tags=self.tags(),
            secret=self.key.gossip_secret.hex() if self.key else None,
            ping_interval=config.gossip_ping_interval,
            suspect_timeout=config.gossip_suspect_timeout,
        )
        self.membership.gossip = gossip
        await gossip.start()
        view = self.membership.view = ClusterView(gossip, config.region)
        if config.join:
            gossip.join(config.join)
        if config.retry_join:
            self._spawn(self._retry_join(gossip))

        if not config.server:
            return
        self.store.subscribe(LeadershipChanged, self._leadership_changed)
        store = self.store
        if isinstance(store, RaftStore):
            formation = form_raft_group(
                store, view, config.bootstrap_expect, self.raft_address, self.channel
            )
            if store.saved_peers() is not None or config.bootstrap_expect == 1:
                await formation  # immediate: no one to wait for
            else:
                self._spawn(formation)
            self._spawn(maintain_peers(store, view, self._membership_changed))
        else:
            await store.start()
        if self.store.is_leader and not self.leader.running:
            await self.leader.establish()

    async def _retry_join(self, gossip: Gossip) -> None:
        config = self.config
        # Logs its own give-up.
        await gossip.retry_join(config.retry_join, config.retry_interval, config.retry_max)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _leadership_changed(self, event: LeadershipChanged) -> None:
        if event.leader:
            self._membership_changed.set()  # the new leader reconciles Raft's peers

    async def stop(self, drain_timeout: float = 30.0, *, leave: bool = True) -> None:
        """Stop scheduling, leave the cluster, let runs in flight finish: all within one
        ``drain_timeout``. Past it, every run still going is killed (its job's process
        group with it) and recorded as failed with the output so far; then shut down.
        Calling it again (a second signal: ``stop(0)``) skips what is left of the wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(drain_timeout, 0.0)
        await self.leader.stop()
        if leave:
            await self._leave()
        self.dispatcher.stopping = True
        drained = await self.dispatcher.drain(max(deadline - loop.time(), 0.0))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self.agent.idle.wait()
        if not (drained and self.agent.idle.is_set()):
            reason = (
                f"the agent stopped and its {drain_timeout:g}s drain timeout passed"
                if drain_timeout > 0
                else "the agent was stopped at once (a second signal)"
            )
            killed = await self.agent.kill_all(reason)
            log.warning("stopping: killed %d running execution(s): %s", killed, reason)
            # Their results reach the leader's streams (this node's dispatcher, or a
            # report to another server): give them a moment to be recorded.
            if not await self.dispatcher.drain(_RECORD_GRACE):
                log.warning("stopping with executions not yet recorded")
        await self.dispatcher.close()
        await self.notifier.close(timeout=min(drain_timeout, 5.0))
        await self.leader.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # Results still being reported to another server get a moment, even at once.
        await self.agent.close(grace=2.0)
        if self._grpc is not None:
            await self._grpc.stop(1.0)
        await self.runtime.close()
        await self.store.close()
        if self.gossip is not None:
            await self.gossip.close()
        await self.channels.close()
        if self._lock is not None:
            self._lock.release()

    async def _leave(self) -> None:
        """Graceful leave: hand leadership over, then tell the cluster we left (the
        leader removes a departed server from Raft)."""
        if self._left:
            return
        self._left = True
        loop = asyncio.get_running_loop()
        store = self.store
        if isinstance(store, RaftStore) and store.is_leader and len(store.raft_peers()) > 1:
            store.transfer_leadership()
            deadline = loop.time() + 2.0
            while store.is_leader and loop.time() < deadline:
                await asyncio.sleep(0.05)
        if self.gossip is not None:
            with contextlib.suppress(Exception):
                await self.gossip.leave()

    def request_leave(self) -> None:
        """Dkron's gRPC Leave: stop this node as POST /v1/leave does."""
        if self.on_leave is not None:
            self.on_leave()

    # -- what the API and RPC call, handed to the part that does it ------------------------

    def issues(self) -> list[str]:
        """Why this node is unhealthy (none: healthy)."""
        issues = self.runtime.issues()
        if self.store.fatal is not None:
            issues.insert(0, self.store.fatal)
        return issues

    def channel(self, address: str) -> grpc.aio.Channel:
        return self.channels.get(address)

    def tags(self) -> dict[str, str]:
        return self.membership.tags()

    def member(self, with_identity: bool = True) -> dict[str, Any]:
        return self.membership.member(with_identity)

    def members(self) -> list[dict[str, Any]]:
        return self.membership.members()

    def leader_member(self) -> dict[str, Any] | None:
        return self.membership.leader()

    def leader_rpc_address(self) -> str | None:
        return self.membership.leader_rpc_address()

    def node_name_of_raft_address(self, address: str) -> str:
        return self.membership.node_name_of_raft_address(address)

    def raft_address_of(self, id_or_address: str) -> str | None:
        return self.membership.raft_address_of(id_or_address)

    def executor_offers(self) -> dict[str, set[str]] | None:
        return self.membership.executor_offers()

    async def executor_refusal(self, executor: str) -> str | None:
        return await self.membership.executor_refusal(executor)

    async def rescan_plugins(self) -> list[str]:
        return await self.membership.rescan_plugins()

    async def record_done(self, execution: Execution) -> str:
        return await self.dispatcher.report_done(execution)

    def active_executions(self) -> list[Execution]:
        return self.agent.running()

    def scheduled_jobs(self) -> dict[str, Job]:
        return self.jobs.scheduled_jobs()

    async def set_job(self, job: Job, *, merge: bool = True) -> Job:
        return await self.jobs.set_job(job, merge=merge)

    async def delete_job(self, name: str) -> Job:
        return await self.jobs.delete_job(name)

    async def toggle_job(self, name: str) -> Job:
        return await self.jobs.toggle_job(name)

    async def run_job(self, name: str) -> Job:
        return await self.jobs.run_job(name)

    async def delete_executions(self, name: str) -> Job:
        return await self.jobs.delete_executions(name)

    async def restore(self, jobs: list[Job]) -> list[str]:
        return await self.jobs.restore(jobs)

    def get_job(self, name: str) -> Job | None:
        return self.jobs.get_job(name)

    def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        return self.jobs.list_jobs(query)

    def executions(self, job_name: str) -> list[Execution]:
        return self.jobs.executions(job_name)

    def get_execution(self, job_name: str, execution_id: str) -> Execution | None:
        return self.jobs.get_execution(job_name, execution_id)

    def busy(self) -> list[Execution]:
        return self.jobs.busy()

    def execution_stats(self, days: int) -> list[tuple[int, int, int]]:
        today = (datetime.now(UTC).date() - date(1970, 1, 1)).days
        return self.store.state.execution_stats(days, today)

    def partial_output(self, execution_id: str) -> bytes | None:
        return self.jobs.partial_output(execution_id)

    def follow(self, execution_id: str) -> AsyncIterator[bytes]:
        return self.jobs.follow(execution_id)


def memory_store(config: ServerConfig) -> MemoryStore:
    """A store without Raft for a node of ``config`` (``DkronServer(config, store=...)``)."""
    return MemoryStore(
        StoreState(max_history=config.max_history, output_limit=config.output_limit),
        address=f"{config.advertise_host or _advertise(config.bind_host)}:{config.raft_port}",
    )


#: The composition root by the name of what it is; ``DkronServer`` is kept for its users.
Node = DkronServer


def _advertise(bind_host: str) -> str:
    if bind_host not in ("", "0.0.0.0", "::"):
        return bind_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
