"""Logs to stderr the ways plugins do (hclog JSON, [LEVEL] prefixes, a Go panic), then serves."""

import sys

import _raw

from dkron_pb.types.v1 import executor_pb2 as pb

LINES = [
    '{"@level":"info","@message":"json info","@timestamp":"2024-01-02T03:04:05.000000Z",'
    '"@module":"fake","job":"nightly","attempt":2}',
    '{"@level":"warn","@message":"json warn"}',
    '{"@level":"error","@message":"json error","message":"clash","asctime":"clash"}',
    '{"@level":"info","@message":5}',
    "[WARN] bracket warn",
    "[ERROR] bracket error",
    "just some chatter",
    "L" * (100 * 1024),  # over go-plugin's 64 KiB line buffer: split, not lost
    "after the long line",
    "panic: runtime error: index out of range [3] with length 3",
    "goroutine 1 [running]:",
]


def execute(request: pb.ExecuteRequest, wire: _raw.Wire) -> pb.ExecuteResponse:
    return pb.ExecuteResponse(output=b"still alive")


for line in LINES:
    sys.stderr.write(line + "\n")
sys.stderr.flush()
_raw.serve(execute)
