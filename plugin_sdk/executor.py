"""Serve an executor: the plugin side of Dkron's ExecutorService."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import grpc

from dkron_pb.types.legacy import executor_legacy_pb2_grpc as legacy_grpc
from dkron_pb.types.v1 import executor_pb2 as pb
from dkron_pb.types.v1 import executor_pb2_grpc as v1_grpc
from plugin_sdk.goplugin import PluginBroker
from plugin_sdk.models import ExecuteRequest, ExecuteResponse, Executor, StatusHelper
from plugin_sdk.protocol.server import serve_plugin

__all__ = ["ExecutorFunction", "serve"]

log = logging.getLogger("plugin_sdk.executor")

ExecutorFunction = Callable[[ExecuteRequest, StatusHelper], ExecuteResponse]


class _BrokeredStatus:
    """Calls the host's StatusHelper over the brokered connection it announced.

    The connection is dialled on the first update, not before the run as Go
    plugins do: silent executions (most cron jobs) then cost no extra connection.
    The host keeps the announcement for the whole execution, so waiting is safe.
    """

    def __init__(self, broker: PluginBroker, service_id: int, legacy: bool) -> None:
        self._broker = broker
        self._service_id = service_id
        self._legacy = legacy
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._failed = False

    def _connect(self) -> Any:
        with self._lock:
            if self._stub is None and not self._failed:
                try:
                    self._channel = self._broker.dial(self._service_id)
                except Exception as exc:
                    self._failed = True
                    log.warning(
                        "cannot reach the host's status helper; output will not stream",
                        extra={"status_server": self._service_id, "error": str(exc)},
                    )
                    return None
                stubs = (
                    legacy_grpc.StatusHelperStub
                    if self._legacy
                    else v1_grpc.StatusHelperServiceStub
                )
                self._stub = stubs(self._channel)
            return self._stub

    def update(self, chunk: bytes | str, is_error: bool = False) -> int:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        stub = self._connect() if self._service_id else None
        if stub is None:
            return 0
        try:
            reply = stub.Update(pb.StatusUpdateRequest(output=chunk, error=is_error))
        except grpc.RpcError as exc:
            # The host stops its StatusHelper when Execute returns; losing live
            # output must not fail the execution, whose final output still counts.
            with self._lock:
                warned, self._failed = self._failed, True
            if not warned:
                log.warning("status update failed: %s", exc.details() or exc)
            return 0
        return int(reply.r)

    def close(self) -> None:
        # The broker owns the (shared) channel; nothing to release per execution.
        with self._lock:
            self._stub = None
            self._failed = True


class _ExecutorServicer(v1_grpc.ExecutorServiceServicer, legacy_grpc.ExecutorServicer):
    def __init__(self, executor: ExecutorFunction, broker: PluginBroker, legacy: bool) -> None:
        self._executor = executor
        self._broker = broker
        self._legacy = legacy

    def Execute(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteResponse:
        status = _BrokeredStatus(self._broker, request.status_server, self._legacy)
        if request.status_server:
            self._broker.claim(request.status_server)
        cancelled = threading.Event()
        # Fires when the RPC ends for any reason, including the host's deadline or
        # cancellation, so long-running executors can stop their work.
        context.add_callback(cancelled.set)
        try:
            result = self._executor(
                ExecuteRequest(
                    job_name=request.job_name, config=dict(request.config), cancelled=cancelled
                ),
                status,
            )
        except Exception as exc:  # a plugin bug must come back as a failed execution
            log.error("executor raised", extra={"traceback": traceback.format_exc()})
            return pb.ExecuteResponse(error=f"executor raised {type(exc).__name__}: {exc}")
        finally:
            status.close()
            if request.status_server:
                self._broker.release(request.status_server)
        if not isinstance(result, ExecuteResponse):
            return pb.ExecuteResponse(
                error=f"executor returned {type(result).__name__}, expected ExecuteResponse"
            )
        output = result.output.encode() if isinstance(result.output, str) else result.output
        return pb.ExecuteResponse(output=output, error=result.error)


def _as_function(executor: Executor | ExecutorFunction) -> ExecutorFunction:
    if isinstance(executor, Executor):
        return executor.execute
    return executor


def serve(executor: Executor | ExecutorFunction) -> NoReturn:
    """Run ``executor`` as a Dkron executor plugin; call it from the plugin's ``main``.

    Serves ``types.v1.ExecutorService`` (Dkron >= 4.0.9) and the legacy
    ``types.Executor`` name, so hosts of either generation can call it.
    """
    function = _as_function(executor)

    def register(server: grpc.Server, broker: PluginBroker) -> Iterable[str]:
        v1_grpc.add_ExecutorServiceServicer_to_server(
            _ExecutorServicer(function, broker, legacy=False), server
        )
        legacy_grpc.add_ExecutorServicer_to_server(
            _ExecutorServicer(function, broker, legacy=True), server
        )
        return ["types.v1.ExecutorService", "types.Executor"]

    serve_plugin(register)
