"""One dkron-py node: what the REST API and the CLI talk to.

Data flows one way: API -> state machine (Raft) -> scheduler -> dispatcher ->
agent-run service -> plugin -> FinishExecution -> state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc.aio

from core.acl import AclRpcService, AclService
from core.agent.service import AgentRunService
from core.cron import ScheduleError, parse_schedule
from core.dispatch.dispatcher import Dispatcher
from core.dispatch.live import LiveOutputs
from core.jobs.model import Execution, Job, unix_nano
from core.membership import Gossip, MemberInfo, member_json, select_targets
from core.notify import NotifyConfig
from core.notify.notifier import Notifier
from core.plugins.runtime import PluginRuntime, RuntimeSettings
from core.scheduler.scheduler import Fire, Scheduler, next_fire
from core.security import (
    CallSigner,
    CallVerifier,
    ClusterKey,
    NodeChannels,
    RpcGuard,
    TlsFiles,
    TokenCheck,
)
from core.server.cluster import ClusterView, form_raft_group, reconcile_peers
from core.server.rpc import RPC_ACCESS, DkronRpcService
from core.store.commands import (
    Barrier,
    DeleteExecutions,
    DeleteJob,
    Launch,
    RecordLaunches,
    SetJob,
    SetNext,
)
from core.store.lock import DataDirLock
from core.store.raft import RaftConfig, RaftStore, ReplicationError
from core.store.state import DEFAULT_MAX_HISTORY, JobQuery, NotFound, StoreError, StoreState
from core.wire import execution_to_proto
from dkron_pb.dkronpy.v1 import acl_pb2_grpc
from dkron_pb.types.v1 import agent_pb2_grpc, dkron_pb2, dkron_pb2_grpc

__all__ = ["VERSION", "DkronServer", "ServerConfig"]

log = logging.getLogger("dkron.server")

VERSION = "0.1.0"

# How long a stopping node waits for the results of the runs it killed to be recorded.
_RECORD_GRACE = 5.0
# gRPC cancels calls at random once more than 1000 wait to be picked up by the server
# (hard limit 3000). A leader that falls behind a burst of fires has that many AgentRun
# streams queued; they must start late, not fail with a bare CANCELLED.
_AGENT_SERVER_OPTIONS = [
    ("grpc.server.max_pending_requests", 1_000_000),
    ("grpc.server.max_pending_requests_hard_limit", 1_000_000),
]


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


class DkronServer:
    """A server (``config.server``) or a plain agent: gossip, the agent-run service,
    and on servers Raft, the scheduler (when leading) and the dispatcher."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.paused = False  # node-local, like Dkron's
        self.live = LiveOutputs(config.output_limit)
        self.runtime = PluginRuntime(config.plugins)
        state = StoreState(max_history=config.max_history, output_limit=config.output_limit)
        self.advertise_host = config.advertise_host or _advertise(config.bind_host)
        self.raft_address = f"{self.advertise_host}:{config.raft_port}"
        self.key = ClusterKey(config.encrypt) if config.encrypt else None
        self.store = RaftStore(
            RaftConfig(
                bind=self.raft_address,
                listen=f"{config.bind_host}:{config.raft_port}",
                data_dir=config.data_dir if config.server else None,
                password=self.key.raft_password if self.key else None,
            ),
            state,
        )
        self.channels = NodeChannels(CallSigner(self.key.rpc) if self.key else None, config.tls)
        self.acl = AclService(state, self.store.apply, enabled=config.acl_enabled)
        self.scheduler = Scheduler(self._on_fire)
        agent_state = Path(config.data_dir) / "agent" if config.data_dir is not None else None
        # A finished result is kept (for a new leader to collect) for an hour, at most
        # 1000 of them: up to 1000 x output_limit bytes in the worst case.
        self.agent = AgentRunService(
            self.runtime,
            config.node_name,
            state_dir=agent_state,
            report_done=self._report_done,
            max_results=1000,
        )
        self.notifier = Notifier(config.notify, config.node_name)
        self._leader_term = 0
        self.dispatcher = Dispatcher(
            self.store,
            self.runtime,
            config.node_name,
            agent_address=self._agent_address,
            live=self.live,
            notifier=self.notifier,
            targets=self._target_names,
            term=lambda: self._leader_term,
            channel=self.channels.get,
            forget_channel=self.channels.forget,
        )
        self._grpc: grpc.aio.Server | None = None
        self._background: set[asyncio.Future[None]] = set()
        self.rpc_address = f"{self.advertise_host}:{config.rpc_port}"
        self.started_at = datetime.now(UTC)
        self.gossip: Gossip | None = None
        self.view: ClusterView | None = None
        self.on_leave: Callable[[], None] | None = None
        self._membership_changed = asyncio.Event()
        self._left = False
        self._lock = DataDirLock(config.data_dir) if config.data_dir is not None else None
        state.job_listeners.append(self._job_changed)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        if self._lock is not None:
            self._lock.acquire()  # before anything that could run a job or take the lead
        await self.runtime.start(wait=False)
        guard = RpcGuard(
            CallVerifier(self.key.rpc) if self.key else None, RPC_ACCESS, self._token_check
        )
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
        self.rpc_address = f"{self.advertise_host}:{port}"
        await self._grpc.start()

        self.gossip = Gossip(
            node_name=config.node_name,
            bind_host=config.bind_host,
            bind_port=config.gossip_port,  # 0: Gossip picks one free for UDP and TCP
            advertise_host=self.advertise_host,
            tags=self.tags(),
            secret=self.key.gossip_secret.hex() if self.key else None,
            ping_interval=config.gossip_ping_interval,
            suspect_timeout=config.gossip_suspect_timeout,
        )
        await self.gossip.start()
        self.view = ClusterView(self.gossip, config.region)
        if config.join:
            self.gossip.join(config.join)
        if config.retry_join:
            self._spawn(
                self._retry_join(config.retry_join, config.retry_interval, config.retry_max)
            )

        if not config.server:
            return
        self.store.on_leadership(self._leadership_changed)
        formation = form_raft_group(
            self.store, self.view, config.bootstrap_expect, self.raft_address, self.channel
        )
        if self.store.saved_peers() is not None or config.bootstrap_expect == 1:
            await formation  # immediate: no one to wait for
        else:
            self._spawn(formation)
        self._spawn(self._maintain())
        if self.store.is_leader and not self.scheduler.running:
            await self._become_leader()

    async def _retry_join(self, addresses: tuple[str, ...], interval: float, attempts: int) -> None:
        assert self.gossip is not None
        await self.gossip.retry_join(addresses, interval, attempts)  # logs its own give-up

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _maintain(self) -> None:
        """Keep Raft's configuration in step with gossip (leader) and the saved peers
        current (every server): on every membership event, and every 5 s anyway."""
        assert self.view is not None and self.gossip is not None
        changed = self._membership_changed
        self.gossip.on_change(lambda _member: changed.set())
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await changed.wait()
            changed.clear()
            try:
                if self.store.started:
                    while await reconcile_peers(self.store, self.view):
                        pass  # one change at a time, until nothing is left to do
                    self.store.refresh_saved_peers()
            except Exception:
                log.exception("cluster maintenance failed")

    def _leadership_changed(self, leader: bool) -> None:
        if leader:
            self._membership_changed.set()
            self._spawn(self._become_leader())
        else:
            # _leader_term keeps the old term: anything still in flight carries it and
            # is refused by the log and by nodes that have seen the new leader.
            self._spawn(self.scheduler.stop())

    async def _become_leader(self) -> None:
        if self.scheduler.running:
            if self._leader_term == self.store.term:
                return
            # Leading again at a newer term (lost and won back unnoticed in between):
            # everything from the old term is refused now, so start over at this one.
            await self.scheduler.stop()
        term = self.store.term
        try:
            # Everything committed before this term is applied once the barrier is.
            await self.store.apply(Barrier(term))
        except (ReplicationError, StoreError) as exc:
            log.warning("leadership not established: %s", exc)
            return
        if not self.store.is_leader or self.store.term != term or self.scheduler.running:
            return
        self._leader_term = term
        log.info("leading the cluster (raft term %d)", term)
        state = self.store.state
        self.dispatcher.reconcile()
        owed = self.scheduler.load(list(state.jobs.values()), dict(state.last_fire))
        self.scheduler.start()
        try:
            if owed:
                log.info("running %d late or missed fire(s) once", len(owed))
                await self._on_fire(owed)
            await self._publish_next(list(state.jobs))
        except (ReplicationError, StoreError) as exc:
            # Leadership was lost again meanwhile; the next leader does this itself.
            log.warning("leadership work interrupted: %s", exc)

    async def stop(self, drain_timeout: float = 30.0, *, leave: bool = True) -> None:
        """Stop scheduling, leave the cluster, let runs in flight finish: all within one
        ``drain_timeout``. Past it, every run still going is killed (its job's process
        group with it) and recorded as failed with the output so far; then shut down.
        Calling it again (a second signal: ``stop(0)``) skips what is left of the wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(drain_timeout, 0.0)
        await self.scheduler.stop()
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
        if self.store.is_leader and len(self.store.raft_peers()) > 1:
            self.store.transfer_leadership()
            deadline = loop.time() + 2.0
            while self.store.is_leader and loop.time() < deadline:
                await asyncio.sleep(0.05)
        if self.gossip is not None:
            with contextlib.suppress(Exception):
                await self.gossip.leave()

    def request_leave(self) -> None:
        """Dkron's gRPC Leave: stop this node as POST /v1/leave does."""
        if self.on_leave is not None:
            self.on_leave()

    # -- cluster lookups -------------------------------------------------------------------

    def channel(self, address: str) -> grpc.aio.Channel:
        return self.channels.get(address)

    def _token_check(self) -> TokenCheck | None:
        """How the RPC guard checks a client call's ACL token (None: ACLs are off)."""
        if not self.acl.enabled:
            return None
        acl = self.acl

        def check(
            secret: str | None, path: str | None, capability: str
        ) -> tuple[grpc.StatusCode, str] | None:
            refusal = acl.check(secret, path, (capability,))
            if refusal is None:
                return None
            code = (
                grpc.StatusCode.UNAUTHENTICATED
                if refusal.status == 401
                else grpc.StatusCode.PERMISSION_DENIED
            )
            return code, refusal.reason

        return check

    def _agent_address(self, node: str) -> str | None:
        if node == self.config.node_name:
            return self.rpc_address
        return None if self.view is None else self.view.rpc_address(node)

    def _target_names(self, job: Job) -> list[str]:
        if self.view is None:
            return [self.config.node_name]
        chosen = select_targets(self.view.members(), job.tags, self.config.region)
        return [m.name for m in chosen]

    def executor_offers(self) -> dict[str, set[str]] | None:
        """The executors each alive member offers; None when one of them does not say
        (a node of another version), so nothing can be ruled out."""
        if self.view is None:
            return {self.config.node_name: set(self.runtime.executors)}
        offers: dict[str, set[str]] = {}
        for member in self.view.members():
            if member.status != "alive":
                continue
            listed = member.tags.get("executors")
            if listed is None:
                return None
            offers[member.name] = {name for name in listed.split(",") if name}
        offers[self.config.node_name] = set(self.runtime.executors)
        return offers

    async def rescan_plugins(self) -> list[str]:
        """Look for new plugins (SIGHUP, or a job naming an unknown executor) and
        gossip what this node now offers."""
        added = await self.runtime.rescan()
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

    def leader_rpc_address(self) -> str | None:
        if self.store.is_leader:
            return self.rpc_address
        if self.view is None:
            return None
        member = self.view.by_raft_address(self.store.leader)
        if member is None:
            return None
        return str(member.tags.get("rpc_addr", "")) or None

    def node_name_of_raft_address(self, address: str) -> str:
        if address == self.raft_address:
            return self.config.node_name
        member = None if self.view is None else self.view.by_raft_address(address)
        return address if member is None else member.name

    def raft_address_of(self, id_or_address: str) -> str | None:
        if id_or_address == self.config.node_name:
            return self.raft_address
        if self.view is not None:
            member = self.view.by_name(id_or_address)
            if member is not None and member.tags.get("raft_addr"):
                return member.tags["raft_addr"]
        if id_or_address in self.store.raft_peers():
            return id_or_address
        return None

    async def _report_done(self, execution: Execution) -> bool:
        """The agent's fallback when no leader stream took a final result: Dkron's
        ExecutionDone on any server (a follower forwards it to the leader)."""
        if self.view is None:
            return False
        addresses = [m.tags["rpc_addr"] for m in self.view.servers() if m.tags.get("rpc_addr")]
        leader = self.leader_rpc_address() if self.config.server else None
        if leader in addresses:
            addresses.remove(leader)
            addresses.insert(0, leader)
        request = dkron_pb2.ExecutionDoneRequest(execution=execution_to_proto(execution))
        for address in addresses:
            stub = dkron_pb2_grpc.DkronServiceStub(self.channel(address))
            try:
                await stub.ExecutionDone(request, timeout=5.0)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return True  # the job is gone: nothing left to record
                continue
            return True
        return False

    # -- scheduling ------------------------------------------------------------------------

    def _job_changed(self, name: str, job: Job | None) -> None:
        if not self.scheduler.running:
            return
        if job is None:
            self.scheduler.remove_job(name)
        else:
            self.scheduler.set_job(job, self.store.state.last_fire.get(name))

    async def _on_fire(self, fires: list[Fire]) -> None:
        if not self.store.is_leader or self.store.term != self._leader_term:
            # Deposed: the new leader fires these (and the log would refuse them). Or
            # leading at a newer term that _become_leader is taking up right now.
            log.info("not firing %d tick(s) at raft term %d", len(fires), self._leader_term)
            return
        now = datetime.now(UTC)
        launches = tuple(
            Launch(
                run_id=f"{fire.job_name}@{unix_nano(fire.scheduled_at)}",
                job_name=fire.job_name,
                scheduled_at=fire.scheduled_at,
                group=unix_nano(now),
                term=self._leader_term,
            )
            for fire in fires
        )
        # One Raft command per wake-up, committed before anything is dispatched.
        recorded: list[str] = await self.store.apply(RecordLaunches(launches))
        new = set(recorded)
        for launch in launches:
            if launch.run_id in new:
                self.dispatcher.launch(
                    launch.job_name, scheduled_at=launch.scheduled_at, run_id=launch.run_id
                )
        await self._publish_next([f.job_name for f in fires])

    async def _publish_next(self, names: list[str]) -> None:
        updates = tuple((n, self.scheduler.next_of(n)) for n in names if n in self.store.state.jobs)
        if updates:
            await self.store.apply(SetNext(updates))

    def _initial_next(self, job: Job) -> datetime | None:
        if job.disabled or job.parent_job or not job.schedule:
            return None
        try:
            schedule = parse_schedule(job.schedule, timezone=job.timezone, job_name=job.name)
        except ScheduleError:
            return None
        return next_fire(schedule, job, datetime.now(UTC))

    # -- writes ----------------------------------------------------------------------------

    async def set_job(self, job: Job, *, merge: bool = True) -> Job:
        """Create or replace ``job`` (already decoded and validated)."""
        job = dataclasses.replace(job, next=self._initial_next(job))
        stored: Job = await self.store.apply(SetJob(job, merge=merge))
        if self.scheduler.running:
            moment = self.scheduler.next_of(stored.name)
            if moment != stored.next:
                await self.store.apply(SetNext(((stored.name, moment),)))
                stored.next = moment
        return stored

    async def delete_job(self, name: str) -> Job:
        deleted: Job = await self.store.apply(DeleteJob(name))
        return deleted

    async def toggle_job(self, name: str) -> Job:
        job = self.get_job(name)
        if job is None:
            raise NotFound("job not found")
        return await self.set_job(dataclasses.replace(job, disabled=not job.disabled))

    async def run_job(self, name: str) -> Job:
        """Start a manual run and return at once (Dkron holds the request open).

        Only the leader dispatches; a follower forwards the request to it."""
        job = self.get_job(name)
        if job is None:
            raise NotFound("job not found")
        if self.store.is_leader:
            self.dispatcher.launch(name, manual=True)
            return job
        address = self.leader_rpc_address()
        if address is None:
            raise StoreError("no raft leader to run the job")
        stub = dkron_pb2_grpc.DkronServiceStub(self.channel(address))
        try:
            await stub.RunJob(dkron_pb2.RunJobRequest(job_name=name), timeout=10.0)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound("job not found") from None
            raise StoreError(f"the leader did not run the job: {exc.details()}") from None
        return job

    async def delete_executions(self, name: str) -> Job:
        job: Job = await self.store.apply(DeleteExecutions(name))
        return job

    async def restore(self, jobs: list[Job]) -> list[str]:
        """Store jobs parents first; one line per job, as Dkron reports."""
        results = []
        pending = list(jobs)
        names = {j.name for j in jobs}
        done: set[str] = set()
        while pending:
            ready = [
                j
                for j in pending
                if not j.parent_job or j.parent_job in done or j.parent_job not in names
            ]
            if not ready:
                ready = pending[:1]
            for job in ready:
                pending.remove(job)
                try:
                    await self.set_job(job)
                    results.append(f"success create {job.name}")
                except Exception as exc:
                    results.append(f"fail create {job.name}: {exc}")
                done.add(job.name)
        return results

    # -- reads -----------------------------------------------------------------------------

    def get_job(self, name: str) -> Job | None:
        return self.store.state.get_job(name)

    def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        return self.store.state.list_jobs(query)

    def executions(self, job_name: str) -> list[Execution]:
        return [self._with_partial(e) for e in self.store.state.executions_of(job_name)]

    def get_execution(self, job_name: str, execution_id: str) -> Execution | None:
        execution = self.store.state.get_execution(job_name, execution_id)
        return None if execution is None else self._with_partial(execution)

    def _with_partial(self, execution: Execution) -> Execution:
        if execution.finished_at is None:
            partial = self.live.partial(execution.id)
            if partial is not None:
                return dataclasses.replace(execution, output=partial)
        return execution

    def follow(self, execution_id: str) -> AsyncIterator[bytes]:
        return self.live.follow(execution_id)

    def busy(self) -> list[Execution]:
        return [self._with_partial(e) for e in self.store.state.running_executions()]

    @property
    def is_leader(self) -> bool:
        return self.store.is_leader

    def tags(self) -> dict[str, str]:
        tags = dict(self.config.tags)
        tags.update(
            {
                # Ours: what this node can run, so a job naming an executor no live node
                # offers is refused when it is submitted, not when it fails at run time.
                "executors": ",".join(sorted(self.runtime.executors)),
                "role": "dkron",
                "dc": self.config.datacenter,
                "region": self.config.region,
                "server": "true" if self.config.server else "false",
                "version": VERSION,
                "rpc_addr": self.rpc_address,
                "port": self.rpc_address.rsplit(":", 1)[1],
            }
        )
        if self.config.server:
            tags["expect"] = str(self.config.bootstrap_expect)
            tags["raft_addr"] = self.raft_address  # ours: Dkron multiplexes Raft on rpc
            if self.config.bootstrap_expect == 1:
                tags["bootstrap"] = "1"
        return tags

    def member(self, with_identity: bool = True) -> dict[str, Any]:
        """This node in Dkron's Member JSON shape (serf.Member + id/statusText)."""
        if self.gossip is not None:
            return member_json(self.gossip.local(), with_identity=with_identity)
        host = self.advertise_host
        local = MemberInfo(
            name=self.config.node_name, addr=host, port=0, tags=self.tags(), status="alive"
        )
        return member_json(local, with_identity=with_identity)

    def members(self) -> list[dict[str, Any]]:
        if self.view is None:
            return [self.member()]
        return [member_json(m) for m in self.view.members()]

    def leader(self) -> dict[str, Any] | None:
        if self.store.is_leader:
            return self.member(with_identity=False)
        if self.view is None:
            return None
        found = self.view.by_raft_address(self.store.leader)
        return None if found is None else member_json(found, with_identity=False)


def _advertise(bind_host: str) -> str:
    if bind_host not in ("", "0.0.0.0", "::"):
        return bind_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
