"""The store's snapshot format: how long a snapshot of a given state takes to write and
to load, its size, and peak memory.

    python bench/snapshot.py [--jobs 10000] [--executions 100]

Builds the state in memory (jobs with `--executions` finished runs each, 32 bytes of
output), writes it as a snapshot the way Raft compaction does (RaftStore's serializer),
then loads it into a fresh state the way a restart does. Both run on the event loop's
thread in the server, so the write time is also how long the loop stalls.
Prints one line and writes bench/results/snapshot.json.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pysyncobj.node import TCPNode

from core.jobs.model import Execution, Job
from core.store.raft import RaftConfig, RaftStore
from core.store.state import StoreState

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, machine_line, write_report


def build(jobs: int, executions: int) -> StoreState:
    state = StoreState(max_history=max(executions, 1))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number in range(jobs):
        name = f"job-{number}"
        state.jobs[name] = Job(
            name=name, schedule="@every 1m", executor="shell",
            executor_config={"command": "echo hi"}, metadata={"team": "a"},
            success_count=executions, last_success=start,
        )  # fmt: skip
        history = {}
        for run in range(executions):
            execution = Execution(
                job_name=name, started_at=start + timedelta(seconds=run),
                finished_at=start + timedelta(seconds=run, milliseconds=5), success=True,
                output=b"x" * 32, node_name="node1", group=run, attempt=1,
                run_id=f"{name}@{run}",
            )  # fmt: skip
            history[execution.id] = execution
        state.executions[name] = history
    state._names = sorted(state.jobs)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--executions", type=int, default=100, help="per job")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "snapshot.json"
    )
    args = parser.parse_args()
    machine = machine_info()
    print(machine_line(machine))
    state = build(args.jobs, args.executions)
    store = RaftStore(RaftConfig(bind="127.0.0.1:1"), state)
    raft_data = ((b"\x01", 5, 1), (b"\x01", 4, 1), {TCPNode("127.0.0.1:1")})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "snapshot.bin")
        gc.collect()
        began = time.perf_counter()
        store._write_snapshot(path, raft_data)
        write_s = time.perf_counter() - began
        size_mb = os.path.getsize(path) / 2**20
        fresh = RaftStore(RaftConfig(bind="127.0.0.1:1"), StoreState(max_history=args.executions))
        began = time.perf_counter()
        fresh._read_snapshot(path)
        read_s = time.perf_counter() - began
    loaded = sum(len(h) for h in fresh.state.executions.values())
    assert len(fresh.state.jobs) == args.jobs and loaded == args.jobs * args.executions
    results = {
        "write_s": write_s,
        "read_s": read_s,
        "size_mb": size_mb,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(
        f"{args.jobs} jobs x {args.executions} executions: write {write_s:.2f} s, load "
        f"{read_s:.2f} s, {size_mb:.1f} MiB, peak RSS {results['max_rss_mb']:.0f} MB"
    )
    write_report(args.out, machine, args, {}, results)


if __name__ == "__main__":
    main()
