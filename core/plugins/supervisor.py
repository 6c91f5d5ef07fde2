"""One plugin process kept alive across executions: lazy start, restart with backoff.

Dkron starts each plugin once and never again, so one crash fails every later
execution until the agent restarts (Dkron #647, #1689). Here a dead plugin is
relaunched for the next call, waiting out an exponential backoff so a plugin that
crashes at start cannot spin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from core.plugins.discovery import PluginBinary
from plugin_sdk.goplugin import DEFAULT_RECEIVE_LIMIT, PluginStartError
from plugin_sdk.protocol import PluginClient

__all__ = ["Backoff", "ManagedPlugin", "PluginState"]

log = logging.getLogger("dkron.plugins")


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.1
    maximum: float = 10.0
    # A plugin that stayed up this long is considered healthy again.
    reset_after: float = 30.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.maximum, self.initial * 2 ** (failures - 1)))


@dataclass(frozen=True)
class PluginState:
    running: bool
    pid: int | None
    starts: int
    failures: int
    last_error: str


class ManagedPlugin:
    def __init__(
        self,
        binary: PluginBinary,
        *,
        start_timeout: float = 60.0,
        receive_limit: int = DEFAULT_RECEIVE_LIMIT,
        backoff: Backoff = Backoff(),
    ) -> None:
        self.binary = binary
        self._start_timeout = start_timeout
        self._receive_limit = receive_limit
        self._backoff = backoff
        self._client: PluginClient | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._last_failure = 0.0
        self._started_at = 0.0
        self._starts = 0
        self._last_error = ""
        self._closed = False

    @property
    def name(self) -> str:
        return self.binary.name

    @property
    def closed(self) -> bool:
        """The runtime shut this plugin down (for good): a call failing now is not a crash."""
        return self._closed

    @property
    def state(self) -> PluginState:
        client = self._client
        running = client is not None and client.alive
        pid = client.process.pid if client is not None and running else None
        return PluginState(running, pid, self._starts, self._failures, self._last_error)

    def record_failure(self, error: str) -> None:
        self._last_error = error

    async def client(self) -> PluginClient:
        """The running plugin, (re)started if needed. Raises PluginStartError."""
        async with self._lock:
            if self._closed:
                raise PluginStartError(self.name, "the plugin runtime is shutting down")
            current = self._client
            if current is not None and current.alive:
                return current
            if current is not None:
                await self._reap(current)
            wait = self._backoff.delay(self._failures) - (time.monotonic() - self._last_failure)
            if wait > 0:
                log.info("waiting %.2fs before restarting plugin %r", wait, self.name)
                await asyncio.sleep(wait)
            try:
                self._client = await PluginClient.launch(
                    [str(self.binary.path)],
                    name=self.name,
                    start_timeout=self._start_timeout,
                    receive_limit=self._receive_limit,
                )
            except PluginStartError as exc:
                self._note_failure(str(exc))
                raise
            self._starts += 1
            self._started_at = time.monotonic()
            if self._starts > 1:
                log.info("plugin %r restarted (start #%d)", self.name, self._starts)
            return self._client

    def _note_failure(self, error: str) -> None:
        self._failures += 1
        self._last_failure = time.monotonic()
        self._last_error = error

    async def _reap(self, client: PluginClient) -> None:
        # It died on us: count it unless it had been healthy long enough to forgive.
        if time.monotonic() - self._started_at >= self._backoff.reset_after:
            self._failures = 0
        code = client.process.returncode
        # Keep the richer cause an execution recorded (crash message, stderr tail).
        cause = self._last_error or f"plugin exited with status {code}"
        self._note_failure(cause)
        await client.kill()
        self._client = None

    async def discard(self, reason: str) -> None:
        """Kill a plugin that is alive but unusable (hung), so the next call restarts it."""
        async with self._lock:
            client, self._client = self._client, None
            if client is not None:
                log.warning("killing plugin %r: %s", self.name, reason)
                self._note_failure(reason)
                await client.kill()

    async def close(self, grace: float = 2.0) -> None:
        async with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            await client.shutdown(grace)
