"""The agent's plugin runtime: discovered executors and processors, run and shut down together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from core.plugins.discovery import DEFAULT_PLUGIN_DIR, Discovery, default_search_path, discover
from core.plugins.executors import ExecutionOutcome, OutputCallback, run_execution
from core.plugins.output import DEFAULT_OUTPUT_LIMIT
from core.plugins.processors import (
    DEFAULT_PROCESS_TIMEOUT,
    ProcessingResult,
    ProcessorDispatcher,
)
from core.plugins.supervisor import Backoff, ManagedPlugin
from plugin_sdk.goplugin import DEFAULT_RECEIVE_LIMIT, PluginStartError
from plugin_sdk.models import Execution

__all__ = ["PluginRuntime", "RuntimeSettings"]

log = logging.getLogger("dkron.plugins")


@dataclass(frozen=True)
class RuntimeSettings:
    plugin_dir: Path = Path(DEFAULT_PLUGIN_DIR)
    # go-plugin waits a minute; a plugin that has not said hello in 15 s is broken, and
    # its jobs should fail with that rather than hang for a minute each.
    start_timeout: float = 15.0
    receive_limit: int = DEFAULT_RECEIVE_LIMIT
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    backoff: Backoff = field(default_factory=Backoff)
    load_entry_points: bool = True
    # Start every plugin at agent start (as Dkron does) so a broken one shows up at once.
    eager: bool = True
    shutdown_grace: float = 2.0
    processor_timeout: float = DEFAULT_PROCESS_TIMEOUT
    # Processes of each executor plugin; a run goes to the one with the fewest runs in
    # flight. One Python plugin process takes in ~1 call per ms (gRPC's synchronous
    # server hands every call over on one thread), so a burst is spread over several.
    # One here (tests, embedding); the agent's default is core.config's.
    executor_processes: int = 1


class PluginRuntime:
    def __init__(
        self,
        settings: RuntimeSettings = RuntimeSettings(),
        search_path: Sequence[Path] | None = None,
    ) -> None:
        self.settings = settings
        self.search_path = list(search_path or default_search_path(settings.plugin_dir))
        self.discovery = Discovery()
        self.executors: dict[str, ManagedPlugin] = {}
        # Further processes of each executor (settings.executor_processes - 1 of them).
        self._spares: dict[str, list[ManagedPlugin]] = {}
        self._in_flight: dict[int, int] = {}  # id(ManagedPlugin) -> runs in flight
        self.binary_processors: dict[str, ManagedPlugin] = {}
        self.processors = ProcessorDispatcher(load_entry_points=settings.load_entry_points)
        self._starting: set[asyncio.Task[None]] = set()

    def _managed(self, found: Mapping[str, object]) -> dict[str, ManagedPlugin]:
        return {
            name: ManagedPlugin(
                binary,  # type: ignore[arg-type]
                start_timeout=self.settings.start_timeout,
                receive_limit=self.settings.receive_limit,
                backoff=self.settings.backoff,
            )
            for name, binary in found.items()
        }

    def _add_spares(self, executors: Mapping[str, ManagedPlugin]) -> None:
        extra = max(0, self.settings.executor_processes - 1)
        for name, primary in executors.items():
            self._spares[name] = [self._managed({name: primary.binary})[name] for _ in range(extra)]

    async def start(self, *, wait: bool = True) -> None:
        """Discover the plugins and, when eager, start them all: awaited, or with
        ``wait=False`` in the background (the agent must serve meanwhile: a plugin that
        never handshakes would otherwise hold up the API and Raft for its whole timeout).
        """
        self.discovery = discover(self.search_path)
        self.executors = self._managed(self.discovery.of_kind("executor"))
        self._add_spares(self.executors)
        self.binary_processors = self._managed(self.discovery.of_kind("processor"))
        self.processors.register_binaries(
            self.binary_processors.values(),
            asyncio.get_running_loop(),
            self.settings.processor_timeout,
        )
        log.info(
            "plugins discovered",
            extra={"executors": sorted(self.executors), "processors": self.processors.names()},
        )
        if not self.settings.eager:
            return
        if wait:
            await asyncio.gather(*(self._start_one(p) for p in self._all()))
            return
        for plugin in self._all():
            task = asyncio.create_task(self._start_one(plugin), name=f"start-{plugin.name}")
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def rescan(self) -> list[str]:
        """Look in the plugin directories again (SIGHUP, or a job naming an executor that
        is not loaded); returns the names of the plugins found new. A plugin whose file
        is gone is shut down; one replaced on disk is restarted from the new file on its
        next start."""
        found = discover(self.search_path)
        added: list[str] = []
        kinds: tuple[tuple[Literal["executor", "processor"], dict[str, ManagedPlugin]], ...] = (
            ("executor", self.executors),
            ("processor", self.binary_processors),
        )
        for kind, loaded in kinds:
            current = found.of_kind(kind)
            for name in [n for n in loaded if n not in current]:
                log.info("plugin %r (%s) is gone from the plugin directories", name, kind)
                await loaded.pop(name).close(self.settings.shutdown_grace)
                for spare in self._spares.pop(name, []) if kind == "executor" else []:
                    await spare.close(self.settings.shutdown_grace)
                if kind == "processor":
                    self.processors.unregister_binary(name)
            fresh = self._managed({n: b for n, b in current.items() if n not in loaded})
            loaded.update(fresh)
            if kind == "executor":
                self._add_spares(fresh)
            added += [f"{kind} {n}" for n in sorted(fresh)]
            for name, binary in current.items():
                loaded[name].binary = binary  # a new path applies from its next start
                for spare in self._spares.get(name, []) if kind == "executor" else []:
                    spare.binary = binary
            if kind == "processor":
                self.processors.register_binaries(
                    fresh.values(), asyncio.get_running_loop(), self.settings.processor_timeout
                )
        self.discovery = found
        if added:
            log.info("plugins found: %s", ", ".join(added))
        return added

    def _all(self) -> list[ManagedPlugin]:
        spares = [spare for group in self._spares.values() for spare in group]
        return [*self.executors.values(), *spares, *self.binary_processors.values()]

    def processes_of(self, executor: str) -> list[ManagedPlugin]:
        """Every process of an executor plugin, the primary first ([] if unknown)."""
        primary = self.executors.get(executor)
        return [] if primary is None else [primary, *self._spares.get(executor, [])]

    def _least_busy(self, name: str) -> ManagedPlugin:
        # Ties go to the first (the primary), so a quiet agent uses one process.
        return min(self.processes_of(name), key=lambda p: self._in_flight.get(id(p), 0))

    async def _start_one(self, plugin: ManagedPlugin) -> None:
        # Unlike Dkron, a broken plugin does not abort the agent: its jobs fail
        # with the cause and it is retried on the next execution.
        try:
            await plugin.client()
        except PluginStartError as exc:
            log.error("%s", exc)

    async def execute(
        self,
        executor: str,
        job_name: str,
        config: Mapping[str, str],
        *,
        on_output: OutputCallback | None = None,
        timeout: float | None = None,
    ) -> ExecutionOutcome:
        plugin = self.executors.get(executor)
        if plugin is None and await self.rescan():  # dropped into a running agent
            plugin = self.executors.get(executor)
        if plugin is None:
            known = ", ".join(sorted(self.executors)) or "none"
            error = f"executor {executor!r} not found in {self._where()} (available: {known})"
            return ExecutionOutcome(False, error.encode() + b"\n", error)
        plugin = self._least_busy(executor)
        key = id(plugin)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            return await run_execution(
                plugin,
                job_name,
                config,
                on_output=on_output,
                timeout=timeout,
                output_limit=self.settings.output_limit,
            )
        finally:
            self._in_flight[key] -= 1

    def _where(self) -> str:
        return ", ".join(str(p) for p in self.search_path)

    async def process(
        self,
        execution: Execution,
        processors: Mapping[str, Mapping[str, str]],
        reporting_node: str = "",
    ) -> ProcessingResult:
        return await self.processors.run(execution, processors, reporting_node)

    def issues(self) -> list[str]:
        """What is wrong with the plugins now (for /health): each one whose last start
        failed and that is not running since."""
        found: list[str] = []
        for plugin in self._all():
            state = plugin.state
            if not state.running and state.failures and state.last_error:
                issue = f"plugin {plugin.name}: {state.last_error}"
                if issue not in found:  # one line for all processes of a plugin
                    found.append(issue)
        return found

    async def close(self) -> None:
        """Controller.Shutdown every plugin, then SIGKILL what is left after the grace."""
        # A start still in its handshake is abandoned (and its process killed) first.
        starting = list(self._starting)
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        await asyncio.gather(
            *(p.close(self.settings.shutdown_grace) for p in self._all()), return_exceptions=True
        )

    async def __aenter__(self) -> PluginRuntime:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
