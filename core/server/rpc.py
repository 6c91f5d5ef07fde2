"""Dkron's server-to-server gRPC service (``types.v1.DkronService``), on servers only.

Calls that must run on the leader (ExecutionDone, RunJob, RaftRemovePeerByID) are
forwarded to it by a follower, so agents and the CLI may call any server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import grpc
import grpc.aio
from google.protobuf import empty_pb2

from core.acl import AclService
from core.jobs.model import Execution, Job
from core.security.rpc import NODE, OPEN, Access, TokenCheck, management_only
from core.store.base import ReplicationError
from core.store.state import NotFound, StoreError
from core.wire import execution_from_proto, execution_to_proto, job_to_proto
from dkron_pb.types.v1 import dkron_pb2, dkron_pb2_grpc

__all__ = ["RPC_ACCESS", "DkronRpcService", "RaftPeers", "RpcBackend", "acl_token_check"]

log = logging.getLogger("dkron.rpc")

_FORWARD_TIMEOUT = 10.0
_USE_REST = "not served over gRPC by dkron-py: use the REST API v1 on any server"

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

_DKRON = "/types.v1.DkronService/"
_ACL = "/dkronpy.v1.AclService/"


def _job_path(suffix: str) -> Any:
    def path(request: Any) -> tuple[str | None, str]:
        return f"/v1/jobs/{request.job_name}{suffix}", "create" if suffix else "read"

    return path


def _client(path: str, capability: str) -> Access:
    return Access("client", lambda _request: (path, capability))


#: Who may call each method on the RPC port (core.security.rpc.RpcGuard enforces it):
#: node-to-node calls need the cluster key's credentials; the CLI's calls also take an
#: ACL token, checked as the REST route they mirror (or management-only).
RPC_ACCESS: dict[str, Access] = {
    "/types.v1.AgentService/AgentRun": NODE,
    _DKRON + "ExecutionDone": NODE,
    _DKRON + "SetJob": NODE,
    _DKRON + "DeleteJob": NODE,
    _DKRON + "ToggleJob": NODE,
    _DKRON + "SetExecution": NODE,
    _DKRON + "RunJob": Access("client", _job_path("/run")),
    _DKRON + "GetJob": Access("client", _job_path("")),
    _DKRON + "GetActiveExecutions": _client("/v1/busy", "read"),
    _DKRON + "Leave": _client("/v1/leave", "create"),
    _DKRON + "RaftGetConfiguration": Access("client", management_only),
    _DKRON + "RaftRemovePeerByID": Access("client", management_only),
    _ACL + "Bootstrap": OPEN,
    **{
        _ACL + name: Access("client", management_only)
        for name in (
            "ApplyPolicy",
            "ListPolicies",
            "GetPolicy",
            "DeletePolicy",
            "CreateToken",
            "ListTokens",
            "GetToken",
            "DeleteToken",
        )
    },
}


def acl_token_check(acl: AclService) -> Callable[[], TokenCheck | None]:
    """How the RPC guard checks a client call's ACL token, asked per call (None: ACLs
    are off), as the REST route the call mirrors would."""

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

    return lambda: check if acl.enabled else None


class RaftPeers(Protocol):
    """The Raft configuration, as the RPC service reports and changes it."""

    @property
    def leader(self) -> str | None: ...
    @property
    def applied_index(self) -> int: ...
    def raft_peers(self) -> list[str]: ...
    async def remove_peer(self, address: str) -> None: ...


class RpcBackend(Protocol):
    """What the RPC service calls on its server (core.node.DkronServer is one)."""

    @property
    def node_name(self) -> str: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def raft_address(self) -> str: ...
    @property
    def raft(self) -> RaftPeers: ...
    def leader_rpc_address(self) -> str | None: ...
    def channel(self, address: str) -> grpc.aio.Channel: ...
    def node_name_of_raft_address(self, address: str) -> str: ...
    def raft_address_of(self, id_or_address: str) -> str | None: ...
    def get_job(self, name: str) -> Job | None: ...
    async def run_job(self, name: str) -> Job: ...
    async def record_done(self, execution: Execution) -> str:
        """Record a node's fallback report of a finished run (leader only)."""
        ...

    def active_executions(self) -> list[Execution]:
        """The runs this node's agent is running now."""
        ...

    def request_leave(self) -> None: ...


class DkronRpcService(dkron_pb2_grpc.DkronServiceServicer):
    def __init__(self, server: RpcBackend) -> None:
        self._server = server

    async def _forward(self, method: str, request: Any, context: Context) -> Any:
        """Make the same call on the leader and pass its answer (or error) back."""
        address = self._server.leader_rpc_address()
        if address is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no raft leader")
        assert address is not None
        stub = dkron_pb2_grpc.DkronServiceStub(self._server.channel(address))
        try:
            return await getattr(stub, method)(request, timeout=_FORWARD_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "forwarding failed")

    async def ExecutionDone(
        self, request: dkron_pb2.ExecutionDoneRequest, context: Context
    ) -> dkron_pb2.ExecutionDoneResponse:
        server = self._server
        if not server.is_leader:
            reply: dkron_pb2.ExecutionDoneResponse = await self._forward(
                "ExecutionDone", request, context
            )
            return reply
        execution = execution_from_proto(request.execution)
        try:
            payload = await server.record_done(execution)
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except (StoreError, ReplicationError) as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return dkron_pb2.ExecutionDoneResponse(
            **{"from": server.node_name}, payload=payload.encode()
        )

    async def RunJob(
        self, request: dkron_pb2.RunJobRequest, context: Context
    ) -> dkron_pb2.RunJobResponse:
        try:
            job = await self._server.run_job(request.job_name)  # forwards to the leader
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return dkron_pb2.RunJobResponse(job=job_to_proto(job))

    async def GetJob(
        self, request: dkron_pb2.GetJobRequest, context: Context
    ) -> dkron_pb2.GetJobResponse:
        job = self._server.get_job(request.job_name)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "job not found")
        assert job is not None
        message = dkron_pb2.Job(
            name=job.name, executor=job.executor, executor_config=dict(job.executor_config or {})
        )
        return dkron_pb2.GetJobResponse(job=message)

    async def RaftGetConfiguration(
        self, request: empty_pb2.Empty, context: Context
    ) -> dkron_pb2.RaftGetConfigurationResponse:
        server = self._server
        raft = server.raft
        leader = raft.leader
        reply = dkron_pb2.RaftGetConfigurationResponse(index=raft.applied_index)
        for address in raft.raft_peers():
            name = server.node_name_of_raft_address(address)
            reply.servers.append(
                dkron_pb2.RaftServer(
                    id=name,
                    node=name,
                    address=address,
                    leader=address == leader,
                    voter=True,
                    raft_protocol="3",
                )
            )
        return reply

    async def RaftRemovePeerByID(
        self, request: dkron_pb2.RaftRemovePeerByIDRequest, context: Context
    ) -> empty_pb2.Empty:
        server = self._server
        address = server.raft_address_of(request.id)
        if address is None or address not in server.raft.raft_peers():
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f'id "{request.id}" was not found in the Raft configuration',
            )
        assert address is not None
        if not server.is_leader:
            await self._forward("RaftRemovePeerByID", request, context)
            return empty_pb2.Empty()
        if address == server.raft_address:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "cannot remove the leader itself; make it leave (POST /v1/leave) instead",
            )
        try:
            await server.raft.remove_peer(address)
        except ReplicationError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return empty_pb2.Empty()

    async def GetActiveExecutions(
        self, request: empty_pb2.Empty, context: Context
    ) -> dkron_pb2.GetActiveExecutionsResponse:
        running = self._server.active_executions()
        return dkron_pb2.GetActiveExecutionsResponse(
            executions=[execution_to_proto(e) for e in running]
        )

    async def Leave(self, request: empty_pb2.Empty, context: Context) -> empty_pb2.Empty:
        self._server.request_leave()
        return empty_pb2.Empty()

    # Job writes go through the REST API (any server), which replicates them itself.

    async def SetJob(
        self, request: dkron_pb2.SetJobRequest, context: Context
    ) -> dkron_pb2.SetJobResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _USE_REST)
        raise AssertionError  # abort raises

    async def DeleteJob(
        self, request: dkron_pb2.DeleteJobRequest, context: Context
    ) -> dkron_pb2.DeleteJobResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _USE_REST)
        raise AssertionError

    async def ToggleJob(
        self, request: dkron_pb2.ToggleJobRequest, context: Context
    ) -> dkron_pb2.ToggleJobResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _USE_REST)
        raise AssertionError

    async def SetExecution(self, request: dkron_pb2.Execution, context: Context) -> empty_pb2.Empty:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, _USE_REST)
        raise AssertionError
