"""The host side of go-plugin (grpc.aio): launch, handshake, connect, broker, shut down.

One :class:`Client` is one plugin process: it starts it with the cookie, validates
the handshake line, connects, keeps the GRPCBroker stream open, relays the plugin's
stderr (hclog) and GRPCStdio into logging, and ends it with everything it started.
The application's own services are called on :attr:`Client.channel`; a subclass
adds them as methods and turns gRPC failures into :class:`PluginError` subclasses
with :meth:`Client.failure`, whose messages name the plugin and the cause.
Supervision (restarts, discovery, output caps) is the caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import grpc
import grpc.aio
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dkron_pb.plugin import grpc_controller_pb2, grpc_controller_pb2_grpc, grpc_stdio_pb2_grpc
from plugin_sdk.goplugin._broker import GRPC_OPTIONS, BrokerClosed, HostBroker
from plugin_sdk.goplugin._handshake import (
    Handshake,
    HandshakeConfig,
    HandshakeError,
    parse_handshake_line,
    plugin_environment,
)
from plugin_sdk.goplugin._hclog import parse_log_line
from plugin_sdk.goplugin._tree import descendants, kill_all

__all__ = [
    "DEFAULT_RECEIVE_LIMIT",
    "Client",
    "PluginCallError",
    "PluginCrashed",
    "PluginError",
    "PluginStartError",
    "PluginTimeout",
]

# Responses above this are refused rather than buffered (go-plugin allows 2 GiB).
DEFAULT_RECEIVE_LIMIT = 64 * 1024 * 1024
_LINE_LIMIT = 64 * 1024  # go-plugin's PluginLogBufferSize
_STDERR_TAIL = 20
_CONNECT_TIMEOUT = 5.0
_SHUTDOWN_CALL_TIMEOUT = 1.0
_READER_DRAIN_TIMEOUT = 1.0


class PluginError(Exception):
    """A plugin failed; the message names the plugin and the cause."""

    def __init__(self, plugin: str, cause: str) -> None:
        super().__init__(f"plugin {plugin!r}: {cause}")
        self.plugin = plugin
        self.cause = cause


class PluginStartError(PluginError):
    """The plugin could not be started (handshake missing, garbage or incompatible)."""


class PluginCrashed(PluginError):
    """The plugin process exited while (or before) serving a call."""


class PluginTimeout(PluginError):
    """The plugin did not answer within the call's timeout."""


class PluginCallError(PluginError):
    """The call failed for another reason (gRPC error, oversized response)."""


class Client:
    """A running plugin process and the gRPC connection to it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        process: asyncio.subprocess.Process,
        logger: logging.Logger,
        socket_dir: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.process = process
        self.log = logger
        self.handshake: Handshake | None = None
        self.exited = asyncio.Event()
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._channel: grpc.aio.Channel | None = None
        self._broker: HostBroker | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        # Private (0700): the plugin's own socket and the host's brokered servers live
        # here, so no other local user can connect to them (short: sun_path is 108 bytes).
        self._socket_dir = socket_dir or tempfile.mkdtemp(prefix="plugin-")
        self._closed = False
        self._panic = False

    # -- launch ---------------------------------------------------------------------------

    @classmethod
    async def launch(
        cls,
        argv: Sequence[str],
        *,
        handshake: HandshakeConfig,
        name: str | None = None,
        versions: Iterable[int] = (1,),
        allowed_protocols: Iterable[str] = ("grpc",),
        start_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        receive_limit: int = DEFAULT_RECEIVE_LIMIT,
        logger: logging.Logger | None = None,
        socket_prefix: str = "plugin-",
    ) -> Self:
        """Start ``argv`` and complete the handshake, or raise :class:`PluginStartError`.

        ``name`` (default: the executable's name) is what errors and log records say;
        ``logger`` defaults to ``goplugin.<name>``; the private socket directory is
        made with ``socket_prefix``.
        """
        versions = list(versions)
        plugin_name = name or os.path.basename(argv[0])
        log = logger or logging.getLogger(f"goplugin.{plugin_name}")
        socket_dir = tempfile.mkdtemp(prefix=socket_prefix)
        environment = plugin_environment(handshake, versions, base=env)
        # go-plugin's variable: a plugin that honours it (ours, go-plugin >= 1.5) puts its
        # unix socket in our private directory instead of the world-readable /tmp.
        environment["PLUGIN_UNIX_SOCKET_DIR"] = socket_dir
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=environment,
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise PluginStartError(plugin_name, f"cannot execute {argv[0]}: {exc}") from exc
        client = cls(plugin_name, argv, process, log, socket_dir)
        try:
            await client._start(versions, list(allowed_protocols), start_timeout, receive_limit)
        except BaseException:
            await client.kill()
            raise
        return client

    async def _start(
        self, versions: list[int], allowed: list[str], start_timeout: float, receive_limit: int
    ) -> None:
        self._tasks.append(asyncio.create_task(self._watch_exit(), name=f"{self.name}-exit"))
        self._tasks.append(asyncio.create_task(self._read_stderr(), name=f"{self.name}-stderr"))
        line = await self._first_line(start_timeout)
        try:
            self.handshake = parse_handshake_line(line, versions, allowed)
        except HandshakeError as exc:
            raise PluginStartError(self.name, str(exc)) from None
        self._tasks.append(asyncio.create_task(self._drain_stdout(), name=f"{self.name}-stdout"))
        # grpc honours the first of duplicate channel args, so replace rather than append.
        options = [
            *(o for o in GRPC_OPTIONS if o[0] != "grpc.max_receive_message_length"),
            ("grpc.max_receive_message_length", receive_limit),
        ]
        self._channel = grpc.aio.insecure_channel(self.handshake.target, options=options)
        try:
            await asyncio.wait_for(self._connected(), _CONNECT_TIMEOUT)
        except (TimeoutError, ConnectionError):
            if await self._wait_exit(0.1):
                raise PluginStartError(
                    self.name,
                    f"plugin exited before we could connect (exit status "
                    f"{self.process.returncode}){await self._stderr_hint_settled()}",
                ) from None
            raise PluginStartError(
                self.name,
                f"handshake announced {self.handshake.target} but nothing accepts "
                f"connections there{self._stderr_hint()}",
            ) from None
        self._broker = HostBroker(self._channel)
        self._broker.start()
        self._tasks.append(asyncio.create_task(self._mirror_stdio(), name=f"{self.name}-stdio"))

    async def _connected(self) -> None:
        # The plugin listens before it prints its handshake, so a refused or missing
        # socket will not get better: fail on the first failed attempt, not after 5 s.
        assert self._channel is not None
        state = self._channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state in (
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN,
            ):
                raise ConnectionError(state.name)
            await self._channel.wait_for_state_change(state)
            state = self._channel.get_state(try_to_connect=True)

    async def _first_line(self, start_timeout: float) -> str:
        assert self.process.stdout is not None
        reading = asyncio.ensure_future(self.process.stdout.readline())
        exited = asyncio.ensure_future(self.exited.wait())
        try:
            done, _ = await asyncio.wait(
                {reading, exited}, timeout=start_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
        if reading in done:
            try:
                raw: bytes = reading.result()
            except (ValueError, asyncio.LimitOverrunError):
                raise PluginStartError(
                    self.name, "Unrecognized remote plugin message: first stdout line over 64 KiB"
                ) from None
            if raw:
                return raw.decode("utf-8", "replace")
            await self._wait_exit(0.5)
        reading.cancel()
        if self.exited.is_set():
            raise PluginStartError(
                self.name,
                f"plugin exited before we could connect (exit status "
                f"{self.process.returncode}){await self._stderr_hint_settled()}",
            )
        if reading.done():
            raise PluginStartError(
                self.name,
                "Unrecognized remote plugin message: Failed to read any lines from "
                f"plugin's stdout{self._stderr_hint()}",
            )
        raise PluginStartError(
            self.name,
            f"timeout while waiting for plugin to start ({start_timeout:g}s without a "
            f"handshake line){self._stderr_hint()}",
        )

    async def _stderr_hint_settled(self) -> str:
        """The stderr hint once the reader has consumed what a dead plugin left in the pipe."""
        readers = [t for t in self._tasks if t.get_name() == f"{self.name}-stderr"]
        if readers:
            await asyncio.wait(readers, timeout=_READER_DRAIN_TIMEOUT)
        return self._stderr_hint()

    def _stderr_hint(self) -> str:
        if not self.stderr_tail:
            return ""
        return "; last stderr: " + " | ".join(list(self.stderr_tail)[-3:])

    # -- background readers ---------------------------------------------------------------

    async def _watch_exit(self) -> None:
        code = await self.process.wait()
        self.exited.set()
        if not self._closed:
            self.log.warning("plugin process exited", extra={"plugin": self.name, "status": code})

    async def _wait_exit(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.exited.wait(), timeout)
        return self.exited.is_set()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        stream = self.process.stderr
        while True:
            try:
                raw = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                raw = exc.partial  # EOF: the last line had no newline
            except asyncio.LimitOverrunError:
                # Split an over-long line, as go-plugin does. (readline() would drop it:
                # it clears the buffer before raising.)
                raw = await stream.read(_LINE_LIMIT)
            if not raw:
                return
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith(("panic: ", "fatal error: ")):
                self._panic = True
            entry = parse_log_line(text)
            self.stderr_tail.append(entry.message or text)
            level = logging.ERROR if self._panic else entry.level
            self.log.log(
                level, "%s", entry.message, extra={"plugin": self.name, **_safe(entry.fields)}
            )

    async def _drain_stdout(self) -> None:
        # go-plugin reads only the first line; the rest is drained so the plugin never blocks.
        assert self.process.stdout is not None
        while await self.process.stdout.read(_LINE_LIMIT):
            pass

    async def _mirror_stdio(self) -> None:
        assert self._channel is not None
        stub = grpc_stdio_pb2_grpc.GRPCStdioStub(self._channel)
        try:
            async for data in stub.StreamStdio(empty_pb2.Empty()):
                text = data.data.decode("utf-8", "replace").rstrip("\n")
                channel = "stderr" if data.channel == 2 else "stdout"
                self.log.info("%s", text, extra={"plugin": self.name, "stream": channel})
        except grpc.aio.AioRpcError as exc:
            self.log.debug("no stdio mirroring: %s", exc.code().name, extra={"plugin": self.name})

    # -- calls ----------------------------------------------------------------------------

    @property
    def channel(self) -> grpc.aio.Channel:
        """The connection the application's stubs are made on."""
        if self._channel is None:
            raise PluginCallError(self.name, "not connected")
        return self._channel

    @property
    def socket_dir(self) -> str:
        """The private (0700) directory for the host's own brokered sockets."""
        return self._socket_dir

    @property
    def alive(self) -> bool:
        return not self.exited.is_set() and not self._closed

    @property
    def broker(self) -> HostBroker:
        """The host's end of the plugin's GRPCBroker stream."""
        if self._broker is None:
            raise PluginCallError(self.name, "not connected")
        return self._broker

    async def announce(self, service_id: int, network: str, address: str) -> None:
        """Offer a host-side listener to the plugin as ``service_id`` (GRPCBroker).

        Ids come from ``broker.next_id()``; raises :class:`PluginCrashed` once the
        broker stream is gone (the plugin died or is dying).
        """
        if self._broker is None:
            raise PluginCrashed(self.name, "broker stream lost: not connected")
        try:
            self._broker.announce(service_id, network, address)
        except BrokerClosed as exc:
            await self._crash_settles()
            raise PluginCrashed(self.name, f"broker stream lost: {exc}") from None

    async def failure(
        self, exc: grpc.aio.AioRpcError, timeout: float | None, what: str
    ) -> PluginError:
        """The :class:`PluginError` for a failed call ``what`` (crash, timeout, other).

        Waits a moment first: a dead socket can surface before the exit status.
        """
        await self._crash_settles()
        return self._failure(exc, timeout, what)

    def _failure(self, exc: grpc.aio.AioRpcError, timeout: float | None, what: str) -> PluginError:
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PluginTimeout(self.name, f"{what} did not finish within {timeout:g}s")
        if self.exited.is_set() or code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            status = self.process.returncode
            how = (
                f"exit status {status}"
                if status is not None and status >= 0
                else (f"killed by signal {-status}" if status is not None else "connection lost")
            )
            return PluginCrashed(
                self.name, f"plugin crashed during {what} ({how}){self._stderr_hint()}"
            )
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return PluginCallError(self.name, f"{what} response too large: {exc.details()}")
        return PluginCallError(self.name, f"{what} failed: {code.name}: {exc.details()}")

    async def _crash_settles(self) -> None:
        # A dead socket can surface before the exit status; give the watcher a moment.
        await self._wait_exit(0.2)

    async def ping(self, timeout: float = 1.0) -> bool:
        """go-plugin's Ping: health Check for "plugin"; only an RPC error counts as down."""
        if not self.alive:
            return False
        stub = health_pb2_grpc.HealthStub(self.channel)
        try:
            await stub.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return True

    # -- shutdown -------------------------------------------------------------------------

    async def shutdown(self, grace: float = 2.0) -> None:
        """Controller.Shutdown, wait ``grace`` seconds, then SIGKILL (with everything the
        plugin started that is still running). Idempotent."""
        if self._closed:
            return
        self._closed = True
        # Taken before the plugin exits: its orphans lose the parent that names them.
        started = descendants(self.process.pid)
        if self._channel is not None and not self.exited.is_set():
            stub = grpc_controller_pb2_grpc.GRPCControllerStub(self._channel)
            # A Go plugin often dies before replying; the result is ignored either way.
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.TimeoutError):
                await stub.Shutdown(grpc_controller_pb2.Empty(), timeout=_SHUTDOWN_CALL_TIMEOUT)
        await self._close_connection()
        if not await self._wait_exit(grace):
            self._signal(signal.SIGKILL)
        kill_all(started)
        await self._finish()

    async def kill(self) -> None:
        """SIGKILL at once, with everything the plugin started (start failures, hung
        plugins). Idempotent."""
        self._closed = True
        started = descendants(self.process.pid) if self.process.returncode is None else []
        self._signal(signal.SIGKILL)
        kill_all(started)
        await self._close_connection()
        await self._finish()

    def _signal(self, signum: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def _release(self) -> None:
        """Subclasses close what they serve the plugin here; runs before the broker closes."""

    async def _close_connection(self) -> None:
        await self._release()
        if self._broker is not None:
            await self._broker.close()
            self._broker = None
        if self._channel is not None:
            await self._channel.close()

    async def _finish(self) -> None:
        await self.process.wait()
        # Readers end at EOF; a grandchild holding the pipes must not hang us (go-plugin does).
        readers = [t for t in self._tasks if not t.done()]
        if readers:
            _, pending = await asyncio.wait(readers, timeout=_READER_DRAIN_TIMEOUT)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        shutil.rmtree(self._socket_dir, ignore_errors=True)


def _safe(fields: Mapping[str, object]) -> dict[str, object]:
    # makeRecord refuses these two as well; a KeyError would kill the stderr reader.
    reserved = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
    return {k if k not in reserved else f"plugin_{k}": v for k, v in fields.items()}
