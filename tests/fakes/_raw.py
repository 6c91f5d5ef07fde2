"""Plumbing for hand-written go-plugin plugins that bypass ``plugin_sdk``'s server.

The host-side tests must not check our host against a plugin built from the same
code (both could be wrong the same way), so these fakes print their own handshake
line and serve health, GRPCBroker and GRPCController from the raw generated stubs.
Knobs come from the environment: ``FAKE_PID_FILE`` receives the fake's PID and
``FAKE_SHUTDOWN_FILE`` the list of methods called when the host sends Shutdown.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from dkron_pb.plugin import grpc_broker_pb2 as broker_pb
from dkron_pb.plugin import grpc_broker_pb2_grpc as broker_grpc
from dkron_pb.plugin import grpc_controller_pb2 as controller_pb
from dkron_pb.plugin import grpc_controller_pb2_grpc as controller_grpc
from dkron_pb.types.legacy import executor_legacy_pb2_grpc as legacy_grpc
from dkron_pb.types.v1 import executor_pb2 as pb
from dkron_pb.types.v1 import executor_pb2_grpc as v1_grpc

__all__ = ["RawBroker", "Wire", "block_forever", "hang_after", "record_pid", "say", "serve"]

_BIG = 2**31 - 1


def record_pid() -> None:
    path = os.environ.get("FAKE_PID_FILE")
    if path:
        Path(path).write_text(str(os.getpid()))


def say(line: str) -> None:
    """Write one raw line to stdout and flush it, as a plugin writes its handshake."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def block_forever() -> NoReturn:
    threading.Event().wait()
    raise AssertionError("unreachable")


def hang_after(line: str) -> NoReturn:
    """Print ``line`` as the handshake and then do nothing, so only the host can end us."""
    record_pid()
    say(line)
    block_forever()


class RawBroker(broker_grpc.GRPCBrokerServicer):
    """Records every ConnInfo the host sends and how many StartStreams it opened."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.infos: list[broker_pb.ConnInfo] = []
        self.streams_opened = 0
        self.streams_open = 0

    def StartStream(
        self, request_iterator: Iterator[broker_pb.ConnInfo], context: grpc.ServicerContext
    ) -> Iterator[broker_pb.ConnInfo]:
        with self.changed:
            self.streams_opened += 1
            self.streams_open += 1
        try:
            for info in request_iterator:
                with self.changed:
                    self.infos.append(info)
                    self.changed.notify_all()
        except grpc.RpcError:
            pass
        finally:
            with self.changed:
                self.streams_open -= 1
        yield from ()  # we never announce anything to the host

    def wait_for(self, service_id: int, timeout: float = 5.0) -> broker_pb.ConnInfo:
        """The announcement for ``service_id``; it may arrive after the RPC carrying the id."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for info in self.infos:
                    if info.service_id == service_id:
                        return info
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no ConnInfo for id {service_id}")
                self.changed.wait(left)


class _Recorder(grpc.ServerInterceptor):
    """Every method the host called, in order, including ones we do not serve."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        self.methods.append(handler_call_details.method)
        return continuation(handler_call_details)


class _Controller(controller_grpc.GRPCControllerServicer):
    def __init__(self, stop: threading.Event, recorder: _Recorder) -> None:
        self._stop = stop
        self._recorder = recorder

    def Shutdown(
        self, request: controller_pb.Empty, context: grpc.ServicerContext
    ) -> controller_pb.Empty:
        path = os.environ.get("FAKE_SHUTDOWN_FILE")
        if path:
            Path(path).write_text(json.dumps(self._recorder.methods))
        self._stop.set()
        return controller_pb.Empty()


@dataclass
class Wire:
    """What the fake saw of the host: broker traffic and every method called so far."""

    broker: RawBroker
    methods: list[str]


ExecuteHandler = Callable[[pb.ExecuteRequest, Wire], pb.ExecuteResponse]


class _Executor:
    def __init__(self, handler: ExecuteHandler, wire: Wire) -> None:
        self._handler = handler
        self._wire = wire

    def Execute(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteResponse:
        return self._handler(request, self._wire)


def serve(execute: ExecuteHandler, *, legacy: bool = False) -> NoReturn:
    """Serve the go-plugin basics plus an executor; print a textbook handshake.

    ``legacy`` serves only Dkron <= 4.0.8's ``types.Executor`` name.
    """
    record_pid()
    stop = threading.Event()
    recorder = _Recorder()
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16),
        interceptors=[recorder],
        options=[("grpc.max_send_message_length", _BIG), ("grpc.max_receive_message_length", _BIG)],
    )
    health_servicer = health.HealthServicer()
    health_servicer.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    broker = RawBroker()
    broker_grpc.add_GRPCBrokerServicer_to_server(broker, server)
    controller_grpc.add_GRPCControllerServicer_to_server(_Controller(stop, recorder), server)
    servicer = _Executor(execute, Wire(broker, recorder.methods))
    if legacy:
        legacy_grpc.add_ExecutorServicer_to_server(servicer, server)
    else:
        v1_grpc.add_ExecutorServiceServicer_to_server(servicer, server)
    path = os.path.join(tempfile.gettempdir(), f"fake{uuid.uuid4().hex[:10]}")
    server.add_insecure_port(f"unix:{path}")
    server.start()
    say(f"1|1|unix|{path}|grpc|")
    stop.wait()
    server.stop(0)
    if os.path.exists(path):
        os.unlink(path)
    os._exit(0)  # a handler may still be hung (see hang_execute.py)
