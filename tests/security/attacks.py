"""What an attacker sends: pysyncobj frames around crafted pickles, raw bytes, gRPC calls.

Each helper talks to a real port of a real node over loopback, as an outsider would.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "RceProbe",
    "raft_frame",
    "send_raw",
]


class RceProbe:
    """Pickles whose loading would run a command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def _command(self) -> str:
        return f"touch {self.marker}"

    def payloads(self) -> dict[str, bytes]:
        command = self._command()

        class OsSystem:
            def __reduce__(self) -> Any:
                return (os.system, (command,))

        class BuiltinExec:
            def __reduce__(self) -> Any:
                return (exec, (f"import os; os.system({command!r})",))

        class GetattrChain:
            # builtins.getattr(builtins.__import__('os'), 'system')(command), in two steps
            def __reduce__(self) -> Any:
                return (eval, (f"__import__('os').system({command!r})",))

        evil = {
            "os.system": pickle.dumps(OsSystem(), 2),
            "builtins.exec": pickle.dumps(BuiltinExec(), 2),
            "eval": pickle.dumps(GetattrChain(), 4),
            # The same, inside a message pysyncobj would otherwise accept.
            "nested in append_entries": pickle.dumps(
                {"type": "append_entries", "term": 99, "entries": [OsSystem()]}, 2
            ),
            # Hand-written opcodes: GLOBAL posix.system, then REDUCE.
            "raw opcodes": b"cposix\nsystem\n(" + pickle.dumps(command, 0)[:-1] + b"tR.",
        }
        return evil


def raft_frame(pickled: bytes) -> bytes:
    """pysyncobj's frame: native int length, then zlib-compressed pickle."""
    data = zlib.compress(pickled, 3)
    return struct.pack("i", len(data)) + data


def send_raw(host: str, port: int, chunks: Iterable[bytes], *, read_timeout: float = 5.0) -> bytes:
    """Send ``chunks``, then read until the peer closes (or the timeout): what it said."""
    received = b""
    with socket.create_connection((host, port), timeout=5) as sock:
        with contextlib.suppress(OSError):
            for chunk in chunks:
                sock.sendall(chunk)
        sock.settimeout(read_timeout)
        with contextlib.suppress(OSError):
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
    return received
