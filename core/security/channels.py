"""gRPC channels from this node to others, with its credentials: node call signatures
when the cluster has a key, TLS when the operator gave certificates. One cache per node,
shared by the dispatcher, forwarding and reports."""

from __future__ import annotations

import asyncio

import grpc.aio

from core.security.rpc import CallSigner, node_interceptors
from core.security.tls import TlsFiles

__all__ = ["NodeChannels"]

_FORGOTTEN_GRACE = 10.0


class NodeChannels:
    def __init__(self, signer: CallSigner | None = None, tls: TlsFiles | None = None) -> None:
        self._interceptors = node_interceptors(signer)
        self._credentials = tls.grpc_channel_credentials() if tls and tls.enabled else None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Future[None]] = set()

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

    def forget(self, address: str) -> None:
        """Drop the channel to ``address``: the next call dials afresh, without the
        back-off gRPC keeps after failed connections. It is closed a while later, once
        whoever still holds it (other runs waiting on the same node) has let go."""
        channel = self._channels.pop(address, None)
        if channel is not None:
            task = asyncio.ensure_future(self._close_later(channel))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_later(channel: grpc.aio.Channel) -> None:
        try:
            await asyncio.sleep(_FORGOTTEN_GRACE)
        finally:
            await channel.close()

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
        for task in list(self._closing):
            task.cancel()  # closes its channel now
        await asyncio.gather(*self._closing, return_exceptions=True)
