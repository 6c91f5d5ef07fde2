"""A steerable SDK processor binary.

It appends ``[<tag>@<reporting_node>]`` to the execution's output; config ``fail``
makes it raise, ``crash`` makes the process exit with that status.
"""

import os
from collections.abc import Mapping
from dataclasses import replace

from plugin_sdk import Execution, serve_processor


def process(execution: Execution, config: Mapping[str, str]) -> Execution:
    if "crash" in config:
        os._exit(int(config["crash"]))
    if "fail" in config:
        raise RuntimeError(config["fail"])
    note = f"[{config.get('tag', 'binary')}@{config.get('reporting_node', '')}]"
    return replace(execution, output=execution.output + note.encode())


if __name__ == "__main__":
    serve_processor(process)
