"""Fault: an ExecuteResponse of 2 MiB, above the host's receive limit in the test."""

import _raw

from dkron_pb.types.v1 import executor_pb2 as pb


def execute(request: pb.ExecuteRequest, wire: _raw.Wire) -> pb.ExecuteResponse:
    return pb.ExecuteResponse(output=b"x" * (2 * 1024 * 1024))


_raw.serve(execute)
