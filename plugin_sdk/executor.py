"""Serve an executor: the plugin side of Dkron's ExecutorService."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable
from typing import NoReturn

import grpc

from dkron_pb.types.legacy import executor_legacy_pb2_grpc as legacy_grpc
from dkron_pb.types.v1 import executor_pb2 as pb
from dkron_pb.types.v1 import executor_pb2_grpc as v1_grpc
from plugin_sdk.models import ExecuteRequest, ExecuteResponse, Executor, StatusHelper
from plugin_sdk.protocol.broker import PluginBroker
from plugin_sdk.protocol.server import serve_plugin

__all__ = ["ExecutorFunction", "serve"]

log = logging.getLogger("plugin_sdk.executor")

ExecutorFunction = Callable[[ExecuteRequest, StatusHelper], ExecuteResponse]


class _BrokeredStatus:
    """Calls the host's StatusHelper over the brokered connection it announced."""

    def __init__(self, channel: grpc.Channel | None, legacy: bool) -> None:
        self._channel = channel
        stubs = legacy_grpc.StatusHelperStub if legacy else v1_grpc.StatusHelperServiceStub
        self._stub = stubs(channel) if channel is not None else None
        self._warned = False

    def update(self, chunk: bytes | str, is_error: bool = False) -> int:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if self._stub is None:
            return 0
        try:
            reply = self._stub.Update(pb.StatusUpdateRequest(output=chunk, error=is_error))
        except grpc.RpcError as exc:
            # The host stops its StatusHelper when Execute returns; losing live
            # output must not fail the execution, whose final output still counts.
            if not self._warned:
                log.warning("status update failed: %s", exc.details() or exc)
                self._warned = True
            return 0
        return int(reply.r)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


class _ExecutorServicer(v1_grpc.ExecutorServiceServicer, legacy_grpc.ExecutorServicer):
    def __init__(self, executor: ExecutorFunction, broker: PluginBroker, legacy: bool) -> None:
        self._executor = executor
        self._broker = broker
        self._legacy = legacy

    def Execute(
        self, request: pb.ExecuteRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteResponse:
        channel = None
        if request.status_server:
            # Like Dkron's Go plugins: dial the host's StatusHelper before running.
            try:
                channel = self._broker.dial(request.status_server)
            except (TimeoutError, Exception) as exc:
                log.warning(
                    "cannot reach the host's status helper; output will not stream",
                    extra={"status_server": request.status_server, "error": str(exc)},
                )
        status = _BrokeredStatus(channel, self._legacy)
        try:
            result = self._executor(
                ExecuteRequest(job_name=request.job_name, config=dict(request.config)), status
            )
        except Exception as exc:  # a plugin bug must come back as a failed execution
            log.error("executor raised", extra={"traceback": traceback.format_exc()})
            return pb.ExecuteResponse(error=f"executor raised {type(exc).__name__}: {exc}")
        finally:
            status.close()
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
