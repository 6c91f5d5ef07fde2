"""Processors: in-process (pluggy) and binary (served over gRPC with the go-plugin handshake)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import NoReturn

import grpc

from dkron_pb.dkronpy.v1 import processor_pb2 as pb
from dkron_pb.dkronpy.v1 import processor_pb2_grpc as processor_grpc
from plugin_sdk.convert import execution_from_proto, execution_to_proto
from plugin_sdk.goplugin import PluginBroker
from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.models import Execution, Processor
from plugin_sdk.protocol.server import serve_plugin

__all__ = ["ProcessorFunction", "ProcessorPlugin", "serve_processor"]

log = logging.getLogger("plugin_sdk.processor")

ProcessorFunction = Callable[[Execution, Mapping[str, str]], Execution]


def _as_function(processor: Processor | ProcessorFunction) -> ProcessorFunction:
    return processor.process if isinstance(processor, Processor) else processor


class ProcessorPlugin:
    """A pluggy plugin answering for one processor name.

    Expose an instance from your package and name it in the ``dkron.processors``
    entry-point group: ``mine = "my_pkg.module:plugin"``.
    """

    def __init__(self, name: str, processor: Processor | ProcessorFunction) -> None:
        self.name = name
        self._function = _as_function(processor)

    @hookimpl
    def dkron_processor_names(self) -> list[str]:
        return [self.name]

    @hookimpl
    def dkron_process(
        self, processor: str, execution: Execution, config: Mapping[str, str]
    ) -> Execution | None:
        if processor != self.name:
            return None
        return self._function(execution, config)


class _ProcessorServicer(processor_grpc.ProcessorServiceServicer):
    def __init__(self, function: ProcessorFunction) -> None:
        self._function = function

    def Process(
        self, request: pb.ProcessRequest, context: grpc.ServicerContext
    ) -> pb.ProcessResponse:
        try:
            result = self._function(execution_from_proto(request.execution), dict(request.config))
        except Exception as exc:
            log.error("processor raised", extra={"traceback": traceback.format_exc()})
            return pb.ProcessResponse(error=f"processor raised {type(exc).__name__}: {exc}")
        if not isinstance(result, Execution):
            return pb.ProcessResponse(
                error=f"processor returned {type(result).__name__}, expected Execution"
            )
        return pb.ProcessResponse(execution=execution_to_proto(result))


def serve_processor(processor: Processor | ProcessorFunction) -> NoReturn:
    """Run ``processor`` as a ``dkron-processor-*`` binary; call it from ``main``."""
    function = _as_function(processor)

    def register(server: grpc.Server, broker: PluginBroker) -> Iterable[str]:
        processor_grpc.add_ProcessorServiceServicer_to_server(_ProcessorServicer(function), server)
        return ["dkronpy.v1.ProcessorService"]

    serve_plugin(register)
