"""One dkron-py node: what the REST API and the CLI talk to.

Data flows one way: API -> state machine (Raft) -> scheduler -> dispatcher ->
agent-run service -> plugin -> FinishExecution -> state machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc.aio

from core.agent.service import AgentRunService
from core.cron import ScheduleError, parse_schedule
from core.dispatch.dispatcher import Dispatcher
from core.dispatch.live import LiveOutputs
from core.jobs.model import Execution, Job, unix_nano
from core.notify import NotifyConfig
from core.notify.notifier import Notifier
from core.plugins.runtime import PluginRuntime, RuntimeSettings
from core.scheduler.scheduler import Fire, Scheduler, next_fire
from core.store.commands import (
    DeleteExecutions,
    DeleteJob,
    FinishExecution,
    Launch,
    RecordLaunches,
    SetJob,
    SetNext,
)
from core.store.raft import RaftConfig, RaftStore
from core.store.state import DEFAULT_MAX_HISTORY, JobQuery, NotFound, StoreState
from dkron_pb.types.v1 import agent_pb2_grpc

__all__ = ["VERSION", "DkronServer", "ServerConfig"]

log = logging.getLogger("dkron.server")

VERSION = "0.1.0"

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
    encrypt: str | None = None
    max_history: int = DEFAULT_MAX_HISTORY
    output_limit: int = 256_000
    plugins: RuntimeSettings = field(default_factory=RuntimeSettings)
    notify: NotifyConfig = field(default_factory=NotifyConfig)


class DkronServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.paused = False  # node-local, like Dkron's
        self.live = LiveOutputs(config.output_limit)
        self.runtime = PluginRuntime(config.plugins)
        state = StoreState(max_history=config.max_history, output_limit=config.output_limit)
        self.store = RaftStore(
            RaftConfig(
                bind=f"{config.bind_host}:{config.raft_port}",
                data_dir=config.data_dir,
                password=config.encrypt,
            ),
            state,
        )
        self.scheduler = Scheduler(self._on_fire)
        self.agent = AgentRunService(self.runtime, config.node_name)
        self.notifier = Notifier(config.notify, config.node_name)
        self.dispatcher = Dispatcher(
            self.store,
            self.runtime,
            config.node_name,
            agent_address=lambda _node: self.rpc_address,
            live=self.live,
            notifier=self.notifier,
        )
        self._grpc: grpc.aio.Server | None = None
        self._background: set[asyncio.Future[None]] = set()
        self.rpc_address = f"{config.bind_host}:{config.rpc_port}"
        self.started_at = datetime.now(UTC)
        state.job_listeners.append(self._job_changed)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.runtime.start()
        self._grpc = grpc.aio.server(options=_AGENT_SERVER_OPTIONS)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.agent, self._grpc)
        port = self._grpc.add_insecure_port(self.rpc_address)
        self.rpc_address = f"{self.config.bind_host}:{port}"
        await self._grpc.start()
        self.store.on_leadership(self._leadership_changed)
        await self.store.start()
        if self.store.is_leader and not self.scheduler.running:
            await self._become_leader()

    def _leadership_changed(self, leader: bool) -> None:
        work = self._become_leader() if leader else self.scheduler.stop()
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _become_leader(self) -> None:
        if self.scheduler.running:
            return
        state = self.store.state
        await self._fail_lost_executions()
        owed = self.scheduler.load(list(state.jobs.values()), dict(state.last_fire))
        self.scheduler.start()
        if owed:
            log.info("running %d missed fire(s) once (misfire_policy run_once)", len(owed))
            await self._on_fire(owed)
        await self._publish_next(list(state.jobs))

    async def _fail_lost_executions(self) -> None:
        # Runs recorded as started by a previous process can never report back; left
        # "running" they would block forbid jobs forever (Dkron #1939).
        for execution in self.store.state.running_executions():
            if execution.id in self.agent.active:
                continue
            lost = dataclasses.replace(
                execution,
                success=False,
                finished_at=datetime.now(UTC),
                output=b"execution lost: the server restarted while it was running\n"
                + execution.output,
            )
            try:
                await self.store.apply(FinishExecution(lost))
            except NotFound:
                continue

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop scheduling, let runs in flight finish (up to ``drain_timeout``), shut down."""
        await self.scheduler.stop()
        if not await self.dispatcher.drain(drain_timeout):
            log.warning("stopping with executions still running")
        await self.dispatcher.close()
        await self.notifier.close(timeout=min(drain_timeout, 5.0))
        if self._grpc is not None:
            await self._grpc.stop(1.0)
        await self.runtime.close()
        await self.store.close()

    # -- scheduling ------------------------------------------------------------------------

    def _job_changed(self, name: str, job: Job | None) -> None:
        if not self.scheduler.running:
            return
        if job is None:
            self.scheduler.remove_job(name)
        else:
            self.scheduler.set_job(job, self.store.state.last_fire.get(name))

    async def _on_fire(self, fires: list[Fire]) -> None:
        now = datetime.now(UTC)
        launches = tuple(
            Launch(
                run_id=f"{fire.job_name}@{unix_nano(fire.scheduled_at)}",
                job_name=fire.job_name,
                scheduled_at=fire.scheduled_at,
                group=unix_nano(now),
                term=self.store.term,
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

    def run_job(self, name: str) -> Job:
        """Start a manual run and return at once (Dkron holds the request open)."""
        job = self.get_job(name)
        if job is None:
            raise NotFound("job not found")
        self.dispatcher.launch(name, manual=True)
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
                "role": "dkron",
                "dc": self.config.datacenter,
                "region": self.config.region,
                "server": "true",
                "version": VERSION,
                "rpc_addr": self.rpc_address,
                "port": self.rpc_address.rsplit(":", 1)[1],
                "expect": str(self.config.bootstrap_expect),
            }
        )
        return tags

    def member(self, with_identity: bool = True) -> dict[str, Any]:
        """This node in Dkron's Member JSON shape (serf.Member + id/statusText)."""
        host, _, _port = self.rpc_address.rpartition(":")
        member: dict[str, Any] = {
            "Name": self.config.node_name,
            "Addr": host,
            "Port": 8946,
            "Tags": self.tags(),
            "Status": 1,
            "ProtocolMin": 1,
            "ProtocolMax": 5,
            "ProtocolCur": 2,
            "DelegateMin": 2,
            "DelegateMax": 5,
            "DelegateCur": 4,
        }
        if with_identity:
            member["id"] = str(uuid.uuid4())
            member["statusText"] = "alive"
        return member

    def members(self) -> list[dict[str, Any]]:
        return [self.member()]

    def leader(self) -> dict[str, Any] | None:
        return self.member(with_identity=False) if self.store.is_leader else None
