"""gRPC channels from this node to others, with its credentials: node call signatures
when the cluster has a key, TLS when the operator gave certificates. One cache per node,
shared by the dispatcher, forwarding and reports."""

from __future__ import annotations

import grpc.aio

from core.security.rpc import CallSigner, node_interceptors
from core.security.tls import TlsFiles

__all__ = ["NodeChannels"]


class NodeChannels:
    def __init__(self, signer: CallSigner | None = None, tls: TlsFiles | None = None) -> None:
        self._interceptors = node_interceptors(signer)
        self._credentials = tls.grpc_channel_credentials() if tls and tls.enabled else None
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address, interceptors=self._interceptors)
            else:
                channel = grpc.aio.secure_channel(
                    address, self._credentials, interceptors=self._interceptors
                )
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
