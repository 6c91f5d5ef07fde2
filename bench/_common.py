"""Helpers shared by the bench scripts: percentiles, machine facts, target checks, output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "check_target",
    "cpu_model",
    "loadavg",
    "machine_info",
    "percentile",
    "rss_mb",
    "write_json",
]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values (a run that produced nothing)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def _ram_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return float("nan")


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": loadavg(),
    }


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size (VmRSS) of ``pid`` in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def check_target(value: float, goal: float, higher_is_better: bool) -> str:
    """``ok``, or ``MISSED`` with the shortfall (absolute and relative)."""
    if value != value:  # NaN: nothing was measured
        return "MISSED (no data)"
    met = value >= goal if higher_is_better else value <= goal
    if met:
        return "ok"
    gap = goal - value if higher_is_better else value - goal
    return f"MISSED by {gap:.3g} ({gap / goal:.0%})"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def machine_line(machine: dict[str, Any]) -> str:
    """The first line every benchmark prints: what it ran on, and how loaded."""
    return (
        f"machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['ram_gib']} GiB, "
        f"Python {machine['python']}, {machine['date']}, load {machine['loadavg_at_start']}"
    )


def write_report(
    path: Path,
    machine: dict[str, Any],
    args: Any,
    targets: dict[str, tuple[float, bool]],
    results: Any,
) -> None:
    """The JSON every benchmark writes: machine, arguments, targets, results."""
    write_json(
        path,
        {
            "machine": machine,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "targets": {k: {"goal": g, "higher_is_better": h} for k, (g, h) in targets.items()},
            "results": results,
        },
    )
    print(f"wrote {path}")
