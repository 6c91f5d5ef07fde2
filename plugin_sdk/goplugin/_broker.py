"""go-plugin's GRPCBroker, both ends.

The host opens one never-ending ``StartStream`` per plugin; either side writes
``ConnInfo{service_id, network, address}`` to announce a listener the other side
may dial (Dkron's host, for one, announces a StatusHelper server per execution and
the plugin dials it to stream output back).

* :class:`PluginBroker` is the plugin's end (sync gRPC): it records announcements
  and lets :meth:`PluginBroker.dial` wait for one, up to 5 s, as go-plugin does.
* :class:`HostBroker` is the host's end (grpc.aio): it allocates ids from 1 and
  announces listeners on the stream it keeps open for the plugin's whole life.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio

from dkron_pb.plugin import grpc_broker_pb2 as broker_pb
from dkron_pb.plugin import grpc_broker_pb2_grpc as broker_grpc

__all__ = ["DIAL_TIMEOUT", "GRPC_OPTIONS", "BrokerClosed", "HostBroker", "PluginBroker"]

log = logging.getLogger("plugin_sdk.goplugin")

# go-plugin waits this long for an announcement, and forgets unclaimed ones after it.
DIAL_TIMEOUT = 5.0
_MAX_MESSAGE = 2**31 - 1
# Announcements held before expired ones are swept on arrival.
_PRUNE_ABOVE = 64
# Brokered connections kept open for reuse (per distinct host address). Dkron-py's host
# keeps one StatusHelper server per execution running at once (pooled), so this is the
# burst of concurrent executions a plugin serves without redialing.
_MAX_CACHED_CHANNELS = 256
# go-plugin raises both limits to MaxInt32; grpc-python would otherwise cap receives at 4 MiB.
GRPC_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
]


class BrokerClosed(Exception):
    """The broker stream ended; no further announcements can arrive."""


def _refusal(info: broker_pb.ConnInfo) -> broker_pb.ConnInfo:
    # Multiplexed brokering is never negotiated by us; answer a knock with a clear refusal.
    return broker_pb.ConnInfo(
        service_id=info.service_id,
        knock=broker_pb.ConnInfo.Knock(knock=True, ack=True, error="multiplexing not supported"),
    )


def _is_knock(info: broker_pb.ConnInfo) -> bool:
    return info.HasField("knock") and info.knock.knock


class PluginBroker(broker_grpc.GRPCBrokerServicer):
    """The plugin side: serves StartStream and resolves ids the host announced."""

    def __init__(self) -> None:
        self._announced: dict[int, tuple[broker_pb.ConnInfo, float]] = {}
        self._lock = threading.RLock()
        # One condition per id being waited for (all on ``_lock``): an
        # announcement wakes the one call waiting for it. Waking every waiter on every
        # announcement cost O(n^2) wake-ups in a burst of n executions, which starved
        # the thread reading the stream and held the burst's starts back.
        self._waiters: dict[int, threading.Condition] = {}
        self._outgoing: queue.Queue[broker_pb.ConnInfo | None] = queue.Queue()
        self._closed = False
        self._channels: dict[str, grpc.Channel] = {}
        # Ids whose call is in flight: their announcement is kept past DIAL_TIMEOUT
        # because the executor may dial late (on its first update).
        self._claimed: set[int] = set()

    def StartStream(
        self, request_iterator: Iterator[broker_pb.ConnInfo], context: grpc.ServicerContext
    ) -> Iterator[broker_pb.ConnInfo]:
        # The request side is consumed on its own thread while this handler yields replies.
        threading.Thread(
            target=self._receive, args=(request_iterator,), name="broker-recv", daemon=True
        ).start()
        while True:
            item = self._outgoing.get()
            if item is None:
                return
            yield item

    def _receive(self, requests: Iterator[broker_pb.ConnInfo]) -> None:
        try:
            for info in requests:
                if _is_knock(info):
                    self._outgoing.put(_refusal(info))
                    continue
                with self._lock:
                    now = time.monotonic()
                    self._announced[info.service_id] = (info, now)
                    if len(self._announced) > _PRUNE_ABOVE:
                        self._prune(now)
                    waiter = self._waiters.get(info.service_id)
                    if waiter is not None:
                        waiter.notify_all()
        except grpc.RpcError as exc:
            log.debug("broker stream ended: %s", exc)
        finally:
            # As in go-plugin, the broker is closed for good once its stream ends.
            with self._lock:
                self._closed = True
                for waiter in self._waiters.values():
                    waiter.notify_all()
            self._outgoing.put(None)

    def _take(self, service_id: int, deadline: float) -> broker_pb.ConnInfo:
        with self._lock:
            if service_id not in self._announced:
                # The RPC carrying the id can overtake its announcement (go-plugin §6.2.4).
                log.debug("waiting for connection info", extra={"service_id": service_id})
            waiter = self._waiters.get(service_id)
            if waiter is None:
                waiter = self._waiters[service_id] = threading.Condition(self._lock)
            try:
                while True:
                    now = time.monotonic()
                    self._prune(now, keep=service_id)
                    entry = self._announced.pop(service_id, None)
                    if entry is not None:
                        return entry[0]
                    if self._closed:
                        raise BrokerClosed("broker closed")
                    if now >= deadline:
                        raise TimeoutError("timeout waiting for connection info")
                    waiter.wait(deadline - now)
            finally:
                self._waiters.pop(service_id, None)

    def _prune(self, now: float, keep: int = 0) -> None:
        # Unclaimed announcements are forgotten after DIAL_TIMEOUT, as in go-plugin;
        # silent executions never dial, so without this they would pile up.
        for sid, (_, arrived) in list(self._announced.items()):
            if now - arrived > DIAL_TIMEOUT and sid != keep and sid not in self._claimed:
                del self._announced[sid]

    def claim(self, service_id: int) -> None:
        """Keep ``service_id``'s announcement until :meth:`release`, however late the dial."""
        with self._lock:
            self._claimed.add(service_id)

    def release(self, service_id: int) -> None:
        with self._lock:
            self._claimed.discard(service_id)
            self._announced.pop(service_id, None)

    def dial(self, service_id: int, timeout: float = DIAL_TIMEOUT) -> grpc.Channel:
        """A channel to the server the host announced as ``service_id``.

        Channels are shared per address: a host that reuses a server for several
        ids (ours pools them) is reached over one connection. Callers must not
        close the channel; the broker does, when it evicts it or shuts down.
        """
        info = self._take(service_id, time.monotonic() + timeout)
        target = f"unix:{info.address}" if info.network == "unix" else info.address
        with self._lock:
            channel = self._channels.pop(target, None)
            if channel is None:
                channel = grpc.insecure_channel(target, options=GRPC_OPTIONS)
            self._channels[target] = channel  # most recently used last
            evicted = []
            while len(self._channels) > _MAX_CACHED_CHANNELS:
                evicted.append(self._channels.pop(next(iter(self._channels))))
        for old in evicted:
            old.close()
        return channel

    def close(self) -> None:
        self._outgoing.put(None)


class HostBroker:
    """The host side: one never-ending StartStream, ids from 1, announcements on demand."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = broker_grpc.GRPCBrokerStub(channel)
        self._outgoing: asyncio.Queue[broker_pb.ConnInfo | None] = asyncio.Queue()
        self._last_id = 0
        self._call: Any = None
        self._receiver: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    def start(self) -> None:
        self._call = self._stub.StartStream(self._requests())
        self._receiver = asyncio.create_task(self._receive(), name="broker-recv")

    def next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    async def _requests(self) -> AsyncIterator[broker_pb.ConnInfo]:
        # Never finishes on its own: a finished iterator half-closes the stream,
        # which closes a Go plugin's broker for good.
        while (info := await self._outgoing.get()) is not None:
            yield info

    async def _receive(self) -> None:
        try:
            async for info in self._call:
                if _is_knock(info):
                    self._outgoing.put_nowait(_refusal(info))
                else:
                    # This end never dials plugin-side servers; nothing to keep.
                    log.debug("ignoring plugin announcement", extra={"id": info.service_id})
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            log.debug("broker stream ended: %s", exc)
        finally:
            self.closed.set()

    def announce(self, service_id: int, network: str, address: str) -> None:
        """Queue an announcement; the stream writes it before anything queued later.

        The call that carries the id travels on another HTTP/2 stream and may
        arrive first either way; go-plugin's dial waits up to 5 s for the id.
        """
        if self.closed.is_set():
            raise BrokerClosed("broker stream is closed")
        info = broker_pb.ConnInfo(service_id=service_id, network=network, address=address)
        self._outgoing.put_nowait(info)

    async def close(self) -> None:
        self._outgoing.put_nowait(None)
        if self._call is not None:
            self._call.cancel()
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
