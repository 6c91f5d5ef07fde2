"""What pysyncobj may decode: its own Raft messages, and nothing else.

pysyncobj 0.3.17 decodes every frame from any peer, every log entry it applies and its
journal's metadata with ``pickle.loads``, so a single frame can run code in the agent.
It offers no hook for this, so :func:`install` replaces the decoding at its three
points (one module function and the connection class its transport builds):

- **A restricted unpickler** admits only the globals pysyncobj's own messages use:
  ``set``/``frozenset``, the protocol-2 spelling of ``bytes`` (checked to be harmless),
  and pysyncobj's ``TCPNode`` (membership changes carry one). Store commands are not
  pickled at all (``core.store.codec``), so no class of ours is ever admitted.
- **Bounded frames**: a frame's length is checked before it is buffered, compressed
  frames are inflated with a ceiling (no zlib bombs), and a connection that has not
  proved it holds the cluster key may send only a key-exchange-sized frame.
- **Refusals are logged** with the peer's address, once per peer per interval, and the
  connection is dropped.

:class:`GuardedTransport` also refuses pysyncobj's unauthenticated side doors: the
"utility" admin commands (add or remove a server, change the code version) and
"readonly" connections (which are sent the whole log), neither of which dkron-py uses.
"""

from __future__ import annotations

import io
import logging
import pickle
import struct
import threading
import time
import zlib
from typing import Any

import pysyncobj.journal
import pysyncobj.pickle
import pysyncobj.tcp_connection
import pysyncobj.tcp_server
import pysyncobj.transport
import pysyncobj.version
from pysyncobj.node import Node, TCPNode
from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.transport import TCPTransport

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_MESSAGE_BYTES",
    "GuardedTransport",
    "RefusedPickle",
    "install",
    "safe_loads",
]

log = logging.getLogger("dkron.raft.wire")

# The largest frame a peer may send once connected: an append-entries batch is kept
# to about 64 MiB (core.store.raft), and an encrypted frame is base64 (4/3 larger).
MAX_FRAME_BYTES = 128 << 20
# The most a frame may inflate to (a batch is at most 64 MiB of entries).
MAX_MESSAGE_BYTES = 96 << 20
# Before a peer has sent one frame that decrypts with the cluster key, it may only send
# its 32-byte key-exchange token (as a Fernet token, well under this).
_PRE_AUTH_FRAME_BYTES = 4096
_LOG_INTERVAL = 10.0
_SUPPORTED_VERSION = "0.3.17"
_FRAME_LENGTH = struct.Struct("i")


class RefusedPickle(pickle.UnpicklingError):
    """A pickle that refers to something pysyncobj's messages never contain."""


def _harmless_bytes(*args: Any) -> bytes:
    # Protocol 2 writes b"" as ``__builtin__.bytes()``; bytes(n) would allocate n bytes.
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], bytes | bytearray | list):
        data = bytes(args[0])
        return data
    raise RefusedPickle("bytes() called with arguments pysyncobj never writes")


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    # Protocol 2 writes other bytes as ``_codecs.encode(str, "latin1")``; any other
    # codec name would import an arbitrary ``encodings`` module.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickle(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _harmless_bytes,
    ("builtins", "bytes"): _harmless_bytes,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
    ("pysyncobj.node", "TCPNode"): TCPNode,
    ("pysyncobj.node", "Node"): Node,
}


class _RaftUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise RefusedPickle(f"refers to {module}.{name}")
        return found


def safe_loads(data: bytes | str) -> Any:
    """pysyncobj's ``loads``, admitting only its own message types."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return _RaftUnpickler(io.BytesIO(data)).load()


def _safe_load(file: Any) -> Any:
    return _RaftUnpickler(file).load()


class _RateLimitedLog:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def refused(self, peer: str, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(peer)
            if last is not None and now - last < _LOG_INTERVAL:
                self._suppressed[peer] = self._suppressed.get(peer, 0) + 1
                return
            self._last[peer] = now
            suppressed = self._suppressed.pop(peer, 0)
            if len(self._last) > 10_000:  # many addresses: forget the oldest
                for key in sorted(self._last, key=self._last.__getitem__)[:5_000]:
                    self._last.pop(key, None)
        more = f" ({suppressed} more refused since the last report)" if suppressed else ""
        log.warning("raft: dropped a connection from %s: %s%s", peer, reason, more)


refusals = _RateLimitedLog()


def _peer_of(connection: TcpConnection) -> str:
    sock = getattr(connection, "_TcpConnection__socket", None)
    try:
        host, port = sock.getpeername()[:2] if sock is not None else ("?", 0)
    except OSError:
        return "an unknown peer"
    return f"{host}:{port}"


class _GuardedConnection(TcpConnection):  # type: ignore[misc]
    """pysyncobj's connection with bounded, logged, restricted frame decoding.

    Overrides the two name-mangled methods that read and parse frames; the rest of
    pysyncobj's connection (and the poller's bound callbacks) is unchanged."""

    _authenticated = False
    # pysyncobj's own attributes, as this class reads and writes them.
    _TcpConnection__readBuffer: bytes
    recvLastTimestamp: int
    recvRandKey: bytes | None

    def _limit(self) -> int:
        if self.encryptor is not None and not self._authenticated:
            return _PRE_AUTH_FRAME_BYTES
        return MAX_FRAME_BYTES

    def _refuse(self, reason: str) -> None:
        refusals.refused(_peer_of(self), reason)
        self.disconnect()

    def _TcpConnection__processRead(self) -> bool:
        if not super()._TcpConnection__processRead():
            return False
        # Stop reading a peer that streams more than one frame's worth unparsed.
        if len(self._TcpConnection__readBuffer) > self._limit() + _FRAME_LENGTH.size:
            length = self._announced_length()
            if length is None or length > self._limit():
                self._refuse(f"frame larger than {self._limit()} bytes")
                return False
        return True

    def _announced_length(self) -> int | None:
        buffer: bytes = self._TcpConnection__readBuffer
        if len(buffer) < _FRAME_LENGTH.size:
            return None
        length: int = _FRAME_LENGTH.unpack(buffer[: _FRAME_LENGTH.size])[0]
        return length

    def _TcpConnection__processParseMessage(self) -> Any:
        buffer: bytes = self._TcpConnection__readBuffer
        length = self._announced_length()
        if length is None:
            return None
        if length < 0 or length > self._limit():
            self._refuse(f"frame of {length} bytes (limit {self._limit()})")
            return None
        if len(buffer) - _FRAME_LENGTH.size < length:
            return None
        data = buffer[_FRAME_LENGTH.size : _FRAME_LENGTH.size + length]
        try:
            if self.encryptor is not None:
                stamp: int = self.encryptor.extract_timestamp(data)
                last: int = self.recvLastTimestamp
                if stamp < last:
                    raise ValueError("replayed frame (timestamp went backwards)")
                self.recvLastTimestamp = stamp
                data = self.encryptor.decrypt(data)
                self._authenticated = True
            inflater = zlib.decompressobj()
            raw = inflater.decompress(data, MAX_MESSAGE_BYTES)
            if inflater.unconsumed_tail:
                raise ValueError(f"frame inflates beyond {MAX_MESSAGE_BYTES} bytes")
            message = safe_loads(raw)
            if self.recvRandKey:
                rand_key, message = message
                if rand_key != self.recvRandKey:
                    raise ValueError("frame for another connection (wrong session key)")
        except Exception as exc:  # any bad frame: drop the peer, never the node
            reason = (
                "frame does not decrypt with the cluster key"
                if type(exc).__name__ == "InvalidToken"
                else f"bad frame: {type(exc).__name__}: {exc}"
            )
            self._refuse(reason)
            return None
        self._TcpConnection__readBuffer = buffer[_FRAME_LENGTH.size + length :]
        return message


class GuardedTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport without its unauthenticated admin side doors."""

    def _onIncomingMessageReceived(self, conn: TcpConnection, message: Any) -> None:
        if self._syncObj.encryptor and not conn.sendRandKey:
            super()._onIncomingMessageReceived(conn, message)  # the key exchange
            return
        if isinstance(message, list):
            self._drop(conn, "pysyncobj admin commands are disabled")
            return
        if message == "readonly":
            self._drop(conn, "read-only Raft connections are disabled")
            return
        if not isinstance(message, str) or message not in self._nodeAddrToNode:
            self._drop(conn, f"not a server of this cluster (said it is {message!r:.80})")
            return
        super()._onIncomingMessageReceived(conn, message)

    def _drop(self, conn: TcpConnection, reason: str) -> None:
        refusals.refused(_peer_of(conn), reason)
        self._unknownConnections.discard(conn)
        conn.disconnect()


_installed = False


def install() -> None:
    """Route all of pysyncobj's decoding through the guards above (idempotent)."""
    global _installed
    if _installed:
        return
    # The overrides rely on this release's private names: refuse to run unguarded.
    version = pysyncobj.version.VERSION
    methods = ("_TcpConnection__processRead", "_TcpConnection__processParseMessage")
    if version != _SUPPORTED_VERSION or not all(hasattr(TcpConnection, m) for m in methods):
        raise RuntimeError(
            f"dkron-py guards pysyncobj {_SUPPORTED_VERSION}'s decoding; found {version}"
        )
    pysyncobj.pickle.loads = safe_loads
    pysyncobj.pickle.load = _safe_load
    pysyncobj.journal.loads = safe_loads
    pysyncobj.tcp_server.TcpConnection = _GuardedConnection
    pysyncobj.transport.TcpConnection = _GuardedConnection
    _installed = True
