"""The pluggy hooks processors implement; the project name for markers is ``dkron``.

In-process processors are plain modules or objects with ``@hookimpl`` functions,
loaded from the ``dkron.processors`` entry-point group. Binary
``dkron-processor-*`` executables are registered behind an adapter implementing
the same hooks, so the host dispatches both the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import pluggy

from plugin_sdk.models import Execution

__all__ = ["ENTRY_POINT_GROUP", "PROJECT", "hookimpl", "hookspec"]

PROJECT = "dkron"
ENTRY_POINT_GROUP = "dkron.processors"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def dkron_processor_names() -> list[str]:
    """The processor names this plugin answers for (as used in a job's ``processors``).

    The host calls a plugin's :func:`dkron_process` only for these names.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def dkron_process(
    processor: str, execution: Execution, config: Mapping[str, str]
) -> Execution | None:
    """Process ``execution`` if ``processor`` is one of ours, else return None.

    dkron-py's host asks only the plugins listing ``processor``; checking it anyway
    keeps a plugin right under a plain ``pm.hook`` broadcast, and None passes the call
    on to an earlier-registered plugin. The returned execution replaces the one that
    gets stored. Raising marks the processor failed; the host records that on the
    execution and keeps going.
    """
    raise NotImplementedError
