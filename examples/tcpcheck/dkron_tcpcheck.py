"""dkron-executor-tcpcheck: succeed when a TCP port accepts connections.

Job config (``executor_config``)::

    {"host": "db.internal", "port": "5432", "timeout": "2", "attempts": "3"}

A complete third-party executor built on dkron-py's plugin SDK. It runs under
dkron-py and, because it speaks go-plugin protocol 1 with Dkron's cookie, under
Dkron itself.
"""

from __future__ import annotations

import socket
import time

from plugin_sdk import ExecuteRequest, ExecuteResponse, StatusHelper, serve

__all__ = ["check", "main"]


def check(request: ExecuteRequest, status: StatusHelper) -> ExecuteResponse:
    host = request.config.get("host", "")
    if not host:
        return ExecuteResponse(error="tcpcheck: host is empty")
    try:
        port = int(request.config.get("port", ""))
        timeout = float(request.config.get("timeout", "2"))
        attempts = int(request.config.get("attempts", "1"))
    except ValueError as exc:
        return ExecuteResponse(error=f"tcpcheck: invalid number in config: {exc}")
    last_error = ""
    for attempt in range(1, attempts + 1):
        started = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=timeout):
                elapsed = (time.perf_counter() - started) * 1000
                line = f"{host}:{port} open ({elapsed:.1f} ms, attempt {attempt})\n"
                status.update(line)
                return ExecuteResponse(output=line.encode())
        except OSError as exc:
            last_error = f"{host}:{port} unreachable: {exc.strerror or exc}"
            status.update(f"attempt {attempt}: {last_error}\n", is_error=True)
    return ExecuteResponse(error=f"tcpcheck: {last_error}")


def main() -> None:
    serve(check)


if __name__ == "__main__":
    main()
