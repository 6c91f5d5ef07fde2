"""Output of executions in progress: partial output for GET and live followers (SSE)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from core.plugins.output import DEFAULT_OUTPUT_LIMIT, OutputBuffer

__all__ = ["LiveOutputs"]


@dataclass
class _Live:
    buffer: OutputBuffer
    followers: set[asyncio.Queue[bytes | None]] = field(default_factory=set)


class LiveOutputs:
    def __init__(self, limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
        self._limit = limit
        self._live: dict[str, _Live] = {}

    def begin(self, execution_id: str) -> None:
        self._live[execution_id] = _Live(OutputBuffer(self._limit))

    def append(self, execution_id: str, chunk: bytes) -> None:
        live = self._live.get(execution_id)
        if live is None:
            return
        live.buffer.write(chunk)
        for queue in live.followers:
            queue.put_nowait(chunk)

    def end(self, execution_id: str) -> None:
        live = self._live.pop(execution_id, None)
        if live is not None:
            for queue in live.followers:
                queue.put_nowait(None)

    def partial(self, execution_id: str) -> bytes | None:
        live = self._live.get(execution_id)
        return None if live is None else live.buffer.getvalue()

    async def follow(self, execution_id: str) -> AsyncIterator[bytes]:
        """What was produced so far, then every chunk until the execution ends."""
        live = self._live.get(execution_id)
        if live is None:
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        live.followers.add(queue)
        try:
            backlog = live.buffer.getvalue()
            if backlog:
                yield backlog
            while (chunk := await queue.get()) is not None:
                yield chunk
        finally:
            live.followers.discard(queue)
