"""Executions through the full plugin path versus a bare fork-exec loop, in one run.

    python bench/plugin_exec.py [--executions 2000] [--concurrency 8] [--starts 20]

Measures, for the builtin `shell` executor running `true`:
- sequential latency p50/p99 and the per-execution overhead over bare `subprocess.run`;
- throughput (executions/s) through ONE plugin process with N executions in flight,
  against a bare loop with the same concurrency (threads running subprocess.run);
- plugin start (launch → handshake → connected) p50/p99.
Prints a table and writes bench/results/plugin_exec.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from plugin_sdk.protocol import PluginClient

sys.path.insert(0, str(Path(__file__).parent))
from _common import percentile

TARGETS = {"throughput_per_s": 300.0, "overhead_p50_ms": 2.0, "handshake_p50_ms": 300.0}
CONFIG = {"command": "true"}


def bare_sequential(n: int, command: str) -> list[float]:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run([command], check=True)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def bare_throughput(n: int, concurrency: int, command: str) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: subprocess.run([command], check=True), range(n)))
    return n / (time.perf_counter() - started)


async def plugin_sequential(client: PluginClient, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        response = await client.execute("bench", CONFIG)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.error:
            raise RuntimeError(response.error)
    return latencies


async def plugin_throughput(client: PluginClient, n: int, concurrency: int) -> float:
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            response = await client.execute("bench", CONFIG)
            if response.error:
                raise RuntimeError(response.error)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def plugin_starts(argv: list[str], n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        client = await PluginClient.launch(argv, name="shell")
        times.append((time.perf_counter() - started) * 1000)
        await client.shutdown()
    return times


async def measure(args: argparse.Namespace, plugin: str) -> dict[str, object]:
    true = shutil.which("true") or "/bin/true"
    warm = max(50, args.executions // 20)
    bare_sequential(warm, true)
    bare_seq = bare_sequential(args.executions, true)
    bare_tp = bare_throughput(args.executions, args.concurrency, true)
    client = await PluginClient.launch([plugin], name="shell")
    try:
        await plugin_sequential(client, warm)
        plugin_seq = await plugin_sequential(client, args.executions)
        plugin_tp = await plugin_throughput(client, args.executions, args.concurrency)
    finally:
        await client.shutdown()
    starts = await plugin_starts([plugin], args.starts)
    rows = {
        "bare_p50_ms": statistics.median(bare_seq),
        "bare_p99_ms": percentile(bare_seq, 99),
        "plugin_p50_ms": statistics.median(plugin_seq),
        "plugin_p99_ms": percentile(plugin_seq, 99),
        "bare_sequential_per_s": 1000 / statistics.mean(bare_seq),
        "plugin_sequential_per_s": 1000 / statistics.mean(plugin_seq),
        "bare_throughput_per_s": bare_tp,
        "throughput_per_s": plugin_tp,
        "handshake_p50_ms": statistics.median(starts),
        "handshake_p99_ms": percentile(starts, 99),
    }
    rows["overhead_p50_ms"] = rows["plugin_p50_ms"] - rows["bare_p50_ms"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument(
        "--plugin",
        default=shutil.which("dkron-executor-shell", path=str(Path(sys.executable).parent)),
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "plugin_exec.json"
    )
    args = parser.parse_args()
    if not args.plugin:
        raise SystemExit("dkron-executor-shell not found; pip install -e . first")
    results = asyncio.run(measure(args, args.plugin))
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"plugin_exec: {args.executions} executions of `true`, concurrency {args.concurrency}")
    print(f"machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}")
    print(f"{'metric':<28}{'bare fork-exec':>16}{'shell plugin':>16}{'target':>12}")
    table = [
        ("latency p50 (ms)", "bare_p50_ms", "plugin_p50_ms", None),
        ("latency p99 (ms)", "bare_p99_ms", "plugin_p99_ms", None),
        ("sequential exec/s", "bare_sequential_per_s", "plugin_sequential_per_s", None),
        (
            f"throughput exec/s (c={args.concurrency})",
            "bare_throughput_per_s",
            "throughput_per_s",
            "throughput_per_s",
        ),
        ("overhead p50 (ms)", None, "overhead_p50_ms", "overhead_p50_ms"),
        ("plugin start p50 (ms)", None, "handshake_p50_ms", "handshake_p50_ms"),
        ("plugin start p99 (ms)", None, "handshake_p99_ms", None),
    ]
    for label, bare, ours, target in table:
        bare_text = f"{results[bare]:.2f}" if bare else "-"
        target_text = ""
        if target:
            goal = TARGETS[target]
            met = results[target] >= goal if target.endswith("per_s") else results[target] <= goal
            target_text = (
                f"{'≥' if target.endswith('per_s') else '≤'}{goal:g} {'ok' if met else 'MISSED'}"
            )
        print(f"{label:<28}{bare_text:>16}{results[ours]:>16.2f}{target_text:>12}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": machine, "results": results, "targets": TARGETS}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
