"""Snapshots and history at scale: memory per execution, the longest event-loop gap
while a real Raft compaction writes a snapshot, its size, load and restart times.

    python bench/snapshot.py [--jobs 10000] [--executions 100] [--restart-jobs 100000]

1. Builds the state in memory (jobs with `--executions` finished runs each, 32 bytes of
   output), measuring with tracemalloc what the history costs per execution beside its
   output, and the process RSS.
2. Starts a real RaftStore on a temporary data dir with that state, and runs a 1 ms
   ticker on its event loop while `compact()` writes the snapshot through pysyncobj's
   compaction (capture on the loop, encoding and writing in a thread): the longest gap
   between ticks is how long the loop was blocked.
3. Reopens the data dir with a new RaftStore (`start()`: loads the snapshot) and checks
   the state came back.
4. The same for `--restart-jobs` jobs with no history: snapshot, then restart time.
5. `--replay-jobs` jobs created through Raft (`SetJob` commands, so the journal holds
   them and pysyncobj compacts on its own every 20k entries), then a restart: its last
   snapshot plus the journal tail, as a server that stopped would find them.
Prints a few lines and writes bench/results/snapshot.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.jobs.model import Execution, Job
from core.store import history as history_codec
from core.store.commands import SetJob
from core.store.raft import RaftConfig, RaftStore
from core.store.state import StoreState

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, machine_line, rss_mb, write_report

_START = datetime(2026, 1, 1, tzinfo=UTC)


def build_jobs(state: StoreState, jobs: int, executions: int) -> None:
    # In name order: each insertion into the sorted name index is then an append.
    for name in sorted(f"job-{number}" for number in range(jobs)):
        state._put_job(
            Job(
                name=name, schedule="@every 1m", executor="shell",
                executor_config={"command": "echo hi"}, metadata={"team": "a"},
                success_count=executions, last_success=_START,
            )
        )  # fmt: skip


def build_history(state: StoreState, executions: int) -> None:
    for name in state.jobs:
        state.histories[name] = tuple(
            history_codec.encode(
                Execution(
                    job_name=name, started_at=_START + timedelta(seconds=run),
                    finished_at=_START + timedelta(seconds=run, milliseconds=5), success=True,
                    output=b"x" * 32, node_name="node1", group=run, attempt=1,
                    run_id=f"{name}@{run}",
                )
            )
            for run in range(executions)
        )  # fmt: skip


async def snapshot_and_restart(data_dir: Path, state: StoreState, port: int) -> dict[str, Any]:
    config = RaftConfig(bind=f"127.0.0.1:{port}", data_dir=data_dir)
    store = RaftStore(config, state)
    await store.start()
    largest_gap = 0.0
    ticking = True

    async def ticker() -> None:
        nonlocal largest_gap
        loop = asyncio.get_running_loop()
        last = loop.time()
        while ticking:
            await asyncio.sleep(0.001)
            now = loop.time()
            largest_gap = max(largest_gap, now - last)
            last = now

    try:
        await store.apply(SetJob(Job(name="zz-bench-marker", schedule="@manually")))
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        largest_gap = 0.0
        began = time.perf_counter()
        written = await store.compact(timeout=600)
        write_s = time.perf_counter() - began
        ticking = False
        await task
        assert written, "snapshot not written"
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        await store.close()
    size_mb = (data_dir / "raft" / "snapshot.bin").stat().st_size / 2**20
    expected_jobs = len(state.jobs)
    expected_runs = sum(len(h) for h in state.histories.values())
    gc.collect()
    again = RaftStore(config, StoreState(max_history=state.max_history))
    began = time.perf_counter()
    await again.start()
    restart_s = time.perf_counter() - began
    try:
        assert len(again.state.jobs) == expected_jobs
        assert sum(len(h) for h in again.state.histories.values()) == expected_runs
    finally:
        await again.close()
    return {
        "loop_gap_ms": largest_gap * 1000,
        "write_s": write_s,
        "size_mb": size_mb,
        "restart_s": restart_s,
        "peak_rss_mb": peak_rss,
    }


async def replay(data_dir: Path, jobs: int, port: int) -> dict[str, Any]:
    config = RaftConfig(bind=f"127.0.0.1:{port}", data_dir=data_dir)
    store = RaftStore(config)
    await store.start()
    began = time.perf_counter()
    try:
        for first in range(0, jobs, 5000):
            await asyncio.gather(
                *(
                    store.apply(SetJob(Job(name=f"job-{n}", schedule="@yearly")))
                    for n in range(first, min(first + 5000, jobs))
                )
            )
        create_s = time.perf_counter() - began
        snapshots = store.snapshots_reported
    finally:
        await store.close()
    raft = data_dir / "raft"
    files = {
        "journal_mb": (raft / "journal.bin").stat().st_size / 2**20,
        "snapshot_mb": (raft / "snapshot.bin").stat().st_size / 2**20
        if (raft / "snapshot.bin").exists()
        else 0.0,
    }
    again = RaftStore(config)
    began = time.perf_counter()
    await again.start()
    restart_s = time.perf_counter() - began
    try:
        assert len(again.state.jobs) == jobs
    finally:
        await again.close()
    return {"create_s": create_s, "auto_snapshots": snapshots, "restart_s": restart_s, **files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--executions", type=int, default=100, help="per job")
    parser.add_argument("--restart-jobs", type=int, default=100_000, help="0: skip")
    parser.add_argument("--replay-jobs", type=int, default=100_000, help="0: skip")
    parser.add_argument("--port", type=int, default=17_950)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "snapshot.json"
    )
    args = parser.parse_args()
    machine = machine_info()
    print(machine_line(machine))
    results: dict[str, Any] = {}

    # Bytes per execution, traced on a sample (tracemalloc's own tables would inflate
    # the RSS measured next).
    sample = StoreState(max_history=max(args.executions, 1))
    build_jobs(sample, min(args.jobs, 1000), args.executions)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    build_history(sample, args.executions)
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    runs = len(sample.jobs) * args.executions
    results["bytes_per_execution"] = traced / max(runs, 1) - 32  # beside its output
    del sample
    state = StoreState(max_history=max(args.executions, 1))
    build_jobs(state, args.jobs, args.executions)
    build_history(state, args.executions)
    gc.collect()
    results["rss_mb"] = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        results["history"] = asyncio.run(snapshot_and_restart(Path(tmp), state, args.port))
    if runs == 0:
        results["bytes_per_execution"] = float("nan")
    print(
        f"{args.jobs} jobs x {args.executions} executions: "
        f"{results['bytes_per_execution']:.0f} B/execution beside its output, "
        f"RSS {results['rss_mb']:.0f} MB; snapshot: longest loop gap "
        f"{results['history']['loop_gap_ms']:.1f} ms, written in "
        f"{results['history']['write_s']:.2f} s, {results['history']['size_mb']:.1f} MiB; "
        f"restart {results['history']['restart_s']:.2f} s"
    )
    del state
    gc.collect()
    if args.restart_jobs:
        gc.collect()
        state = StoreState()
        build_jobs(state, args.restart_jobs, 0)
        with tempfile.TemporaryDirectory() as tmp:
            results["jobs_only"] = asyncio.run(
                snapshot_and_restart(Path(tmp), state, args.port + 1)
            )
        jobs_only = results["jobs_only"]
        print(
            f"{args.restart_jobs} jobs, no history: snapshot longest loop gap "
            f"{jobs_only['loop_gap_ms']:.1f} ms, written in {jobs_only['write_s']:.2f} s, "
            f"{jobs_only['size_mb']:.1f} MiB; restart {jobs_only['restart_s']:.2f} s"
        )
    if args.replay_jobs:
        gc.collect()
        with tempfile.TemporaryDirectory() as tmp:
            results["replay"] = asyncio.run(replay(Path(tmp), args.replay_jobs, args.port + 2))
        replayed = results["replay"]
        print(
            f"{args.replay_jobs} jobs through Raft: created in {replayed['create_s']:.1f} s "
            f"({replayed['auto_snapshots']} automatic snapshots); restart from snapshot + "
            f"journal tail ({replayed['snapshot_mb']:.1f} + {replayed['journal_mb']:.1f} MiB) "
            f"{replayed['restart_s']:.2f} s"
        )
    results["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_report(args.out, machine, args, {}, results)


if __name__ == "__main__":
    main()
