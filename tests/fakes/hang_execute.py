"""Fault: Execute never returns."""

import threading

import _raw

from dkron_pb.types.v1 import executor_pb2 as pb


def execute(request: pb.ExecuteRequest, wire: _raw.Wire) -> pb.ExecuteResponse:
    threading.Event().wait()
    raise AssertionError("unreachable")


_raw.serve(execute)
