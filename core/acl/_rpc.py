"""``dkronpy.v1.AclService``: what ``dkronctl acl ...`` calls on a server's RPC port.
Who may call it is decided before a call gets here (core.server.rpc.RPC_ACCESS)."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
import grpc.aio
from google.protobuf import empty_pb2, timestamp_pb2

from core.acl._policy import PolicyError
from core.acl._service import AclService, IssuedToken
from core.security.rpc import bearer
from core.store.commands import AclPolicy, AclToken
from core.store.state import NotFound, StoreError
from dkron_pb.dkronpy.v1 import acl_pb2, acl_pb2_grpc

__all__ = ["AclRpcService", "token_to_proto"]

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def token_to_proto(token: AclToken, secret: str = "") -> acl_pb2.AclToken:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(token.create_time)
    return acl_pb2.AclToken(
        accessor_id=token.accessor_id,
        secret=secret,
        name=token.name,
        type=token.type,
        policies=list(token.policies),
        create_time=stamp,
    )


def _policy(policy: AclPolicy) -> acl_pb2.AclPolicy:
    return acl_pb2.AclPolicy(name=policy.name, rules=policy.rules)


class AclRpcService(acl_pb2_grpc.AclServiceServicer):
    def __init__(self, acl: AclService) -> None:
        self._acl = acl

    async def _write(self, context: Context, work: Any) -> Any:
        if not self._acl.enabled:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "ACLs are not enabled on this server (acl: {enabled: true} in its config)",
            )
        try:
            return await work
        except PolicyError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except StoreError as exc:
            code = (
                grpc.StatusCode.ALREADY_EXISTS
                if "already done" in str(exc)
                else grpc.StatusCode.FAILED_PRECONDITION
            )
            await context.abort(code, str(exc))
        except Exception as exc:  # a replication failure: say so, do not hang the CLI
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    async def Bootstrap(self, request: empty_pb2.Empty, context: Context) -> acl_pb2.AclToken:
        issued: IssuedToken = await self._write(context, self._acl.bootstrap())
        return token_to_proto(issued.token, issued.secret)

    async def ApplyPolicy(self, request: acl_pb2.AclPolicy, context: Context) -> acl_pb2.AclPolicy:
        policy: AclPolicy = await self._write(
            context, self._acl.apply_policy(request.name, request.rules)
        )
        return _policy(policy)

    async def ListPolicies(
        self, request: empty_pb2.Empty, context: Context
    ) -> acl_pb2.AclPolicyList:
        return acl_pb2.AclPolicyList(policies=[_policy(p) for p in self._acl.policies()])

    async def GetPolicy(
        self, request: acl_pb2.AclPolicyName, context: Context
    ) -> acl_pb2.AclPolicy:
        policy = self._acl.policy(request.name)
        if policy is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"ACL policy {request.name!r} not found")
        assert policy is not None
        return _policy(policy)

    async def DeletePolicy(
        self, request: acl_pb2.AclPolicyName, context: Context
    ) -> empty_pb2.Empty:
        await self._write(context, self._acl.delete_policy(request.name))
        return empty_pb2.Empty()

    async def CreateToken(
        self, request: acl_pb2.CreateTokenRequest, context: Context
    ) -> acl_pb2.AclToken:
        issued: IssuedToken = await self._write(
            context,
            self._acl.create_token(request.name, request.type or "client", list(request.policies)),
        )
        return token_to_proto(issued.token, issued.secret)

    async def ListTokens(self, request: empty_pb2.Empty, context: Context) -> acl_pb2.AclTokenList:
        return acl_pb2.AclTokenList(tokens=[token_to_proto(t) for t in self._acl.tokens()])

    def _lookup(self, request: acl_pb2.TokenQuery, context: Context) -> AclToken | None:
        if request.accessor_id:
            return self._acl.token(request.accessor_id)
        return self._acl.resolve(bearer(context.invocation_metadata()))

    async def GetToken(self, request: acl_pb2.TokenQuery, context: Context) -> acl_pb2.AclToken:
        token = self._lookup(request, context)
        if token is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "ACL token not found")
        assert token is not None
        return token_to_proto(token)

    async def DeleteToken(self, request: acl_pb2.TokenQuery, context: Context) -> empty_pb2.Empty:
        token = self._lookup(request, context)
        if token is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "ACL token not found")
        assert token is not None
        await self._write(context, self._acl.delete_token(token.accessor_id))
        return empty_pb2.Empty()
