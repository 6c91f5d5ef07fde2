"""The ``log`` processor: prints the output to the plugin's stdout (stderr on failure).

Run as the ``dkron-processor-log`` binary, what it prints travels over go-plugin's
GRPCStdio stream and the host logs it under the plugin's name.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import NoReturn

from builtin_plugins._forward import apply_forward, wants_forward
from plugin_sdk import Execution, ProcessorPlugin, serve_processor

__all__ = ["PLACEHOLDER", "LogProcessor", "main", "plugin", "processor"]

PLACEHOLDER = b"Output in dkron log"


class LogProcessor:
    """Writes a BEGIN/END block around the output; config: ``forward``."""

    def process(self, execution: Execution, config: Mapping[str, str]) -> Execution:
        forward = wants_forward(config)  # validate before any side effect
        block = (
            f"----- BEGIN OUTPUT job={execution.job_name} execution={execution.key} -----\n"
            f"{execution.output.decode('utf-8', 'replace')}\n"
            "----- END OUTPUT -----\n"
        )
        # Looked up per call: the SDK swaps sys.stdout/sys.stderr after the handshake.
        stream = sys.stdout if execution.success else sys.stderr
        # One write, so concurrent executions never interleave inside a block.
        stream.write(block)
        stream.flush()
        return apply_forward(execution, forward, PLACEHOLDER)


processor = LogProcessor()
plugin = ProcessorPlugin("log", processor)


def main() -> NoReturn:
    serve_processor(processor)
