"""A live check of one plugin binary: start it, read its handshake, list its services."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from core.plugins.discovery import PluginBinary
from plugin_sdk.goplugin import PluginError
from plugin_sdk.protocol import PluginClient

__all__ = ["ProbeResult", "probe"]


@dataclass
class ProbeResult:
    ok: bool
    handshake: str = ""
    protocol: str = ""
    network: str = ""
    app_version: int = 0
    services: list[str] = field(default_factory=list)
    healthy: bool = False
    start_ms: float = 0.0
    error: str = ""


async def _list_services(client: PluginClient) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    try:
        async for reply in stub.ServerReflectionInfo(requests(), timeout=2.0):
            return sorted(s.name for s in reply.list_services_response.service)
    except grpc.aio.AioRpcError:
        return []  # no reflection: services unknown, not an error
    return []


async def probe(binary: PluginBinary, start_timeout: float = 10.0) -> ProbeResult:
    started = time.perf_counter()
    try:
        client = await PluginClient.launch(
            [str(binary.path)], name=binary.name, start_timeout=start_timeout
        )
    except PluginError as exc:
        return ProbeResult(ok=False, error=exc.cause)
    try:
        elapsed = (time.perf_counter() - started) * 1000
        handshake = client.handshake
        assert handshake is not None
        return ProbeResult(
            ok=True,
            handshake="ok",
            protocol=handshake.protocol,
            network=handshake.network,
            app_version=handshake.app_version,
            services=await _list_services(client),
            healthy=await client.ping(2.0),
            start_ms=round(elapsed, 1),
        )
    finally:
        await client.shutdown()
