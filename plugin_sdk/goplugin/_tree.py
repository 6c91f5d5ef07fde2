"""A process's descendants, so ending a plugin ends everything it started.

A plugin that fails its handshake or hangs is SIGKILLed; its children (a job, a helper
that inherited its stdout) would be orphaned and, holding the pipes, could keep the host
waiting. Linux's /proc gives every process's parent; elsewhere there is nothing to walk
and only the plugin itself is signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal

__all__ = ["Process", "descendants", "kill_all"]

# (pid, start time in clock ticks): a pid that was reused meanwhile is not the same process.
Process = tuple[int, int]


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def descendants(root: int) -> list[Process]:
    """Every living descendant of ``root`` (not ``root`` itself)."""
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []
    children: dict[int, list[Process]] = {}
    for pid in pids:
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(stat[0], []).append((pid, stat[1]))
    found: list[Process] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child[0])
    return found


def kill_all(processes: list[Process]) -> None:
    """SIGKILL each process that is still the one recorded."""
    for pid, started in processes:
        stat = _stat(pid)
        if stat is not None and stat[1] == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
