"""A well-behaved raw executor that reports, in its output, what the host put on the wire.

Each Execute waits for the host's ConnInfo for ``status_server``, calls Update on
the StatusHelper announced there, and returns JSON describing the environment, the
broker traffic and the methods called so far. ``--legacy`` serves and calls only
the pre-4.0.9 service names (``types.Executor``, ``types.StatusHelper``).
"""

import json
import os
import sys

import _raw
import grpc

from dkron_pb.types.legacy import executor_legacy_pb2_grpc as legacy_grpc
from dkron_pb.types.v1 import executor_pb2 as pb
from dkron_pb.types.v1 import executor_pb2_grpc as v1_grpc

LEGACY = "--legacy" in sys.argv
ENV_KEYS = [
    "DKRON_PLUGIN_MAGIC_COOKIE",
    "PLUGIN_MIN_PORT",
    "PLUGIN_MAX_PORT",
    "PLUGIN_PROTOCOL_VERSIONS",
    "FAKE_INHERITED",
]


def execute(request: pb.ExecuteRequest, wire: _raw.Wire) -> pb.ExecuteResponse:
    info = wire.broker.wait_for(request.status_server)
    with grpc.insecure_channel(f"unix:{info.address}") as channel:
        stub = (legacy_grpc.StatusHelperStub if LEGACY else v1_grpc.StatusHelperServiceStub)(
            channel
        )
        reply = stub.Update(
            pb.StatusUpdateRequest(output=f"live {request.job_name}".encode(), error=True),
            timeout=5,
        )
    with wire.broker.changed:
        report = {
            "env": {key: os.environ.get(key) for key in ENV_KEYS},
            "status_server": request.status_server,
            "config": dict(request.config),
            "announced": [[i.service_id, i.network, i.address] for i in wire.broker.infos],
            "knocks": [i.HasField("knock") for i in wire.broker.infos],
            "streams_opened": wire.broker.streams_opened,
            "streams_open": wire.broker.streams_open,
            "update_r": reply.r,
            "methods": list(wire.methods),
        }
    return pb.ExecuteResponse(output=json.dumps(report).encode())


_raw.serve(execute, legacy=LEGACY)
