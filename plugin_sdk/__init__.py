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

Beneath this surface: :mod:`plugin_sdk.goplugin` is go-plugin's protocol with no Dkron
in it, :mod:`plugin_sdk.protocol` is Dkron's layer over it (the host's client, the
cookie), :mod:`plugin_sdk.gocompat` is Go's value formats, shared with the host.
"""

import os

# gRPC's fork handlers can crash a child between fork() and exec() (seen with
# subprocess user=/preexec_fn, which force a real fork). Plugins exec children,
# never fork workers, so in a plugin process (the host's cookie is set) they are
# off unless the operator says otherwise. Must run before grpc is first imported.
# Names set here are listed so executors can keep them out of their jobs.
ENVIRONMENT_DEFAULTS: frozenset[str] = frozenset()
if os.environ.get("DKRON_PLUGIN_MAGIC_COOKIE") and "GRPC_ENABLE_FORK_SUPPORT" not in os.environ:
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    ENVIRONMENT_DEFAULTS = frozenset({"GRPC_ENABLE_FORK_SUPPORT"})

from typing import TYPE_CHECKING, Any  # noqa: E402

from plugin_sdk.hookspecs import ENTRY_POINT_GROUP, hookimpl  # noqa: E402
from plugin_sdk.models import (  # noqa: E402
    ExecuteRequest,
    ExecuteResponse,
    Execution,
    Executor,
    Processor,
    StatusHelper,
)

if TYPE_CHECKING:
    from plugin_sdk.executor import ExecutorFunction, serve
    from plugin_sdk.processor import ProcessorFunction, ProcessorPlugin, serve_processor

# The serving side imports grpc (~60 ms). It loads on first use, so importing the
# light parts (models, hookspecs, gocompat) stays cheap for the host's CLI.
_LAZY = {
    "ExecutorFunction": "plugin_sdk.executor",
    "serve": "plugin_sdk.executor",
    "ProcessorFunction": "plugin_sdk.processor",
    "ProcessorPlugin": "plugin_sdk.processor",
    "serve_processor": "plugin_sdk.processor",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plugin_sdk' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ENTRY_POINT_GROUP",
    "ENVIRONMENT_DEFAULTS",
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
