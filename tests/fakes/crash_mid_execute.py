"""Fault: the process dies while an Execute is in flight."""

import os
import sys

import _raw

from dkron_pb.types.v1 import executor_pb2 as pb


def execute(request: pb.ExecuteRequest, wire: _raw.Wire) -> pb.ExecuteResponse:
    sys.stderr.write("segfault in libfake, going down\n")
    sys.stderr.flush()
    os._exit(7)


_raw.serve(execute)
