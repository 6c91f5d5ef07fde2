"""Bounded execution output: keep the last N bytes, as Dkron's circular buffer does."""

from __future__ import annotations

__all__ = ["DEFAULT_OUTPUT_LIMIT", "OutputBuffer"]

DEFAULT_OUTPUT_LIMIT = 256_000


class OutputBuffer:
    def __init__(self, limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
        if limit <= 0:
            raise ValueError("output limit must be positive")
        self.limit = limit
        self._data = bytearray()
        self.dropped = 0  # bytes discarded from the front

    def write(self, chunk: bytes) -> None:
        self._data += chunk
        excess = len(self._data) - self.limit
        if excess > 0:
            del self._data[:excess]
            self.dropped += excess

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def getvalue(self) -> bytes:
        return bytes(self._data)

    def __len__(self) -> int:
        return len(self._data)
