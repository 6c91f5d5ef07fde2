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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CLUSTER_KEY",
    "RceProbe",
    "agent_run_request",
    "grpc_call",
    "raft_frame",
    "send_raw",
]


# A valid key (dkronctl keygen), as an operator would set it.
CLUSTER_KEY = "q0Yv2TVQ9lTbnJ3HZmwqRA=="


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


def agent_run_request(command: str, *, term: int = 0, run_id: str = "") -> Any:
    """An AgentRun for a shell job running ``command``, as a leader would send it."""
    from dkron_pb.types.v1 import agent_pb2, dkron_pb2

    job = dkron_pb2.Job(
        name="intruder", executor="shell", executor_config={"command": command, "shell": "true"}
    )
    execution = dkron_pb2.Execution(job_name="intruder", node_name="node1", run_id=run_id)
    return agent_pb2.AgentRunRequest(job=job, execution=execution, term=term)


def grpc_call(
    address: str,
    method: str,
    request: Any,
    response_type: Any,
    *,
    metadata: Sequence[tuple[str, str]] = (),
    stream: bool = False,
) -> tuple[Any, str, list[Any]]:
    """One raw gRPC call as an outsider makes it: (status code, details, responses)."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        serializer = type(request).SerializeToString
        if stream:
            call = channel.unary_stream(
                method,
                request_serializer=serializer,
                response_deserializer=response_type.FromString,
            )
            try:
                replies = list(call(request, timeout=10, metadata=list(metadata)))
            except grpc.RpcError as exc:
                return exc.code(), exc.details() or "", []
            return grpc.StatusCode.OK, "", replies
        unary = channel.unary_unary(
            method, request_serializer=serializer, response_deserializer=response_type.FromString
        )
        try:
            reply = unary(request, timeout=10, metadata=list(metadata))
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", []
        return grpc.StatusCode.OK, "", [reply]
