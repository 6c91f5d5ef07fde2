"""Who may call what on the gRPC port: per-call credentials from the cluster key, ACL
tokens for the client calls, and the server interceptor that enforces both.

**Node credentials.** With a cluster key, every node-to-node call carries
``dkron-node-auth: v1.<unix ms>.<nonce>.<mac>``, where the MAC is HMAC-SHA256 under a
key derived from ``--encrypt`` over the method, the time, the nonce and the SHA-256 of
the request's deterministic serialization. A server accepts it within ``WINDOW`` seconds
of its own clock and only once (nonces are remembered for twice the window), so a
captured call can be neither altered nor replayed. This authenticates; it does not
encrypt (that is what ``--cert-file``/``--key-file`` TLS on the RPC port is for).

**Client calls** (the CLI's ``raft``, ``acl``, run and leave calls) accept node
credentials or, when ACLs are on, ``authorization: Bearer <secret>`` checked against
the token's policies like the REST route the call mirrors.

Without a cluster key there are no node credentials: node-to-node calls are open, as in
Dkron's open-source build (the agent refuses to listen beyond loopback that way unless
told ``--insecure``, and refuses ACLs without a key).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

__all__ = [
    "NODE_AUTH_HEADER",
    "WINDOW",
    "Access",
    "CallSigner",
    "CallVerifier",
    "RpcGuard",
    "TokenCheck",
    "bearer",
    "node_interceptors",
    "sync_node_interceptor",
    "token_metadata",
]

log = logging.getLogger("dkron.security")

NODE_AUTH_HEADER = "dkron-node-auth"
TOKEN_HEADER = "authorization"
WINDOW = 60.0  # seconds of clock difference between nodes that are tolerated
_VERSION = "v1"
_NONCE_BYTES = 16
_MAX_REMEMBERED = 1_000_000


def _body(request: Any) -> bytes:
    serialize = getattr(request, "SerializeToString", None)
    if serialize is None:
        return b""
    data: bytes = serialize(deterministic=True)
    return data


def _method_name(method: str | bytes) -> str:
    return method.decode() if isinstance(method, bytes) else method


def _mac(key: bytes, method: str, stamp: str, nonce: str, body: bytes) -> str:
    message = f"{_VERSION}\n{method}\n{stamp}\n{nonce}\n".encode() + hashlib.sha256(body).digest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class CallSigner:
    """Makes the node credentials of one call."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock

    def sign(self, method: str, request: Any) -> str:
        stamp = str(int(self._clock() * 1000))
        nonce = os.urandom(_NONCE_BYTES).hex()
        mac = _mac(self._key, method, stamp, nonce, _body(request))
        return f"{_VERSION}.{stamp}.{nonce}.{mac}"


class CallVerifier:
    """Checks node credentials: a valid MAC, a fresh time, a nonce not seen before."""

    def __init__(
        self, key: bytes, window: float = WINDOW, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self._window = window
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._order: collections.deque[tuple[float, str]] = collections.deque()

    def refusal(self, method: str, request: Any, value: str) -> str | None:
        """None if ``value`` authenticates this call, else why not."""
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            return "malformed node credentials"
        _, stamp, nonce, mac = parts
        if not stamp.isdigit() or len(nonce) != 2 * _NONCE_BYTES:
            return "malformed node credentials"
        expected = _mac(self._key, method, stamp, nonce, _body(request))
        if not hmac.compare_digest(expected, mac):
            return "node credentials do not match (another cluster key, or an altered call)"
        now = self._clock()
        age = now - int(stamp) / 1000
        if abs(age) > self._window:
            return (
                f"node credentials are {age:+.0f}s off this server's clock (more than "
                f"{self._window:g}s: check the clocks)"
            )
        self._forget(now)
        if nonce in self._seen:
            return "node credentials were already used (a replayed call)"
        self._seen[nonce] = now
        self._order.append((now, nonce))
        return None

    def _forget(self, now: float) -> None:
        horizon = now - 2 * self._window
        while self._order and (self._order[0][0] < horizon or len(self._order) > _MAX_REMEMBERED):
            _, nonce = self._order.popleft()
            self._seen.pop(nonce, None)


# -- client side -------------------------------------------------------------------------------


def _with_metadata(details: Any, extra: Sequence[tuple[str, str]]) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or ())
    metadata.extend(extra)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _AioSigning:
    def __init__(self, signer: CallSigner) -> None:
        self._signer = signer

    def _details(self, details: Any, request: Any) -> grpc.aio.ClientCallDetails:
        value = self._signer.sign(_method_name(details.method), request)
        return _with_metadata(details, [(NODE_AUTH_HEADER, value)])


# grpc.aio files an interceptor under the first kind it is an instance of: one class each.
class _AioSigningUnary(_AioSigning, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details, request), request)


class _AioSigningStream(_AioSigning, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details, request), request)


def node_interceptors(signer: CallSigner | None) -> list[Any]:
    """Client interceptors for a node's channels (none without a cluster key)."""
    return [] if signer is None else [_AioSigningUnary(signer), _AioSigningStream(signer)]


class _SyncCallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, details: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _SyncHeaders(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """For dkronctl's blocking calls: node credentials and/or an ACL token."""

    def __init__(self, signer: CallSigner | None, token: str | None) -> None:
        self._signer = signer
        self._token = token

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        metadata = list(client_call_details.metadata or ())
        if self._signer is not None:
            method = _method_name(client_call_details.method)
            metadata.append((NODE_AUTH_HEADER, self._signer.sign(method, request)))
        metadata.extend(token_metadata(self._token))
        return continuation(_SyncCallDetails(client_call_details, metadata), request)


def sync_node_interceptor(signer: CallSigner | None, token: str | None) -> Any:
    return _SyncHeaders(signer, token)


def token_metadata(token: str | None) -> list[tuple[str, str]]:
    return [(TOKEN_HEADER, f"Bearer {token}")] if token else []


def bearer(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The secret of ``authorization: Bearer <secret>``, or None."""
    for key, value in metadata or ():
        if key.lower() == TOKEN_HEADER:
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, secret = text.partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
    return None


# -- server side -------------------------------------------------------------------------------

#: ``(secret or None, path, capability) -> (grpc code, reason)`` or None if allowed;
#: ``path`` None means the call needs a management token.
TokenCheck = Callable[[str | None, str | None, str], tuple[grpc.StatusCode, str] | None]


@dataclass(frozen=True)
class Access:
    """What a method needs. ``node``: node credentials only; ``client``: node
    credentials or an ACL token allowed by ``acl(request)`` -> (path, capability), where a
    None path means management tokens only; ``open``: nothing (ACL bootstrap)."""

    kind: str
    acl: Callable[[Any], tuple[str | None, str]] | None = None


NODE = Access("node")
OPEN = Access("open")


def management_only(_request: Any) -> tuple[str | None, str]:
    return None, "write"


class RpcGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Enforces :class:`Access` per method; unknown methods need node credentials."""

    def __init__(
        self,
        verifier: CallVerifier | None,
        access: Mapping[str, Access],
        token_check: Callable[[], TokenCheck | None],
    ) -> None:
        self._verifier = verifier
        self._access = access
        self._token_check = token_check

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = _method_name(handler_call_details.method)
        access = self._access.get(method, NODE)
        if handler is None or access.kind == "open":
            return handler
        metadata = tuple(handler_call_details.invocation_metadata or ())
        check = self._check

        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await check(method, access, metadata, request, context)
                return await inner_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                await check(method, access, metadata, request, context)
                async for item in inner_stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # No streaming-request calls are served; refuse rather than serve unchecked.
        return grpc.unary_unary_rpc_method_handler(_refuse_streaming)

    async def _check(
        self,
        method: str,
        access: Access,
        metadata: Sequence[tuple[str, Any]],
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        credentials = None
        for key, value in metadata:
            if key == NODE_AUTH_HEADER:
                credentials = value.decode() if isinstance(value, bytes) else str(value)
        verifier = self._verifier
        if credentials is not None and verifier is not None:
            reason = verifier.refusal(method, request, credentials)
            if reason is None:
                return
            log.warning("refused %s from %s: %s", method, context.peer(), reason)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        token_check = self._token_check()
        if access.kind == "client" and access.acl is not None and token_check is not None:
            path, capability = access.acl(request)
            refusal = token_check(bearer(metadata), path, capability)
            if refusal is None:
                return
            code, reason = refusal
            await context.abort(code, reason)
        if verifier is None and token_check is None:
            return  # no cluster key and no ACLs: open, as Dkron's open-source build
        reason = (
            "this call needs the cluster key's node credentials"
            if access.kind == "node"
            else "this call needs an ACL token (authorization: Bearer <secret>) or the cluster key"
        )
        log.warning("refused %s from %s: %s", method, context.peer(), reason)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)


async def _refuse_streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "streaming requests are not served")
