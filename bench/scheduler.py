"""Scheduler throughput, start lag and scale, against a bare loop and APScheduler 3, in one run.

    python bench/scheduler.py [--jobs 100 500] [--window 20] [--scale-jobs 100000]
                              [--skip-scale] [--skip-apscheduler] [--out PATH]

(a) Throughput and start lag: N jobs ``@every 1s`` running ``date +%s.%N`` through the
    real path (DkronServer in-process, real pysyncobj in a tmp data dir, the builtin shell
    plugin). Every ``@every 1s`` job fires on the whole second, so each second brings a
    burst of N. Start lag is read from the job's own clock: the time ``date`` prints,
    minus the tick it ran for (``scheduled_at``), so fork, exec and everything before
    them count. The execution's ``started_at`` (stamped by the dispatcher before the
    plugin is called) is reported beside it as "stamped" lag, to show what it hides.
    Completion lag = ``finished_at`` - ``scheduled_at``. Same shape, same command (its
    printed time is the start there too), same window for the baselines: a bare fork-exec
    loop (thread pool) and APScheduler 3 (BackgroundScheduler + thread pool).
(b) Scale: create rate, RSS with 10k jobs and full history, RSS with 100k jobs, list-page
    latency, restart replay time (journal, then snapshot).

Every measurement runs in its own child process (``--phase``), so RSS, threads and
leftovers of one do not pollute the next. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    check_target,
    loadavg,
    machine_info,
    machine_line,
    percentile,
    rss_mb,
    write_report,
)

# Repository root on the path, so `python bench/scheduler.py` works without installing.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

TARGETS: dict[str, tuple[float, bool]] = {
    # name: (goal, higher is better)
    "throughput_per_s": (500.0, True),
    # Issue 11: p99 <= 100 ms on the job's own clock (and below APScheduler's, read beside it).
    "lag_p99_ms_at_100": (100.0, False),
    "rss_mb_10k_history": (300.0, False),
    "list_page_p99_ms": (50.0, False),
    "replay_s": (10.0, False),
}
# The job writes its own start time: `date` prints the moment it runs, after fork and exec.
COMMAND = ["date", "+%s.%N"]
# The plugin SDK's gRPC server runs executions on 64 worker threads: the baselines get as many.
DEFAULT_POOL = 64
HISTORY_OUTPUT = b"bench: a line of output, 32 B.\n"
PAGE = 25

log = logging.getLogger("bench.scheduler")


# -- small helpers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ms(seconds: float) -> float:
    return seconds * 1000.0


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


class CpuMeter:
    """CPU seconds used by this process, by one other process (and its reaped children),
    and by the whole machine, between ``start()`` and ``stop()``."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, other_pid: int | list[int] | None = None) -> None:
        # The shell plugin's processes (one pid, or all of them).
        if other_pid is None:
            self.other_pids: list[int] = []
        else:
            self.other_pids = other_pid if isinstance(other_pid, list) else [other_pid]
        self._begin: tuple[float, ...] = (0.0,) * 6

    def _sample(self) -> tuple[float, ...]:
        times = os.times()
        own = times.user + times.system
        children = times.children_user + times.children_system
        other = other_children = 0.0
        for pid in self.other_pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
                values = fields.split()
                # utime, stime, cutime, cstime are fields 14-17 (11-14 after the name).
                other += (int(values[11]) + int(values[12])) / self.TICK
                other_children += (int(values[13]) + int(values[14])) / self.TICK
        with open("/proc/stat") as stat:
            parts = [int(v) for v in stat.readline().split()[1:]]
        idle = (parts[3] + parts[4]) / self.TICK
        # Steal: time the hypervisor gave this VM's CPUs to someone else.
        steal = parts[7] / self.TICK
        total = sum(parts[:8]) / self.TICK
        return own, children + other_children, other, total - idle - steal, steal, total

    def start(self) -> None:
        self._begin = self._sample()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        own, commands, plugin, busy, steal, total = (
            e - b for e, b in zip(end, self._begin, strict=True)
        )
        return {
            "process_cpu_s": own,
            "plugin_cpu_s": plugin,
            "command_cpu_s": commands,
            "machine_busy_pct": 100.0 * busy / total if total else float("nan"),
            "steal_pct": 100.0 * steal / total if total else float("nan"),
        }


def window_stats(
    runs: list[tuple[float, float, float]], t0: float, t1: float, expected: int
) -> dict[str, Any]:
    """``runs`` are (scheduled, started, finished) epoch seconds; the window is [t0, t1)."""
    in_window = [r for r in runs if t0 <= r[0] < t1]
    start_lag = [ms(started - scheduled) for scheduled, started, _ in in_window]
    done_lag = [ms(finished - scheduled) for scheduled, _, finished in in_window]
    completed = sum(1 for _, _, finished in runs if t0 <= finished < t1)
    return {
        "expected": expected,
        "started": len(in_window),
        "not_started": expected - len(in_window),
        "throughput_per_s": completed / (t1 - t0),
        "lag_ms": summary(start_lag),
        "completion_lag_ms": summary(done_lag),
    }


async def sleep_until(epoch: float) -> None:
    await asyncio.sleep(max(0.0, epoch - time.time()))


class StallMonitor:
    """How long the event loop was unable to run anything (scheduler and API included)."""

    PERIOD = 0.01

    def __init__(self) -> None:
        self.stalls: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(self.PERIOD)
            late = time.perf_counter() - began - self.PERIOD
            if late > 0.05:
                self.stalls.append(late)

    def __enter__(self) -> StallMonitor:
        self._task = asyncio.create_task(self._watch())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def report(self) -> dict[str, float]:
        return {
            "max_stall_s": max(self.stalls, default=0.0),
            "stalls_over_1s": sum(1 for s in self.stalls if s > 1.0),
        }


async def wait_for_snapshot(snapshot: Path, before: int, deadline: float) -> None:
    """compact_now() only asks: the snapshot is written on a later Raft tick."""
    while time.perf_counter() < deadline:
        if snapshot.exists() and snapshot.stat().st_mtime_ns != before:
            return
        await asyncio.sleep(0.01)


# -- (a) our server -----------------------------------------------------------------------


def server_config(data_dir: Path, raft_port: int, max_history: int = 100) -> Any:
    from core.config import DEFAULT_EXECUTOR_PROCESSES
    from core.node import ServerConfig
    from core.plugins.runtime import RuntimeSettings

    # As `dkronctl agent` runs by default (its --executor-processes).
    processes = int(os.environ.get("BENCH_EXECUTOR_PROCESSES", DEFAULT_EXECUTOR_PROCESSES))
    return ServerConfig(
        node_name="bench",
        data_dir=data_dir,
        rpc_port=0,
        raft_port=raft_port,
        max_history=max_history,
        plugins=RuntimeSettings(
            plugin_dir=data_dir / "plugins",
            load_entry_points=False,
            executor_processes=processes,
        ),
    )


def tick_job(i: int) -> Any:
    from core.jobs.model import Job

    return Job(
        name=f"tick-{i:05d}",
        schedule="@every 1s",
        executor="shell",
        executor_config={"command": " ".join(COMMAND)},
    )


def own_start(output: bytes | str) -> float | None:
    """The start time the job printed (``date +%s.%N``), or None if it printed none."""
    text = output.decode() if isinstance(output, bytes) else output
    try:
        return float(text.strip().splitlines()[0])
    except (ValueError, IndexError):
        return None


async def phase_dkron(n: int, window: int, warmup: int) -> dict[str, Any]:
    from core.jobs.validation import validate_job
    from core.node import DkronServer

    validate_job(tick_job(0))
    with tempfile.TemporaryDirectory(prefix="bench-dkron-") as tmp:
        server = DkronServer(
            server_config(Path(tmp), free_port(), max_history=max(100, window + warmup + 30))
        )
        await server.start()
        try:
            created = time.perf_counter()
            for i in range(n):
                await server.set_job(tick_job(i))
            create_s = time.perf_counter() - created
            t0 = math.ceil(time.time()) + warmup
            t1 = t0 + window
            # Plugins start in the background: wait for every shell process to have a pid.
            shells = server.runtime.processes_of("shell")
            for shell in shells:
                await shell.client()
            meter = CpuMeter([pid for shell in shells if (pid := shell.state.pid) is not None])
            await sleep_until(t0)
            meter.start()
            await sleep_until(t1)
            cpu = meter.stop()
            # Let every fire scheduled inside the window be recorded, then stop firing.
            state = server.store.state
            last_slot = datetime.fromtimestamp(t1 - 1, UTC)
            deadline = time.time() + max(10.0, window)
            names = [tick_job(i).name for i in range(n)]
            never = last_slot - timedelta(days=1)
            while time.time() < deadline and any(
                state.last_fire.get(name, never) < last_slot for name in names
            ):
                await asyncio.sleep(0.05)
            await server.scheduler.stop()
            drained = await server.dispatcher.drain(60.0)
            shed = server.dispatcher.backlog.stats().shed_total
            finished_runs = [
                e
                for name in names
                for e in state.executions_of(name)
                if e.scheduled_at and e.started_at and e.finished_at
            ]
            runs: list[tuple[float, float, float]] = []
            stamped: list[tuple[float, float, float]] = []
            unclocked = 0
            for e in finished_runs:
                assert e.scheduled_at and e.started_at and e.finished_at
                scheduled, finished = e.scheduled_at.timestamp(), e.finished_at.timestamp()
                stamped.append((scheduled, e.started_at.timestamp(), finished))
                started = own_start(e.output)
                if started is None:
                    unclocked += 1
                else:
                    runs.append((scheduled, started, finished))
            failures = sum(1 for name in names for e in state.executions_of(name) if not e.success)
        finally:
            await server.stop(drain_timeout=30.0)
    result = window_stats(runs, t0, t1, n * window)
    result.update(
        cpu,
        stamped_lag_ms=window_stats(stamped, t0, t1, n * window)["lag_ms"],
        runs_without_own_clock=unclocked,
        shed_by_backlog=shed,
        create_s=create_s,
        failed_executions=failures,
        drained=drained,
        cpu_ms_per_execution={
            "server": ms(cpu["process_cpu_s"]) / max(1, result["started"]),
            "plugin": ms(cpu["plugin_cpu_s"]) / max(1, result["started"]),
            "command": ms(cpu["command_cpu_s"]) / max(1, result["started"]),
        },
    )
    return result


# -- (a) baselines ------------------------------------------------------------------------


def run_command(sink: list[tuple[float, float, float]], scheduled: float) -> None:
    done = subprocess.run(COMMAND, check=True, capture_output=True)
    finished = time.time()
    started = own_start(done.stdout)
    if started is not None:
        sink.append((scheduled, started, finished))


def phase_bare(n: int, window: int, warmup: int, pool: int) -> dict[str, Any]:
    """N starts on every whole second, handed to a thread pool: the fork-exec floor."""
    runs: list[tuple[float, float, float]] = []
    first = math.ceil(time.time()) + 1
    t0, t1 = first + warmup, first + warmup + window
    meter = CpuMeter()
    with ThreadPoolExecutor(pool) as executor:
        for slot in range(first, t1):
            time.sleep(max(0.0, slot - time.time()))
            if slot == t0:
                meter.start()
            for _ in range(n):
                executor.submit(run_command, runs, float(slot))
        time.sleep(max(0.0, t1 - time.time()))
        cpu = meter.stop()
    result = window_stats(runs, t0, t1, n * window)
    result.update(cpu)
    return result


def phase_apscheduler(n: int, window: int, warmup: int, pool: int) -> dict[str, Any]:
    """N APScheduler 3 interval jobs of 1 s, all anchored on the same whole second."""
    from apscheduler import __version__ as aps_version
    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MAX_INSTANCES,
        EVENT_JOB_MISSED,
        JobExecutionEvent,
        JobSubmissionEvent,
    )
    from apscheduler.executors.pool import ThreadPoolExecutor as ApsThreadPool
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    scheduled: dict[str, list[float]] = defaultdict(list)
    timings: dict[str, list[tuple[float, float]]] = defaultdict(list)
    counts = {"missed": 0, "skipped_max_instances": 0, "errors": 0}
    lock = threading.Lock()

    def job(job_id: str) -> None:
        done = subprocess.run(COMMAND, check=True, capture_output=True)
        finished = time.time()
        started = own_start(done.stdout)
        if started is not None:
            timings[job_id].append((started, finished))

    def listen(event: Any) -> None:
        with lock:
            if event.code == EVENT_JOB_EXECUTED and isinstance(event, JobExecutionEvent):
                scheduled[event.job_id].append(event.scheduled_run_time.timestamp())
            elif event.code == EVENT_JOB_MISSED:
                counts["missed"] += 1
            elif event.code == EVENT_JOB_ERROR:
                counts["errors"] += 1
            elif event.code == EVENT_JOB_MAX_INSTANCES and isinstance(event, JobSubmissionEvent):
                counts["skipped_max_instances"] += len(event.scheduled_run_times)

    scheduler = BackgroundScheduler(
        executors={"default": ApsThreadPool(pool)},
        # Run late fires however late (as we do) rather than dropping them after 1 s.
        job_defaults={"coalesce": False, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
    )
    scheduler.add_listener(
        listen, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES
    )
    first = math.ceil(time.time()) + 2
    anchor = datetime.fromtimestamp(first, UTC)
    for i in range(n):
        job_id = f"j{i}"
        scheduler.add_job(
            job, IntervalTrigger(seconds=1, start_date=anchor), args=(job_id,), id=job_id
        )
    t0, t1 = first + warmup, first + warmup + window
    meter = CpuMeter()
    scheduler.start()
    try:
        time.sleep(max(0.0, t0 - time.time()))
        meter.start()
        time.sleep(max(0.0, t1 - time.time()))
        cpu = meter.stop()
        deadline = time.time() + max(10.0, window)
        while time.time() < deadline:
            with lock:
                behind = any(not s or max(s) < t1 - 1 for s in scheduled.values()) or (
                    len(scheduled) < n
                )
            if not behind:
                break
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
    # A job never overlaps itself (max_instances=1): its k-th run is its k-th fire.
    runs = []
    for job_id, fires in scheduled.items():
        for fire, (started, finished) in zip(sorted(fires), sorted(timings[job_id]), strict=False):
            runs.append((fire, started, finished))
    result = window_stats(runs, t0, t1, n * window)
    result.update(cpu)
    result.update(counts, version=aps_version)
    return result


# -- (b) scale ----------------------------------------------------------------------------


def scale_job(i: int) -> Any:
    from core.jobs.model import Job

    # @yearly: a real schedule (on the heap, with a `next`) that never fires during the run.
    return Job(
        name=f"job-{i:06d}",
        displayname=f"Job {(i * 7919) % 1_000_003}",
        schedule="@yearly",
        executor="shell",
        executor_config={"command": "true"},
        metadata={"team": f"t{i % 10}"},
    )


async def create_jobs(server: Any, start: int, count: int, make: Callable[[int], Any]) -> float:
    """Create jobs one request at a time (as an API client would); returns jobs/s."""
    began = time.perf_counter()
    for i in range(start, start + count):
        await server.set_job(make(i))
    return count / (time.perf_counter() - began)


async def phase_history(jobs: int, per_job: int) -> dict[str, Any]:
    """RSS with ``jobs`` jobs and ``per_job`` finished executions each (full history)."""
    from core.jobs.model import Execution
    from core.node import DkronServer
    from core.store.commands import FinishExecution, StartExecution

    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        server = DkronServer(server_config(Path(tmp), free_port(), max_history=per_job))
        await server.start()
        try:
            gc.collect()
            rss_empty = rss_mb()
            create_rate = await create_jobs(server, 0, jobs, scale_job)
            gc.collect()
            rss_jobs = rss_mb()
            # History straight into the state machine, through the same commands the
            # dispatcher commits (Raft would only add its journal, which compacts).
            state = server.store.state
            base = datetime(2026, 1, 1, tzinfo=UTC)
            began = time.perf_counter()
            for i in range(jobs):
                name = scale_job(i).name
                for k in range(per_job):
                    started = base + timedelta(seconds=k, microseconds=i)
                    execution = Execution(
                        job_name=name,
                        started_at=started,
                        node_name="bench",
                        group=k,
                        attempt=1,
                        scheduled_at=started - timedelta(milliseconds=2),
                        run_id=f"{name}@{k}",
                    )
                    state.apply(StartExecution(execution))
                    # As the dispatcher does: a new record, with its own output bytes.
                    finished = dataclasses.replace(
                        execution,
                        finished_at=started + timedelta(milliseconds=3),
                        success=True,
                        output=HISTORY_OUTPUT[:-1] + b"\n",
                    )
                    state.apply(FinishExecution(finished))
            insert_s = time.perf_counter() - began
            gc.collect()
            rss_history = rss_mb()
            stored = sum(sum(1 for _ in state.executions_of(name)) for name in state.jobs)
            # A snapshot of this state is what pysyncobj writes on its own every 20k
            # commands or 5 minutes. Since issue 11 a thread writes it: compact_s is the
            # time until the file is there, not a loop stall (bench/snapshot.py measures
            # the loop's longest gap during one).
            snapshot = Path(tmp) / "raft" / "snapshot.bin"
            before = snapshot.stat().st_mtime_ns if snapshot.exists() else 0
            began = time.perf_counter()
            server.store.compact_now()
            await wait_for_snapshot(snapshot, before, began + 300.0)
            compact_s = time.perf_counter() - began
            snapshot_mb = snapshot.stat().st_size / 2**20 if snapshot.exists() else 0.0
            rss_after_compact = rss_mb()
        finally:
            await server.stop(drain_timeout=5.0)
    return {
        "jobs": jobs,
        "executions": stored,
        "create_per_s": create_rate,
        "history_insert_s": insert_s,
        "rss_mb_empty": rss_empty,
        "rss_mb_jobs": rss_jobs,
        "rss_mb_history": rss_history,
        "compact_s": compact_s,
        "snapshot_mb": snapshot_mb,
        "rss_mb_after_compact": rss_after_compact,
    }


def time_queries(server: Any, queries: list[Any], repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        for query in queries:
            began = time.perf_counter()
            page, _total = server.list_jobs(query)
            samples.append(ms(time.perf_counter() - began))
            assert len(page) <= PAGE
    return summary(samples)


async def api_sample(server: Any, start: int, count: int) -> dict[str, Any]:
    """Create ``count`` jobs through the REST API and time list pages, if core.api exists."""
    try:
        from core.api import api_port, serve_api
    except ImportError as exc:
        return {"skipped": f"core.api not available ({exc})"}
    import aiohttp

    from core.jobs.codec import go_json_dumps, job_to_json

    runner = await serve_api(server, host="127.0.0.1", port=0)
    try:
        base = f"http://127.0.0.1:{api_port(runner)}/v1"
        async with aiohttp.ClientSession() as session:
            began = time.perf_counter()
            for i in range(start, start + count):
                body = go_json_dumps(job_to_json(scale_job(i)))
                async with session.post(
                    f"{base}/jobs", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    if response.status != 201:
                        raise RuntimeError(f"POST /jobs: {response.status} {await response.text()}")
            rate = count / (time.perf_counter() - began)
            samples = []
            rng = random.Random(11)
            for _ in range(100):
                first = rng.randrange(0, start + count - PAGE)
                began = time.perf_counter()
                async with session.get(
                    f"{base}/jobs", params={"_start": str(first), "_end": str(first + PAGE)}
                ) as response:
                    page = await response.json()
                    if response.status != 200 or len(page) != PAGE:
                        raise RuntimeError(f"GET /jobs: {response.status}, {len(page)} jobs")
                samples.append(ms(time.perf_counter() - began))
    finally:
        await runner.cleanup()
    return {"create_per_s": rate, "jobs": count, "list_page_ms": summary(samples)}


async def phase_scale(jobs: int, data_dir: Path, raft_port: int) -> dict[str, Any]:
    from core.node import DkronServer
    from core.store.state import JobQuery

    server = DkronServer(server_config(data_dir, raft_port))
    await server.start()
    try:
        api_jobs = min(1000, jobs // 10)
        direct = jobs - api_jobs
        # Rate over the first 10% and the last 10%: does creating slow down as it grows?
        tenth = max(1, direct // 10)
        with StallMonitor() as create_stalls:
            rate_first = await create_jobs(server, 0, tenth, scale_job)
            began = time.perf_counter()
            await create_jobs(server, tenth, direct - 2 * tenth, scale_job)
            middle_s = time.perf_counter() - began
            rate_last = await create_jobs(server, direct - tenth, tenth, scale_job)
        rate_all = direct / (2 * tenth / rate_first + middle_s + tenth / rate_last)
        with StallMonitor() as api_stalls:
            api = await api_sample(server, direct, api_jobs)
            if "skipped" in api:
                await create_jobs(server, direct, api_jobs, scale_job)
        api.update(api_stalls.report())
        assert len(server.store.state.jobs) == jobs
        gc.collect()
        rss = rss_mb()
        rng = random.Random(7)
        starts = [rng.randrange(0, jobs - PAGE) for _ in range(200)]
        pages = time_queries(server, [JobQuery(start=s, end=s + PAGE) for s in starts], 1)
        sorted_pages = time_queries(
            server,
            [JobQuery(sort="displayname", start=s, end=s + PAGE) for s in starts[:10]],
            2,
        )
        filtered_pages = time_queries(
            server,
            [
                JobQuery(metadata={"team": "t3"}, start=s // 10, end=s // 10 + PAGE)
                for s in starts[:10]
            ],
            2,
        )
        journal = data_dir / "raft" / "journal.bin"
        snapshot = data_dir / "raft" / "snapshot.bin"
    finally:
        began = time.perf_counter()
        await server.stop(drain_timeout=5.0)
        stop_s = time.perf_counter() - began
    return {
        "jobs": jobs,
        "create_per_s": rate_all,
        "create_per_s_first_10pct": rate_first,
        "create_per_s_last_10pct": rate_last,
        "create_stalls": create_stalls.report(),
        "api": api,
        "rss_mb": rss,
        "list_page_ms": pages,
        "sorted_page_ms": sorted_pages,
        "filtered_page_ms": filtered_pages,
        "stop_s": stop_s,
        "journal_mb": journal.stat().st_size / 2**20 if journal.exists() else 0.0,
        "snapshot_mb": snapshot.stat().st_size / 2**20 if snapshot.exists() else 0.0,
    }


async def phase_replay(data_dir: Path, raft_port: int, expected: int, compact: bool) -> dict:
    """Start a new server on an existing data dir; time until every job is back."""
    from core.node import DkronServer

    journal = data_dir / "raft" / "journal.bin"
    snapshot = data_dir / "raft" / "snapshot.bin"
    files = {
        "journal_mb": journal.stat().st_size / 2**20 if journal.exists() else 0.0,
        "snapshot_mb": snapshot.stat().st_size / 2**20 if snapshot.exists() else 0.0,
    }
    began = time.perf_counter()
    server = DkronServer(server_config(data_dir, raft_port))
    await server.start()
    started_s = time.perf_counter() - began
    try:
        deadline = time.perf_counter() + 120.0
        while len(server.store.state.jobs) < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        loaded_s = time.perf_counter() - began
        loaded = len(server.store.state.jobs)
        scheduled = len(server.scheduler)
        gc.collect()
        rss = rss_mb()
        compact_s = None
        if compact:
            before = snapshot.stat().st_mtime_ns if snapshot.exists() else 0
            began_compact = time.perf_counter()
            server.store.compact_now()
            await wait_for_snapshot(snapshot, before, began_compact + 300.0)
            compact_s = time.perf_counter() - began_compact
    finally:
        await server.stop(drain_timeout=5.0)
    return {
        **files,
        "start_returned_s": started_s,
        "replay_s": loaded_s,
        "jobs_loaded": loaded,
        "jobs_scheduled": scheduled,
        "rss_mb": rss,
        "compact_s": compact_s,
    }


# -- orchestration ------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    args: list[str]
    timeout: float


def run_phase(phase: Phase) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    print(f"  {phase.name} ... (load {loadavg()[0]})", end="", flush=True)
    began = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--phase", *phase.args],
            capture_output=True,
            text=True,
            timeout=phase.timeout,
        )
    except subprocess.TimeoutExpired:
        print(" TIMED OUT")
        return {"error": f"timed out after {phase.timeout:g}s"}
    took = time.perf_counter() - began
    if done.returncode != 0:
        print(f" FAILED ({took:.0f}s)")
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        print(tail, file=sys.stderr)
        return {"error": f"exit {done.returncode}: {tail[-2000:]}"}
    print(f" {took:.0f}s")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["loadavg_after"] = loadavg()
    return result


def child_main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    kind, *rest = argv
    result: dict[str, Any]
    if kind == "dkron":
        n, window, warmup = map(int, rest)
        result = asyncio.run(phase_dkron(n, window, warmup))
    elif kind == "bare":
        n, window, warmup, pool = map(int, rest)
        result = phase_bare(n, window, warmup, pool)
    elif kind == "apscheduler":
        n, window, warmup, pool = map(int, rest)
        result = phase_apscheduler(n, window, warmup, pool)
    elif kind == "history":
        jobs, per_job = map(int, rest)
        result = asyncio.run(phase_history(jobs, per_job))
    elif kind == "scale":
        result = asyncio.run(phase_scale(int(rest[0]), Path(rest[1]), int(rest[2])))
    elif kind == "replay":
        result = asyncio.run(
            phase_replay(Path(rest[0]), int(rest[1]), int(rest[2]), rest[3] == "compact")
        )
    else:
        raise SystemExit(f"unknown phase {kind!r}")
    print(json.dumps(result, default=str))


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    headers = ("metric", "dkron-py", "bare loop", "APScheduler 3", "target")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(5)]
    for row in [headers, *rows]:
        print(
            "  ".join(
                cell.ljust(widths[i]) if i in (0, 4) else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
        )


def target_cell(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    goal, higher = TARGETS[name]
    return f"{'≥' if higher else '≤'}{goal:g}: {check_target(value, goal, higher)}"


def build_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []

    def get(run: dict[str, Any] | None, *path: str) -> Any:
        value: Any = run
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    for n_text, runs in results["throughput"].items():
        n = int(n_text)
        ours, bare, aps = runs.get("dkron"), runs.get("bare"), runs.get("apscheduler")
        label = f"N={n}"
        rows.append(
            (
                f"{label} executions/s (offered {n}/s)",
                fmt(get(ours, "throughput_per_s")),
                fmt(get(bare, "throughput_per_s")),
                fmt(get(aps, "throughput_per_s")),
                target_cell("throughput_per_s", get(ours, "throughput_per_s"))
                if n >= TARGETS["throughput_per_s"][0]
                else "-",
            )
        )
        for q in ("p50", "p99"):
            lag = get(ours, "lag_ms", q)
            target = target_cell("lag_p99_ms_at_100", lag) if q == "p99" and n == 100 else "-"
            rows.append(
                (
                    f"{label} start lag, job's own clock, {q} (ms)",
                    fmt(lag),
                    fmt(get(bare, "lag_ms", q)),
                    fmt(get(aps, "lag_ms", q)),
                    target,
                )
            )
        for q in ("p50", "p99"):
            rows.append(
                (
                    f"{label}   as stamped by the dispatcher, {q} (ms)",
                    fmt(get(ours, "stamped_lag_ms", q)),
                    "-",
                    "-",
                    "-",
                )
            )
        rows.append(
            (
                f"{label} completion lag p99 (ms)",
                fmt(get(ours, "completion_lag_ms", "p99")),
                fmt(get(bare, "completion_lag_ms", "p99")),
                fmt(get(aps, "completion_lag_ms", "p99")),
                "-",
            )
        )
        rows.append(
            (
                f"{label} not started in window (dkron-py: of them shed)",
                f"{fmt(get(ours, 'not_started'))} ({fmt(get(ours, 'shed_by_backlog'))})",
                fmt(get(bare, "not_started")),
                fmt(get(aps, "not_started")),
                "-",
            )
        )
        rows.append(
            (
                f"{label} machine CPU busy (%)",
                fmt(get(ours, "machine_busy_pct"), 0),
                fmt(get(bare, "machine_busy_pct"), 0),
                fmt(get(aps, "machine_busy_pct"), 0),
                "-",
            )
        )
        rows.append(
            (
                f"{label} CPU stolen by the hypervisor (%)",
                fmt(get(ours, "steal_pct"), 0),
                fmt(get(bare, "steal_pct"), 0),
                fmt(get(aps, "steal_pct"), 0),
                "-",
            )
        )
        cost = get(ours, "cpu_ms_per_execution")
        if cost:
            rows.append(
                (
                    f"{label} CPU ms/exec server+plugin+cmd",
                    "+".join(fmt(cost[k], 2) for k in ("server", "plugin", "command")),
                    "-",
                    "-",
                    "-",
                )
            )
    scale = results.get("scale") or {}
    history = scale.get("history") or {}
    if history:
        rows.append(
            (
                f"RSS {fmt(history.get('jobs'))} jobs + "
                f"{fmt(history.get('executions'))} execs (MB)",
                fmt(history.get("rss_mb_history")),
                "-",
                "-",
                target_cell("rss_mb_10k_history", history.get("rss_mb_history")),
            )
        )
    if history.get("compact_s") is not None:
        rows.append(
            (
                "  snapshot of that state: loop blocked (s)",
                fmt(history.get("compact_s"), 2),
                "-",
                "-",
                "-",
            )
        )
    big = scale.get("create") or {}
    if big:
        jobs = fmt(big.get("jobs"))
        rows += [
            (f"create jobs/s (set_job, {jobs})", fmt(big.get("create_per_s")), "-", "-", "-"),
            (
                "  first 10% / last 10%",
                f"{fmt(big.get('create_per_s_first_10pct'))} / "
                f"{fmt(big.get('create_per_s_last_10pct'))}",
                "-",
                "-",
                "-",
            ),
            (
                "create jobs/s (REST API sample)",
                fmt(get(big, "api", "create_per_s")),
                "-",
                "-",
                "-" if "skipped" not in big.get("api", {}) else "skipped",
            ),
            (
                "  longest loop stall during the REST sample (s)",
                fmt(get(big, "api", "max_stall_s"), 2),
                "-",
                "-",
                "-",
            ),
            (
                f"  longest loop stall while creating {jobs} (s)",
                fmt(get(big, "create_stalls", "max_stall_s"), 2),
                "-",
                "-",
                "-",
            ),
            (f"RSS {jobs} jobs (MB)", fmt(big.get("rss_mb")), "-", "-", "-"),
        ]
        for key, label in (
            ("list_page_ms", "page"),
            ("sorted_page_ms", "sorted page (displayname)"),
            ("filtered_page_ms", "filtered page (metadata)"),
        ):
            rows.append(
                (
                    f"{jobs} jobs: {label} p50 / p99 (ms)",
                    f"{fmt(get(big, key, 'p50'), 2)} / {fmt(get(big, key, 'p99'), 2)}",
                    "-",
                    "-",
                    target_cell("list_page_p99_ms", get(big, key, "p99")),
                )
            )
        rows.append(
            (
                f"{jobs} jobs: REST page p50 / p99 (ms)",
                f"{fmt(get(big, 'api', 'list_page_ms', 'p50'), 2)} / "
                f"{fmt(get(big, 'api', 'list_page_ms', 'p99'), 2)}",
                "-",
                "-",
                "-",
            )
        )
    for key, label in (("replay_journal", "journal"), ("replay_snapshot", "snapshot")):
        replay = scale.get(key)
        if replay and replay.get("compact_s") is not None:
            rows.append(
                (
                    f"snapshot of {fmt(big.get('jobs'))} jobs: loop blocked (s)",
                    fmt(replay.get("compact_s"), 2),
                    "-",
                    "-",
                    "-",
                )
            )
        if replay:
            rows.append(
                (
                    f"restart replay from {label} (s)",
                    fmt(replay.get("replay_s"), 2),
                    "-",
                    "-",
                    target_cell("replay_s", replay.get("replay_s")),
                )
            )
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--phase":
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 300, 500, 1000])
    parser.add_argument("--window", type=int, default=20, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=5, help="seconds before the window")
    parser.add_argument("--pool", type=int, default=DEFAULT_POOL, help="baseline threads")
    parser.add_argument("--scale-jobs", type=int, default=100_000)
    parser.add_argument("--history-jobs", type=int, default=10_000)
    parser.add_argument("--history-per-job", type=int, default=100)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-apscheduler", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "scheduler.json"
    )
    args = parser.parse_args()
    machine = machine_info()
    print(machine_line(machine))
    results: dict[str, Any] = {"throughput": {}, "scale": {}}
    budget = args.window + args.warmup + 120
    for n in args.jobs:
        print(f"N={n} jobs @every 1s, window {args.window}s after {args.warmup}s warm-up")
        runs: dict[str, Any] = {}
        common = [str(n), str(args.window), str(args.warmup)]
        runs["dkron"] = run_phase(Phase("dkron-py", ["dkron", *common], budget))
        runs["bare"] = run_phase(Phase("bare loop", ["bare", *common, str(args.pool)], budget))
        if not args.skip_apscheduler:
            runs["apscheduler"] = run_phase(
                Phase("APScheduler 3", ["apscheduler", *common, str(args.pool)], budget)
            )
        results["throughput"][str(n)] = runs
    if not args.skip_scale:
        print(f"scale: {args.history_jobs} jobs with history, then {args.scale_jobs} jobs")
        scale = results["scale"]
        scale["history"] = run_phase(
            Phase(
                "history",
                ["history", str(args.history_jobs), str(args.history_per_job)],
                600,
            )
        )
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            port = str(free_port())
            scale["create"] = run_phase(
                Phase("create + list", ["scale", str(args.scale_jobs), tmp, port], 900)
            )
            expected = str(args.scale_jobs)
            scale["replay_journal"] = run_phase(
                Phase("replay (journal)", ["replay", tmp, port, expected, "compact"], 300)
            )
            scale["replay_snapshot"] = run_phase(
                Phase("replay (snapshot)", ["replay", tmp, port, expected, "plain"], 300)
            )
    machine["loadavg_at_end"] = loadavg()
    print()
    print_table(build_rows(results))
    print(f"load average at end: {machine['loadavg_at_end']}")
    write_report(args.out, machine, args, TARGETS, results)


if __name__ == "__main__":
    main()
