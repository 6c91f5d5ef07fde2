"""The plugin side of go-plugin: everything between ``main()`` and the app's servicers.

:func:`serve` checks the cookie, binds the listener, serves health,
GRPCBroker, GRPCController and GRPCStdio next to the application services,
prints the handshake as the first stdout line and blocks until the host asks the
plugin to shut down (or goes away).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn, TextIO

import grpc
from google.protobuf import empty_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dkron_pb.plugin import grpc_controller_pb2 as controller_pb
from dkron_pb.plugin import grpc_controller_pb2_grpc as controller_grpc
from dkron_pb.plugin import grpc_stdio_pb2 as stdio_pb
from dkron_pb.plugin import grpc_stdio_pb2_grpc as stdio_grpc
from plugin_sdk.goplugin._broker import GRPC_OPTIONS, PluginBroker
from plugin_sdk.goplugin._handshake import (
    HandshakeConfig,
    format_handshake_line,
    negotiate_app_version,
)
from plugin_sdk.goplugin._hclog import HclogFormatter

__all__ = ["DEFAULT_MAX_WORKERS", "NOT_A_HOST", "Registrar", "serve"]

log = logging.getLogger("plugin_sdk.goplugin")

# (server, broker) -> names of the application services registered on the server.
Registrar = Callable[[grpc.Server, PluginBroker], Iterable[str]]

# go-plugin's text for a plugin started by hand (without the host's cookie).
NOT_A_HOST = """\
This binary is a plugin. These are not meant to be executed directly.
Please execute the program that consumes these plugins, which will
load any plugins automatically
"""
# Calls served at once. Each executor call holds a worker for its whole run, so this
# is also how many jobs one plugin runs at the same time: Go's go-plugin has no such
# bound, and with 64 the 65th long-running job waited for one to end. Threads are
# started on demand, so an idle plugin does not pay for the bound.
DEFAULT_MAX_WORKERS = 1024
_SHUTDOWN_GRACE = 1.0
_PARENT_POLL = 1.0


class _Controller(controller_grpc.GRPCControllerServicer):
    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def Shutdown(
        self, request: controller_pb.Empty, context: grpc.ServicerContext
    ) -> controller_pb.Empty:
        # Reply first: the actual stop happens on the main thread once we return.
        self._stop.set()
        return controller_pb.Empty()


class _StdioStream(stdio_grpc.GRPCStdioServicer, io.TextIOBase):
    """Collects what the plugin writes to sys.stdout/sys.stderr after the handshake."""

    def __init__(self) -> None:
        self._chunks: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=1024)

    def writer(self, channel: int) -> TextIO:
        stream = self

        class _Writer(io.TextIOBase):
            def write(self, text: str) -> int:
                if text:
                    # Nobody reading: drop rather than block the plugin.
                    with contextlib.suppress(queue.Full):
                        stream._chunks.put_nowait((channel, text.encode("utf-8", "replace")))
                return len(text)

            def writable(self) -> bool:
                return True

        return _Writer()  # type: ignore[return-value]

    def StreamStdio(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> Iterator[stdio_pb.StdioData]:
        while context.is_active():
            try:
                item = self._chunks.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                return
            channel, data = item
            for start in range(0, len(data), 1024):
                yield stdio_pb.StdioData(channel=channel, data=data[start : start + 1024])  # type: ignore[arg-type]

    def close_stream(self) -> None:
        with contextlib.suppress(queue.Full):
            self._chunks.put_nowait(None)


def _setup_logging(stderr: TextIO, level: str) -> None:
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(HclogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _bind(server: grpc.Server, network: str) -> tuple[str, str, str | None]:
    if network == "tcp":
        low = int(os.environ.get("PLUGIN_MIN_PORT", "0") or 0)
        high = int(os.environ.get("PLUGIN_MAX_PORT", "0") or 0)
        for port in range(low, high + 1) if high >= low > 0 else [0]:
            try:
                bound = server.add_insecure_port(f"127.0.0.1:{port}")
            except RuntimeError:
                continue
            if bound:
                return "tcp", f"127.0.0.1:{bound}", None
        raise OSError(f"no free TCP port in {low}..{high}")
    folder = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or tempfile.gettempdir()
    path = os.path.join(folder, f"plugin{uuid.uuid4().hex[:12]}")
    server.add_insecure_port(f"unix:{path}")
    return "unix", path, path


def _watch_parent(stop: threading.Event, parent: int) -> None:
    # Nothing in go-plugin tells a plugin its host died; do not linger as an orphan.
    while not stop.wait(_PARENT_POLL):
        if os.getppid() != parent:
            log.warning("host process went away; shutting down")
            stop.set()


def serve(
    register: Registrar,
    *,
    handshake: HandshakeConfig,
    versions: Iterable[int] = (1,),
    network: str = "unix",
    max_workers: int = DEFAULT_MAX_WORKERS,
    log_level: str = "INFO",
    not_a_host: str = NOT_A_HOST,
) -> NoReturn:
    """Serve a go-plugin gRPC plugin until the host shuts it down; never returns.

    ``register`` adds the application's servicers and names them (for reflection).
    ``network`` is ``"unix"`` (in ``PLUGIN_UNIX_SOCKET_DIR`` when the host sets it) or
    ``"tcp"`` (127.0.0.1, within ``PLUGIN_MIN_PORT``..``PLUGIN_MAX_PORT``); ``log_level``
    is the root logger's level, whose records go to stderr as hclog JSON; ``not_a_host``
    is printed when the binary is started without the host's cookie.
    """
    if os.environ.get(handshake.cookie_key) != handshake.cookie_value:
        sys.stderr.write(not_a_host)
        sys.stderr.flush()
        raise SystemExit(1)
    if os.environ.get("PLUGIN_CLIENT_CERT"):
        sys.stderr.write("this plugin does not support AutoMTLS (PLUGIN_CLIENT_CERT is set)\n")
        raise SystemExit(1)
    # The host decides when plugins die. A no-op handler rather than SIG_IGN: an
    # ignored signal stays ignored across exec, so every job would inherit it.
    signal.signal(signal.SIGINT, lambda *_: None)
    # Taken before the handshake: a host that dies right after reading it must still count.
    parent = os.getppid()

    # The handshake must be the first stdout line: keep fd 1 for it alone and send
    # anything else that writes to fd 1 (libraries, children) to stderr meanwhile.
    handshake_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    real_stderr = os.fdopen(os.dup(2), "w", buffering=1)
    _setup_logging(real_stderr, log_level)

    stop = threading.Event()
    # SIGTERM: the default action would skip cleanup of the socket file. Installed
    # before the socket exists, so a host that reacts to the handshake at once is covered.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    broker = PluginBroker()
    stdio = _StdioStream()
    server = grpc.server(ThreadPoolExecutor(max_workers=max_workers), options=GRPC_OPTIONS)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    from dkron_pb.plugin import grpc_broker_pb2_grpc as broker_grpc

    broker_grpc.add_GRPCBrokerServicer_to_server(broker, server)
    controller_grpc.add_GRPCControllerServicer_to_server(_Controller(stop), server)
    stdio_grpc.add_GRPCStdioServicer_to_server(stdio, server)
    app_services = list(register(server, broker))
    for name in ("plugin", ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [
            *app_services,
            "plugin.GRPCBroker",
            "plugin.GRPCController",
            "plugin.GRPCStdio",
            "grpc.health.v1.Health",
            reflection.SERVICE_NAME,
        ],
        server,
    )

    net, address, socket_path = _bind(server, network)
    server.start()
    app_version = negotiate_app_version(
        versions, os.environ.get("PLUGIN_PROTOCOL_VERSIONS", str(handshake.protocol_version))
    )
    handshake_out.write(
        format_handshake_line(
            app_version, net, address, "grpc", bool(os.environ.get("PLUGIN_MULTIPLEX_GRPC"))
        )
    )
    handshake_out.flush()
    handshake_out.close()
    sys.stdout = stdio.writer(stdio_pb.StdioData.STDOUT)
    sys.stderr = stdio.writer(stdio_pb.StdioData.STDERR)
    log.debug("plugin serving", extra={"network": net, "address": address})

    threading.Thread(target=_watch_parent, args=(stop, parent), daemon=True).start()
    while not stop.wait(0.5):  # a bounded wait lets SIGTERM handlers run promptly
        pass
    broker.close()
    stdio.close_stream()
    server.stop(_SHUTDOWN_GRACE).wait(_SHUTDOWN_GRACE + 0.5)
    if socket_path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
    real_stderr.flush()
    os._exit(0)  # grpc's worker threads must not keep a finished plugin alive
