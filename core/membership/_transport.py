"""UDP/TCP transport for swimprotocol's Worker, wire-compatible with its ``UdpTransport``.

swimprotocol's own ``UdpTransport`` is not used because:

- it unpickles every correctly signed packet with plain ``pickle.loads``; the signature
  secret is public when no ``--encrypt`` key is set, so anyone who can reach the gossip
  port could run code in the agent. Here only the packet classes may be unpickled, and
  the fields are type-checked before the Worker sees them (a malformed field would
  otherwise crash the Worker's handler loop);
- it binds with ``SO_REUSEPORT``, so a second node on a taken port would silently share
  it instead of failing;
- it fires untracked tasks and a thread pool that ``close()`` cannot reliably cancel.

The packet framing (salt, HMAC digest, pickle) is swimprotocol's, so a node running the
library's own transport with the same secret can still talk to us.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import ipaddress
import logging
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

from swimprotocol.members import Member
from swimprotocol.packet import Ack, Gossip, GossipAck, Packet, Ping, PingReq, Source
from swimprotocol.sign import Signatures
from swimprotocol.status import Status
from swimprotocol.udp.pack import UdpPack

__all__ = ["SafePack", "Transport", "bind_sockets", "split_name"]

log = logging.getLogger("dkron.membership")

# Bigger packets go over TCP, as the library does; below a 1500-byte Ethernet MTU minus
# IP/UDP headers so a datagram is never fragmented.
_MTU = 1400
# A TCP packet carries one gossip message; anything this big is garbage or an attack.
_TCP_MAX = 1 << 20
_TCP_SEND_TIMEOUT = 2.0

# Same layout as swimprotocol.udp.pack (salt length, digest length, payload length).
_PREFIX = struct.Struct("!BBI")

_ALLOWED_GLOBALS = frozenset(
    {
        ("swimprotocol.packet", cls.__name__)
        for cls in (Source, Ping, PingReq, Ack, Gossip, GossipAck)
    }
    | {("swimprotocol.status", "Status")}
)
_REAL_STATUSES = (Status.ONLINE, Status.OFFLINE, Status.SUSPECT)


class _PacketUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"gossip packet refers to {module}.{name}")
        return super().find_class(module, name)


def split_name(name: str) -> tuple[str, int] | None:
    """A swim member name ``host:port`` as (host, port), or None if it is not one."""
    host, sep, port_text = name.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        return None
    port = int(port_text)
    return (host, port) if 0 < port < 65536 else None


def _is_name(value: object) -> bool:
    return isinstance(value, str) and split_name(value) is not None


def _is_clock(value: object) -> bool:
    return type(value) is int and value >= 0


def _well_formed(packet: object) -> bool:
    source = getattr(packet, "source", None)
    if not (
        type(source) is Source and _is_name(source.name) and isinstance(source.validity, bytes)
    ):
        return False
    kind = type(packet)
    if kind is Ping or kind is Ack:
        return True
    if isinstance(packet, PingReq) and kind is PingReq:
        return _is_name(packet.target)
    if isinstance(packet, GossipAck) and kind is GossipAck:
        return _is_name(packet.name) and _is_clock(packet.clock)
    if isinstance(packet, Gossip) and kind is Gossip:
        metadata = packet.metadata
        return (
            _is_name(packet.name)
            and _is_clock(packet.clock)
            and type(packet.status) is Status
            and packet.status in _REAL_STATUSES
            and (
                metadata is None
                or (
                    type(metadata) is dict
                    and all(
                        isinstance(k, str) and isinstance(v, bytes) for k, v in metadata.items()
                    )
                )
            )
        )
    return False


class SafePack(UdpPack):
    """swimprotocol's packet format, unpickling only packet classes with sane fields."""

    def __init__(self, signatures: Signatures) -> None:
        super().__init__(signatures)

    def unpack(self, data: bytes) -> Packet | None:
        view = memoryview(data)
        salt_start = _PREFIX.size
        try:
            salt_len, digest_len, data_len = _PREFIX.unpack(
                self._xor_prefix(bytes(view[0:salt_start]))
            )
        except (struct.error, ValueError):
            return None
        digest_start = salt_start + salt_len
        data_start = digest_start + digest_len
        salt = bytes(view[salt_start:digest_start])
        digest = bytes(view[digest_start:data_start])
        pickled = bytes(view[data_start : data_start + data_len])
        if len(digest) != self.signatures.digest_size or len(pickled) != data_len:
            return None
        if not self.signatures.verify(pickled, (salt, digest)):
            return None
        try:
            packet = _PacketUnpickler(io.BytesIO(pickled)).load()
        except Exception:
            log.warning("gossip: dropped a signed packet that is not a SWIM packet")
            return None
        if not isinstance(packet, Packet) or not _well_formed(packet):
            log.warning("gossip: dropped a signed packet with malformed fields")
            return None
        return packet


def _family_of(host: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def bind_sockets(host_ip: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets bound to the same ``host_ip:port`` (port 0: any free one).

    No SO_REUSEPORT: a taken port must fail here, not be shared with another node.
    """
    family = _family_of(host_ip)
    attempts = 20 if port == 0 else 1
    last_error: OSError | None = None
    for _ in range(attempts):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.bind((host_ip, port))
            chosen = udp.getsockname()[1]
            # Lets a restarted node rebind while old connections sit in TIME_WAIT; on
            # Linux it does not allow two listeners on one port.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host_ip, chosen))
        except OSError as exc:
            udp.close()
            tcp.close()
            last_error = exc
            if port != 0 or exc.errno != errno.EADDRINUSE:
                break
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    assert last_error is not None
    reason = last_error.strerror or str(last_error)
    if last_error.errno == errno.EADDRINUSE:
        reason = "address already in use (another node or program holds it)"
    raise OSError(
        last_error.errno,
        f"gossip cannot listen on {host_ip}:{port} (UDP and TCP): {reason}",
    ) from last_error


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: Transport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.owner.received(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" for a dead peer: failure detection handles that.
        log.debug("gossip: UDP error: %s", exc)


class _Tcp(asyncio.Protocol):
    """One packet per connection, complete when the sender closes (as the library does)."""

    def __init__(self, owner: Transport) -> None:
        self.owner = owner
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _TCP_MAX and self.transport is not None:
            self.buffer = bytearray()
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        data, self.buffer = bytes(self.buffer), bytearray()
        if exc is None and data:
            self.owner.received(data)


class Transport:
    """Moves packets between the sockets and a swimprotocol Worker's queues."""

    def __init__(
        self,
        pack: SafePack,
        udp_sock: socket.socket,
        tcp_sock: socket.socket,
        deliver: Callable[[Packet], None],
    ) -> None:
        self._pack = pack
        self._udp_sock = udp_sock
        self._tcp_sock = tcp_sock
        self._deliver = deliver
        self._family = udp_sock.family
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), sock=self._udp_sock
            )
            self._server = await loop.create_server(lambda: _Tcp(self), sock=self._tcp_sock)
        except BaseException:
            self.close_sockets()
            raise

    def received(self, data: bytes) -> None:
        if self._closed:
            return
        packet = self._pack.unpack(data)
        if packet is not None:
            self._deliver(packet)

    async def run_sender(self, queue: asyncio.Queue[tuple[Member, Packet]]) -> None:
        while True:
            member, packet = await queue.get()
            self.send(member.name, packet)

    def send(self, name: str, packet: Packet) -> None:
        address = split_name(name)
        if address is None or self._udp is None or self._closed:
            return
        host, port = address
        try:
            if _family_of(host) != self._family:
                return
        except ValueError:
            # Names are IP literals for every dkron-py node; resolving a foreign node's
            # hostname here would block the loop.
            log.debug("gossip: not sending to %s: not an IP address", name)
            return
        data = bytes(self._pack.pack(packet))
        if len(data) <= _MTU:
            self._udp.sendto(data, (host, port))
            return
        task = asyncio.ensure_future(self._tcp_send(host, port, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tcp_send(self, host: str, port: int, data: bytes) -> None:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), _TCP_SEND_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            log.debug("gossip: TCP send to %s:%d failed: %s", host, port, exc)
            return
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), _TCP_SEND_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.debug("gossip: TCP send to %s:%d failed: %s", host, port, exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), _TCP_SEND_TIMEOUT)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.close_sockets()

    def close_sockets(self) -> None:
        # The asyncio transports own the sockets once started; closing twice is harmless.
        self._udp_sock.close()
        self._tcp_sock.close()
