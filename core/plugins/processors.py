"""Processors, dispatched through pluggy.

In-process processors come from the ``dkron.processors`` entry-point group;
``dkron-processor-*`` binaries are registered behind :class:`BinaryProcessor`, an
adapter implementing the same hooks. A job's processor is dispatched only to the
plugins that list its name in ``dkron_processor_names`` (a plugin without that hook
cannot tell, so it is asked too), the latest registered first. Hooks are
synchronous, so dispatch runs on a worker thread and the adapter hands its gRPC call
back to the event loop: neither kind can block the loop. A processor that fails is
recorded on the execution and the next one still runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

import pluggy

from core.plugins.supervisor import ManagedPlugin
from core.wire import execution_from_proto, execution_to_proto
from dkron_pb.dkronpy.v1 import processor_pb2
from plugin_sdk import hookspecs
from plugin_sdk.goplugin import PluginError
from plugin_sdk.hookspecs import ENTRY_POINT_GROUP, PROJECT, hookimpl
from plugin_sdk.models import Execution

__all__ = ["BinaryProcessor", "ProcessingResult", "ProcessorDispatcher"]

log = logging.getLogger("dkron.processors")

DEFAULT_PROCESS_TIMEOUT = 60.0


class BinaryProcessor:
    """Adapts a ``dkron-processor-*`` binary into a pluggy plugin."""

    def __init__(
        self,
        plugin: ManagedPlugin,
        loop: asyncio.AbstractEventLoop,
        timeout: float = DEFAULT_PROCESS_TIMEOUT,
    ) -> None:
        self._plugin = plugin
        self._loop = loop
        self._timeout = timeout

    @hookimpl
    def dkron_processor_names(self) -> list[str]:
        return [self._plugin.name]

    @hookimpl
    def dkron_process(
        self, processor: str, execution: Execution, config: Mapping[str, str]
    ) -> Execution | None:
        call = asyncio.run_coroutine_threadsafe(self._process(execution, config), self._loop)
        return call.result()

    async def _process(self, execution: Execution, config: Mapping[str, str]) -> Execution:
        client = await self._plugin.client()
        request = processor_pb2.ProcessRequest(
            execution=execution_to_proto(execution), config=dict(config)
        )
        response = await client.call_processor(request, timeout=self._timeout)
        if response.error:
            raise RuntimeError(response.error)
        return execution_from_proto(response.execution)


@dataclass
class ProcessingResult:
    execution: Execution
    errors: list[str] = field(default_factory=list)


class UnknownProcessor(LookupError):
    pass


class ProcessorDispatcher:
    def __init__(self, *, load_entry_points: bool = True) -> None:
        self.manager = pluggy.PluginManager(PROJECT)
        self.manager.add_hookspecs(hookspecs)
        # Entry points that could not be loaded: (entry point name, cause).
        self.load_errors: list[tuple[str, str]] = []
        if load_entry_points:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        # pluggy's own loader (it honours set_blocked, skips registered names and keeps
        # list_plugin_distinfo), one name at a time: over the whole group it stops at the
        # first entry point that fails to import, and a broken third-party package must
        # cost only its own processor (recorded and logged), never the agent's start.
        values: dict[str, str] = {}
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            values.setdefault(entry_point.name, entry_point.value)
        for name, value in values.items():
            try:
                self.manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
            except Exception as exc:
                cause = f"{type(exc).__name__}: {exc}"
                self.load_errors.append((name, cause))
                log.error("cannot load processor entry point %r (%s): %s", name, value, cause)

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin; one registered later answers first for a shared name."""
        self.manager.register(plugin, name=name)

    def register_binaries(
        self,
        plugins: Iterable[ManagedPlugin],
        loop: asyncio.AbstractEventLoop,
        timeout: float = DEFAULT_PROCESS_TIMEOUT,
    ) -> None:
        for plugin in plugins:
            self.register(BinaryProcessor(plugin, loop, timeout), name=f"binary:{plugin.name}")

    def unregister_binary(self, name: str) -> None:
        self.manager.unregister(name=f"binary:{name}")

    def names(self) -> list[str]:
        found: set[str] = set()
        for names in self.manager.hook.dkron_processor_names():
            found.update(names)
        return sorted(found)

    def _hook_for(self, name: str) -> pluggy.HookCaller:
        """``dkron_process`` limited to the plugins that answer for ``name``."""
        others = [
            impl.plugin
            for impl in self.manager.hook.dkron_processor_names.get_hookimpls()
            if name not in cast("list[str]", impl.function())
        ]
        return self.manager.subset_hook_caller("dkron_process", remove_plugins=others)

    def _call(self, name: str, execution: Execution, config: Mapping[str, str]) -> Execution:
        result = self._hook_for(name)(processor=name, execution=execution, config=config)
        if result is None:
            raise UnknownProcessor(f"no processor named {name!r} (known: {self.names()})")
        if not isinstance(result, Execution):
            raise TypeError(f"returned {type(result).__name__}, expected Execution")
        return result

    async def run(
        self,
        execution: Execution,
        processors: Mapping[str, Mapping[str, str]],
        reporting_node: str = "",
    ) -> ProcessingResult:
        """Run the job's processors in order; each gets the previous one's result."""
        result = ProcessingResult(execution)
        for name, config in processors.items():
            merged = {**config, "reporting_node": reporting_node}
            try:
                result.execution = await asyncio.to_thread(
                    self._call, name, result.execution, merged
                )
            except (PluginError, UnknownProcessor, Exception) as exc:
                cause = (
                    str(exc)
                    if isinstance(exc, (PluginError, UnknownProcessor))
                    else (f"{type(exc).__name__}: {exc}")
                )
                error = f"processor {name!r} failed: {cause}"
                log.warning("%s", error, extra={"job": execution.job_name})
                result.errors.append(error)
                # Never lost: the note travels with the stored output too.
                result.execution = dataclasses.replace(
                    result.execution, output=result.execution.output + f"\n[{error}]\n".encode()
                )
        return result
