"""dkron-py plugin SDK: write Dkron executor and processor plugins in Python.

An executor in a dozen lines::

    from plugin_sdk import ExecuteRequest, ExecuteResponse, StatusHelper, serve

    def execute(request: ExecuteRequest, status: StatusHelper) -> ExecuteResponse:
        status.update(f"hello from {request.job_name}\\n")
        return ExecuteResponse(output=b"done\\n")

    if __name__ == "__main__":
        serve(execute)

The binary speaks hashicorp/go-plugin protocol 1 with Dkron's cookie, so it runs
under dkron-py and under Dkron itself.
"""

from plugin_sdk.executor import ExecutorFunction, serve
from plugin_sdk.hookspecs import ENTRY_POINT_GROUP, hookimpl
from plugin_sdk.models import (
    ExecuteRequest,
    ExecuteResponse,
    Execution,
    Executor,
    Processor,
    StatusHelper,
)
from plugin_sdk.processor import ProcessorFunction, ProcessorPlugin, serve_processor

__all__ = [
    "ENTRY_POINT_GROUP",
    "ExecuteRequest",
    "ExecuteResponse",
    "Execution",
    "Executor",
    "ExecutorFunction",
    "Processor",
    "ProcessorFunction",
    "ProcessorPlugin",
    "StatusHelper",
    "hookimpl",
    "serve",
    "serve_processor",
]
