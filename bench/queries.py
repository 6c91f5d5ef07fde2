"""Job list queries at scale, and the store's figures for a million jobs.

    python bench/queries.py                         # 100k queries, then 1M jobs
    python bench/queries.py --jobs 100000 --skip-million
    python bench/queries.py --skip-queries --million 1000000

Queries: ``--jobs`` jobs (display names, three metadata keys, 10% disabled, 60% with one
finished run so the status varies, a spread of next times) built in-process through
``StoreState.apply``. Each page (``_start=0&_end=25``) is timed at the store
(``StoreState.list_jobs``) and through the real HTTP API: ``core.api.app.build_app``
served by aiohttp on loopback over that state, with an aiohttp client in the same process
(so a request's time includes the client's share of the loop).

Million: ``--million`` jobs without history created through ``StoreState.apply`` of
``Batch``es of ``SetJob`` (the rate), a page listed, then a real single-node
``RaftStore`` with a temporary data dir over that state: ``compact_now()`` (snapshot
written), close, reopen and time until ``start()`` returns (the snapshot loaded and the
indexes rebuilt). RSS after each step.

Prints a table and writes bench/results/queries.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from core.acl import AclService
from core.api.app import build_app
from core.jobs.model import Execution, Job
from core.store.commands import Batch, FinishExecution, SetJob, SetNext, StartExecution
from core.store.raft import RaftConfig, RaftStore
from core.store.state import SORTABLE_JOB_FIELDS, JobQuery, StoreState

sys.path.insert(0, str(Path(__file__).parent))
from _common import check_target, machine_info, machine_line, percentile, rss_mb, write_report

T0 = datetime(2026, 6, 1, tzinfo=UTC)
WORDS = ["backup", "Report", "sync", "Cleanup", "ingest", "ETL", "mail", "rotate", "Index"]
GOAL_P99_MS = 20.0
GOAL_RESTART_S = 30.0

# (label, HTTP query string, the same as a JobQuery)


def _q(label: str, params: str, **query: Any) -> tuple[str, str, JobQuery]:
    return label, params, JobQuery(**query)


# (label, HTTP query string, the same as a JobQuery)
QUERIES: list[tuple[str, str, JobQuery]] = [
    _q("sort displayname", "_sort=displayname", sort="displayname"),
    _q("sort displayname DESC", "_sort=displayname&_order=DESC", sort="displayname",
       descending=True),
    _q("metadata team=t3", "metadata[team]=t3", metadata={"team": "t3"}),
    _q("metadata team=t3 AND env=prod", "metadata[team]=t3&metadata[env]=prod",
       metadata={"team": "t3", "env": "prod"}),
    _q("status=failed", "status=failed", status="failed"),
    _q("status=untriggered", "status=untriggered", status="untriggered"),
    _q("sort next", "_sort=next", sort="next"),
    _q("status=success, sort next DESC", "status=success&_sort=next&_order=DESC",
       status="success", sort="next", descending=True),
    _q("metadata env=prod, sort displayname", "metadata[env]=prod&_sort=displayname",
       metadata={"env": "prod"}, sort="displayname"),
    _q("disabled=true, sort success_count", "disabled=true&_sort=success_count",
       disabled="true", sort="success_count"),
    _q("q=job-00999 (no index: a scan)", "q=job-00999", q="job-00999"),
    _q("q=job-00999, metadata team=t3", "q=job-00999&metadata[team]=t3", q="job-00999",
       metadata={"team": "t3"}),
]  # fmt: skip


def page(query: JobQuery) -> JobQuery:
    return JobQuery(
        metadata=query.metadata,
        q=query.q,
        status=query.status,
        disabled=query.disabled,
        sort=query.sort,
        descending=query.descending,
        start=0,
        end=25,
    )


def make_job(rng: random.Random, number: int) -> Job:
    return Job(
        name=f"job-{number:07d}",
        displayname=f"{rng.choice(WORDS)} {rng.randrange(10**6)}",
        schedule=rng.choice(["@every 1m", "@every 5m", "0 0 * * * *", "@manually"]),
        executor="shell",
        executor_config={"command": "true"},
        metadata={
            "team": f"t{number % 20}",
            "env": rng.choice(["prod", "staging", "dev"]),
            "region": f"r{number % 7}",
        },
        disabled=rng.random() < 0.1,
    )  # fmt: skip


def create(state: StoreState, count: int, batch: int, rng: random.Random) -> float:
    """SetJob in Batches of ``batch``; returns the seconds it took."""
    began = time.perf_counter()
    for first in range(0, count, batch):
        commands = tuple(
            SetJob(make_job(rng, n), merge=False) for n in range(first, min(first + batch, count))
        )
        state.apply(Batch(commands))
    return time.perf_counter() - began


def build_query_state(count: int, rng: random.Random) -> StoreState:
    state = StoreState(max_history=1)
    create(state, count, 1000, rng)
    names = sorted(state.jobs)
    for index, name in enumerate(names):
        if rng.random() < 0.6:
            started = T0 + timedelta(seconds=index)
            running = Execution(job_name=name, started_at=started, node_name="n1")
            state.apply(StartExecution(running))
            state.apply(
                FinishExecution(
                    Execution(
                        job_name=name, started_at=started, node_name="n1", attempt=1,
                        finished_at=started + timedelta(seconds=1), success=rng.random() < 0.85,
                    )
                )
            )  # fmt: skip
    for first in range(0, len(names), 1000):
        updates = tuple(
            (n, T0 + timedelta(seconds=rng.randrange(86_400))) for n in names[first : first + 1000]
        )
        state.apply(SetNext(updates))
    return state


def timed(call: Callable[[], Any], budget_s: float, at_most: int) -> list[float]:
    """Milliseconds per call: ``at_most`` calls, or fewer (at least 5) within the budget."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < at_most and (len(times) < 5 or time.perf_counter() < deadline):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return times


class _Settings:
    node_name = "bench"
    encrypt = None
    strict_job_fields = False
    region = "global"
    datacenter = "dc1"
    bootstrap_expect = 1


class _Backend:
    """What GET /v1/jobs needs of a node, over a state built in-process."""

    paused = False

    def __init__(self, state: StoreState) -> None:
        self.state = state
        self.config = _Settings()
        self.acl = AclService(state, self._no_writes, enabled=False)

    @staticmethod
    async def _no_writes(command: Any) -> Any:
        raise RuntimeError("the bench only reads")

    def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        return self.state.list_jobs(query)


async def http_times(state: StoreState, reps: int, budget_s: float) -> dict[str, list[float]]:
    runner = web.AppRunner(build_app(_Backend(state)))  # type: ignore[arg-type]
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    results: dict[str, list[float]] = {}
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as client:
            for label, params, query in QUERIES:
                url = f"/v1/jobs?{params}&_start=0&_end=25"
                expected_total = state.list_jobs(page(query))[1]
                times: list[float] = []
                deadline = time.perf_counter() + budget_s
                while len(times) < reps and (len(times) < 5 or time.perf_counter() < deadline):
                    began = time.perf_counter()
                    async with client.get(url) as response:
                        body = await response.read()
                        total = int(response.headers["X-Total-Count"])
                    times.append((time.perf_counter() - began) * 1000)
                    assert response.status == 200 and body and total == expected_total, label
                results[label] = times
    finally:
        await runner.cleanup()
    return results


def queries(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(11)
    began = time.perf_counter()
    state = build_query_state(args.jobs, rng)
    build_s = time.perf_counter() - began
    gc.collect()
    out: dict[str, Any] = {"jobs": len(state.jobs), "build_s": build_s, "rss_mb": rss_mb()}
    print(f"{len(state.jobs)} jobs built in {build_s:.1f} s, RSS {out['rss_mb']:.0f} MB")
    store: dict[str, Any] = {}
    for label, _, query in QUERIES:
        wanted = page(query)
        times = timed(lambda q=wanted: state.list_jobs(q), args.budget, args.reps)
        store[label] = {
            "p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99),
            "n": len(times), "total": state.list_jobs(wanted)[1],
        }  # fmt: skip
    http = asyncio.run(http_times(state, args.reps, args.budget))
    out["store"] = store
    out["http"] = {
        label: {"p50_ms": percentile(t, 50), "p99_ms": percentile(t, 99), "n": len(t)}
        for label, t in http.items()
    }
    print(f"{'page _start=0&_end=25':<40} {'total':>7} {'store p50/p99 ms':>18} "
          f"{'HTTP p50/p99 ms':>18}  target (HTTP p99 <= {GOAL_P99_MS:g} ms)")  # fmt: skip
    for label, _, _ in QUERIES:
        s, h = store[label], out["http"][label]
        print(
            f"{label:<40} {s['total']:>7} {s['p50_ms']:>8.2f}/{s['p99_ms']:<9.2f} "
            f"{h['p50_ms']:>8.2f}/{h['p99_ms']:<9.2f} "
            f"{check_target(h['p99_ms'], GOAL_P99_MS, higher_is_better=False)}"
        )
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def index_figures(state: StoreState, out: dict[str, Any]) -> None:
    """The indexes alone: a second set of them over the same jobs (none before they
    existed: then nothing is measured)."""
    try:
        from core.store.index import JobIndex
    except ImportError:
        print("  no core.store.index in this tree: no index figures")
        return
    before_mb = rss_mb()
    began = time.perf_counter()
    spare = JobIndex(SORTABLE_JOB_FIELDS)
    spare.rebuild(state.jobs)
    out["index_rebuild_s"] = time.perf_counter() - began
    gc.collect()
    out["index_mb"] = rss_mb() - before_mb
    del spare
    gc.collect()
    print(
        f"  indexes: {out['index_mb']:.0f} MB ({out['index_mb'] * 2**20 / len(state.jobs):.0f}"
        f" B a job), rebuilt in {out['index_rebuild_s']:.1f} s"
    )


async def million(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(12)
    out: dict[str, Any] = {"jobs": args.million}
    state = StoreState()
    create_s = create(state, args.million, args.batch, rng)
    gc.collect()
    out.update(create_s=create_s, create_per_s=args.million / create_s, rss_created_mb=rss_mb())
    print(
        f"{args.million} jobs created in {create_s:.1f} s ({args.million / create_s:,.0f}/s, "
        f"Batch of {args.batch} SetJob), RSS {out['rss_created_mb']:.0f} MB"
    )
    index_figures(state, out)
    list_ms = {}
    for label, _, query in QUERIES:
        if "status=failed" in label or "success" in label:
            continue  # no history: every job is untriggered
        wanted = page(query)
        calls = timed(lambda q=wanted, s=state: s.list_jobs(q), 2.0, 50)  # type: ignore[misc]
        list_ms[label] = percentile(calls, 99)
    out["list_p99_ms"] = list_ms
    print("  page p99 ms: " + ", ".join(f"{k} {v:.2f}" for k, v in list_ms.items()))
    with tempfile.TemporaryDirectory() as tmp:
        config = RaftConfig(bind=f"127.0.0.1:{free_port()}", data_dir=Path(tmp))
        store = RaftStore(config, state)
        await store.start()
        # pysyncobj compacts only past two applied entries of its own log.
        for marker in ("bench-marker-1", "bench-marker-2"):
            await store.apply(SetJob(Job(name=marker, schedule="@manually")))
        snapshot = Path(tmp) / "raft" / "snapshot.bin"
        began = time.perf_counter()
        store.compact_now()
        while not snapshot.exists():
            await asyncio.sleep(0.01)
        out["snapshot_write_s"] = time.perf_counter() - began
        out["snapshot_mb"] = snapshot.stat().st_size / 2**20
        await store.close()
        del store, state
        # The restart in a fresh process, so its time and RSS are its own.
        child = subprocess.run(
            [sys.executable, __file__, "--reopen", tmp, "--bind", config.bind],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out.update(json.loads(child.stdout.splitlines()[-1]))
        assert out["restarted_jobs"] == args.million + 2
    print(
        f"  snapshot written in {out['snapshot_write_s']:.1f} s ({out['snapshot_mb']:.0f} MiB); "
        f"restart (reopen until ready) {out['restart_s']:.1f} s "
        f"{check_target(out['restart_s'], GOAL_RESTART_S, higher_is_better=False)}; "
        f"RSS after restart {out['rss_restarted_mb']:.0f} MB; "
        f"page sorted by displayname after restart p99 {out['restarted_list_p99_ms']:.2f} ms"
    )
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


async def reopen(data_dir: Path, bind: str) -> dict[str, Any]:
    began = time.perf_counter()
    again = RaftStore(RaftConfig(bind=bind, data_dir=data_dir))
    await again.start()
    out: dict[str, Any] = {"restart_s": time.perf_counter() - began}
    out["restarted_jobs"] = len(again.state.jobs)
    gc.collect()
    out["rss_restarted_mb"] = rss_mb()
    wanted = JobQuery(sort="displayname", end=25)
    out["restarted_list_p99_ms"] = percentile(
        timed(lambda: again.state.list_jobs(wanted), 2.0, 50), 99
    )
    await again.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs for the query part")
    parser.add_argument("--reps", type=int, default=200, help="calls per query, at most")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per query, about")
    parser.add_argument("--million", type=int, default=1_000_000, help="jobs, no history")
    parser.add_argument("--batch", type=int, default=1000, help="SetJob per Batch")
    parser.add_argument("--skip-queries", action="store_true")
    parser.add_argument("--skip-million", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "queries.json"
    )
    parser.add_argument("--reopen", type=Path, help=argparse.SUPPRESS)  # the restart's child
    parser.add_argument("--bind", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reopen is not None:
        print(json.dumps(asyncio.run(reopen(args.reopen, args.bind))))
        return
    machine = machine_info()
    print(machine_line(machine))
    results: dict[str, Any] = {"pid": os.getpid()}
    if not args.skip_queries:
        results["queries"] = queries(args)
    if not args.skip_million:
        results["million"] = asyncio.run(million(args))
    write_report(args.out, machine, args, {}, results)


if __name__ == "__main__":
    main()
