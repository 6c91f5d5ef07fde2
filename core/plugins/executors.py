"""Run one execution through an executor plugin and turn every fault into a result."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from core.plugins.output import DEFAULT_OUTPUT_LIMIT, OutputBuffer
from core.plugins.supervisor import ManagedPlugin
from plugin_sdk.goplugin import PluginCrashed, PluginError, PluginStartError, PluginTimeout

__all__ = ["ExecutionOutcome", "OutputCallback", "run_execution"]

log = logging.getLogger("dkron.plugins")

OutputCallback = Callable[[bytes, bool], "Awaitable[None] | None"]
# How long a plugin that timed out gets to prove it is still responsive.
_PING_AFTER_TIMEOUT = 1.0


@dataclass(frozen=True)
class ExecutionOutcome:
    success: bool
    # Dkron's convention: on failure, "<error>\n" followed by the plugin's output.
    output: bytes
    error: str = ""
    truncated: bool = False


async def run_execution(
    plugin: ManagedPlugin,
    job_name: str,
    config: Mapping[str, str],
    *,
    on_output: OutputCallback | None = None,
    timeout: float | None = None,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
) -> ExecutionOutcome:
    """Execute ``job_name`` on ``plugin``; never raises for plugin faults."""
    streamed = OutputBuffer(output_limit)

    async def on_update(chunk: bytes, is_error: bool) -> None:
        streamed.write(chunk)
        if on_output is not None:
            result = on_output(chunk, is_error)
            if inspect.isawaitable(result):
                await result

    try:
        async with asyncio.timeout(timeout):
            client = await plugin.client()
            response = await client.execute(job_name, config, on_update=on_update, timeout=timeout)
    except (PluginError, TimeoutError, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller cancelled us: not a plugin fault
        in_call = isinstance(exc, PluginError) and not isinstance(exc, PluginStartError)
        if isinstance(exc, asyncio.CancelledError) or (plugin.closed and in_call):
            # The runtime shut the plugin down mid-execution: grpc.aio raises
            # CancelledError when the channel is closed under a call, or the call fails
            # first because the process has already exited after our Shutdown.
            exc = PluginCrashed(plugin.name, "plugin was shut down during the execution")
        elif isinstance(exc, TimeoutError):
            exc = PluginTimeout(plugin.name, f"execution did not finish within {timeout:g}s")
        error = str(exc)
        plugin.record_failure(error)
        if isinstance(exc, PluginTimeout):
            await _check_after_timeout(plugin)
        # Whatever streamed before the fault is all the output there is; keep it.
        return _failed(error, streamed.getvalue(), output_limit, streamed.truncated)
    if response.error:
        return _failed(response.error, response.output, output_limit, False)
    final = OutputBuffer(output_limit)
    final.write(response.output)
    return ExecutionOutcome(True, final.getvalue(), "", final.truncated)


def _failed(error: str, output: bytes, limit: int, truncated: bool) -> ExecutionOutcome:
    buffer = OutputBuffer(limit)
    buffer.write(error.encode() + b"\n" + output)
    return ExecutionOutcome(False, buffer.getvalue(), error, truncated or buffer.truncated)


async def _check_after_timeout(plugin: ManagedPlugin) -> None:
    # A timed-out plugin may be wedged for everyone; a plugin that still answers
    # health is kept (the job was slow, not the plugin).
    state = plugin.state
    if not state.running:
        return
    client = await plugin.client()
    if not await client.ping(_PING_AFTER_TIMEOUT):
        await plugin.discard("unresponsive after an execution timeout")
