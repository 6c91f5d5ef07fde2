"""Fault: a hand-written plugin that answers Controller.Shutdown but never exits.

It serves only health and GRPCController, ignores SIGTERM and SIGINT, and touches
``$CORE_FAKE_PID_DIR/<name>.<pid>.shutdown`` when asked to shut down, so a test
can see the host asked politely before it had to SIGKILL.
"""

import os
import signal
import sys
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from dkron_pb.plugin import grpc_controller_pb2 as controller_pb
from dkron_pb.plugin import grpc_controller_pb2_grpc as controller_grpc

FOLDER = os.environ.get("CORE_FAKE_PID_DIR")
MARK = f"{os.path.basename(sys.argv[0])}.{os.getpid()}"


class Controller(controller_grpc.GRPCControllerServicer):
    def Shutdown(
        self, request: controller_pb.Empty, context: grpc.ServicerContext
    ) -> controller_pb.Empty:
        if FOLDER:
            Path(FOLDER, f"{MARK}.shutdown").touch()
        return controller_pb.Empty()  # ...and carry on regardless


def main() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if FOLDER:
        Path(FOLDER, MARK).touch()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    checker = health.HealthServicer()
    checker.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    controller_grpc.add_GRPCControllerServicer_to_server(Controller(), server)
    path = os.path.join(tempfile.gettempdir(), f"stubborn{uuid.uuid4().hex[:10]}")
    server.add_insecure_port(f"unix:{path}")
    server.start()
    print(f"1|1|unix|{path}|grpc|", flush=True)
    threading.Event().wait()


main()
