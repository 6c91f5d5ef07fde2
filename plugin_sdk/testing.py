"""Unit-test a plugin binary through the real protocol, from synchronous test code.

with PluginHarness(["dkron-executor-mine"]) as plugin:
    result = plugin.execute(command="echo hi")
    assert result.success and result.output == b"hi\\n"
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from dkron_pb.dkronpy.v1 import processor_pb2
from plugin_sdk.convert import execution_from_proto, execution_to_proto
from plugin_sdk.models import Execution
from plugin_sdk.protocol import PluginClient

__all__ = ["ExecutionResult", "PluginHarness"]

T = TypeVar("T")


@dataclass
class ExecutionResult:
    output: bytes
    error: str
    updates: list[tuple[bytes, bool]] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.error


class PluginHarness:
    """Launches the plugin with the go-plugin handshake and drives it like a host would."""

    def __init__(
        self, command: str | Sequence[str], *, start_timeout: float = 30.0, name: str | None = None
    ) -> None:
        argv = [command] if isinstance(command, str) else list(command)
        resolved = shutil.which(argv[0])
        self._argv = [resolved or argv[0], *argv[1:]]
        self._start_timeout = start_timeout
        self._name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._client: PluginClient | None = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> PluginHarness:
        self._thread.start()
        try:
            self._client = self._run(
                PluginClient.launch(self._argv, name=self._name, start_timeout=self._start_timeout)
            )
        except BaseException:
            self._stop_loop()
            raise
        return self

    @property
    def client(self) -> PluginClient:
        assert self._client is not None, "use PluginHarness as a context manager"
        return self._client

    def execute(
        self,
        job_name: str = "test-job",
        config: Mapping[str, str] | None = None,
        *,
        deadline: float | None = 60.0,
        **options: str,
    ) -> ExecutionResult:
        """One execution; ``options`` are added to ``config`` (executor_config keys).

        ``deadline`` bounds the call (seconds); it is not named ``timeout`` because
        that is a common executor_config key (shell, http).
        """
        updates: list[tuple[bytes, bool]] = []

        def collect(chunk: bytes, is_error: bool) -> None:
            updates.append((chunk, is_error))

        merged = {**(config or {}), **options}
        response = self._run(
            self.client.execute(job_name, merged, on_update=collect, timeout=deadline)
        )
        return ExecutionResult(response.output, response.error, updates)

    def process(
        self, execution: Execution, config: Mapping[str, str] | None = None, **options: str
    ) -> Execution:
        """One call to a binary processor; raises RuntimeError if it reports an error."""
        request = processor_pb2.ProcessRequest(
            execution=execution_to_proto(execution), config={**(config or {}), **options}
        )
        response = self._run(self.client.call_processor(request, timeout=60.0))
        if response.error:
            raise RuntimeError(response.error)
        return execution_from_proto(response.execution)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._client is not None:
            self._run(self._client.shutdown())
        self._stop_loop()
