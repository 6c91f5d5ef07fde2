"""Sustained executions/s and start lag of a real 3-server loopback cluster, against a bare loop.

    python bench/cluster.py [--servers 3] [--agents 0] [--jobs 300] [--window 20]
                            [--warmup 5] [--spread one|all] [--pool 64] [--skip-baseline]
                            [--out PATH] [--workdir DIR]

A cluster of ``dkronctl agent`` processes (tests/cluster/cluster_harness.py), ``--jobs``
jobs ``@every 1s`` running ``date +%s.%N`` through the builtin shell plugin. ``--spread one`` (the
default) tags every job ``role=dkron:1``: each launch goes to one node picked at random
among all of them, so the offered load is JOBS executions/s spread over the nodes;
``--spread all`` runs every launch on every node (JOBS x nodes executions/s).

Measured over ``--window`` seconds after ``--warmup``: executions finished per second (the
mean, and the slowest single second), start lag on the job's own clock = the time
``date`` printed - ``scheduled_at`` (so fork and exec count; the dispatcher's
``started_at`` stamp is reported beside it as "stamped"), completion lag =
``finished_at - scheduled_at`` (p50/p99), launches of the window that
never started, failures, CPU seconds and RSS of every node process. The baseline, run after
the cluster is gone, is bench/scheduler.py's bare fork-exec loop of the same command at the same
rate (a thread pool fed on every whole second). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))
sys.path.insert(2, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import (
    check_target,
    loadavg,
    machine_info,
    machine_line,
    percentile,
    rss_mb,
    write_report,
)
from cluster_harness import ZERO_TIME, Cluster, Node, epoch
from scheduler import COMMAND, DEFAULT_POOL, CpuMeter, own_start, phase_bare, window_stats

TARGETS: dict[str, tuple[float, bool]] = {
    # name: (goal, higher is better)
    "throughput_per_s": (300.0, True),
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(node: Node) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by the node process, and by the rest of its
    session: its plugins plus the commands they ran and reaped."""
    own = plugins = 0.0
    for pid in node.session_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime (fields 14-17; 11-14 after the name).
        if pid == node.pid:
            own = (int(fields[11]) + int(fields[12])) / TICK
        else:
            plugins += sum(int(v) for v in fields[11:15]) / TICK
    return own, plugins


def job_spec(name: str, spread: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "schedule": "@every 1s",
        "executor": "shell",
        "executor_config": {"command": " ".join(COMMAND)},
    }
    if spread == "one":
        spec["tags"] = {"role": "dkron:1"}
    return spec


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def run_cluster(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    history = str(args.window + args.warmup + 60)
    cluster = Cluster(
        workdir,
        servers=args.servers,
        agents=args.agents,
        server_args=["--max-history", history, "--log-level", "warn"],
        agent_args=["--log-level", "warn"],
    )
    with cluster:
        began = time.perf_counter()
        cluster.start()
        leader = cluster.wait_formed()
        formed_s = time.perf_counter() - began
        print(f"  formed in {formed_s:.1f}s; leader {leader.name}")
        names = [f"tick-{i:05d}" for i in range(args.jobs)]
        created = time.perf_counter()
        for name in names:
            cluster.create_job(job_spec(name, args.spread), via=leader)
        create_s = time.perf_counter() - created
        print(f"  created {args.jobs} jobs in {create_s:.1f}s (through the leader)")

        t0 = math.ceil(time.time()) + args.warmup
        t1 = t0 + args.window
        sleep_until(t0)
        meter = CpuMeter()
        meter.start()
        cpu_before = {node.name: cpu_seconds(node) for node in cluster.nodes}
        sleep_until(t1)
        machine = meter.stop()
        cpu_used = {}
        for node in cluster.nodes:
            own, plugins = cpu_seconds(node)
            cpu_used[node.name] = {
                "node_s": own - cpu_before[node.name][0],
                "plugins_s": plugins - cpu_before[node.name][1],
            }
        rss = {node.name: rss_mb(node.pid) if node.pid else math.nan for node in cluster.nodes}
        # Launches of the window's last seconds finish a little later; then read them back.
        sleep_until(t1 + args.drain)
        leader = cluster.leader()
        executions = [e for name in names for e in cluster.executions(name, via=leader)]
        nodes = [node.name for node in cluster.nodes]
        roles = {node.name: _role(node, leader) for node in cluster.nodes}

    runs = [
        (epoch(e.get("scheduled_at")), epoch(e["started_at"]), epoch(e["finished_at"]))
        for e in executions
        if e["finished_at"] != ZERO_TIME
    ]
    stamped = [(s, b, f) for s, b, f in runs if s is not None and b is not None and f is not None]
    # The job's own clock: the start time `date` printed, in place of the stamp.
    complete = []
    unclocked = 0
    for e in executions:
        scheduled, finished = epoch(e.get("scheduled_at")), epoch(e["finished_at"])
        if e["finished_at"] == ZERO_TIME or scheduled is None or finished is None:
            continue
        started = own_start(e.get("output") or "")
        if started is None:
            unclocked += 1
        else:
            complete.append((scheduled, started, finished))
    per_launch = 1 if args.spread == "one" else len(nodes)
    expected = args.jobs * args.window * per_launch
    result = window_stats(complete, t0, t1, expected)
    result["stamped_lag_ms"] = window_stats(stamped, t0, t1, expected)["lag_ms"]
    result["runs_without_own_clock"] = unclocked
    per_second = [
        sum(1 for _, _, finished in complete if second <= finished < second + 1)
        for second in range(t0, t1)
    ]
    in_window = [e for e in executions if t0 <= (epoch(e.get("scheduled_at")) or 0.0) < t1]
    result.update(
        machine,
        formed_s=formed_s,
        create_s=create_s,
        create_per_s=args.jobs / create_s if create_s else math.nan,
        per_second={
            "min": min(per_second, default=0),
            "p50": percentile([float(n) for n in per_second], 50),
            "max": max(per_second, default=0),
        },
        failed=sum(1 for e in in_window if e["finished_at"] != ZERO_TIME and not e["success"]),
        unfinished_at_read=sum(1 for e in in_window if e["finished_at"] == ZERO_TIME),
        executions_per_node={n: sum(1 for e in in_window if e["node_name"] == n) for n in nodes},
        node_cpu_s=cpu_used,
        node_rss_mb=rss,
        roles=roles,
    )
    return result


def _role(node: Node, leader: Node) -> str:
    if not node.server:
        return "agent"
    return "leader" if node is leader else "follower"


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def build_rows(ours: dict[str, Any], bare: dict[str, Any] | None) -> list[tuple[str, ...]]:
    def get(run: dict[str, Any] | None, *path: str) -> Any:
        value: Any = run
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    goal, higher = TARGETS["throughput_per_s"]
    throughput = get(ours, "throughput_per_s")
    rows: list[tuple[str, ...]] = [
        (
            f"executions/s sustained (offered {ours['expected'] // max(1, ours['window_s'])}/s)",
            fmt(throughput),
            fmt(get(bare, "throughput_per_s")),
            f"≥{goal:g}: {check_target(throughput, goal, higher)}",
        ),
        (
            "  slowest second / median second",
            f"{fmt(get(ours, 'per_second', 'min'))} / {fmt(get(ours, 'per_second', 'p50'))}",
            "-",
            "-",
        ),
        (
            "start lag, job's own clock, p50 / p99 (ms)",
            f"{fmt(get(ours, 'lag_ms', 'p50'))} / {fmt(get(ours, 'lag_ms', 'p99'))}",
            f"{fmt(get(bare, 'lag_ms', 'p50'))} / {fmt(get(bare, 'lag_ms', 'p99'))}",
            "-",
        ),
        (
            "  stamped by the dispatcher, p50 / p99 (ms)",
            f"{fmt(get(ours, 'stamped_lag_ms', 'p50'))} / "
            f"{fmt(get(ours, 'stamped_lag_ms', 'p99'))}",
            "-",
            "-",
        ),
        (
            "completion lag p50 / p99 (ms)",
            f"{fmt(get(ours, 'completion_lag_ms', 'p50'))} / "
            f"{fmt(get(ours, 'completion_lag_ms', 'p99'))}",
            f"{fmt(get(bare, 'completion_lag_ms', 'p50'))} / "
            f"{fmt(get(bare, 'completion_lag_ms', 'p99'))}",
            "-",
        ),
        (
            "launches of the window not started",
            fmt(get(ours, "not_started")),
            fmt(get(bare, "not_started")),
            "-",
        ),
        ("failed executions", fmt(get(ours, "failed")), "-", "-"),
        ("running when read back", fmt(get(ours, "unfinished_at_read")), "-", "-"),
        (
            "machine CPU busy / stolen (%)",
            f"{fmt(get(ours, 'machine_busy_pct'), 0)} / {fmt(get(ours, 'steal_pct'), 0)}",
            f"{fmt(get(bare, 'machine_busy_pct'), 0)} / {fmt(get(bare, 'steal_pct'), 0)}",
            "-",
        ),
        ("create jobs/s (REST, via the leader)", fmt(get(ours, "create_per_s")), "-", "-"),
    ]
    window = max(1, ours.get("window_s", 1))
    for name, role in (ours.get("roles") or {}).items():
        rows.append(
            (
                f"{name} ({role}): CPU % node+plugins / RSS MB / executions",
                f"{fmt(100 * ours['node_cpu_s'][name]['node_s'] / window, 0)}+"
                f"{fmt(100 * ours['node_cpu_s'][name]['plugins_s'] / window, 0)} / "
                f"{fmt(ours['node_rss_mb'][name], 0)} / "
                f"{fmt(ours['executions_per_node'].get(name, 0))}",
                "-",
                "-",
            )
        )
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    headers = ("metric", "dkron-py cluster", "bare loop", "target")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(4)]
    for row in [headers, *rows]:
        print(
            "  ".join(
                cell.ljust(widths[i]) if i in (0, 3) else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--agents", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--window", type=int, default=20, help="measured seconds")
    parser.add_argument("--warmup", type=int, default=5, help="seconds before the window")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds after the window")
    parser.add_argument("--spread", choices=("one", "all"), default="one")
    parser.add_argument("--pool", type=int, default=DEFAULT_POOL, help="baseline threads")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "cluster.json"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep node data and logs here (default: a temp dir)"
    )
    args = parser.parse_args()
    # SIGTERM (e.g. `timeout`) unwinds through the finally blocks, which reap every node.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machine = machine_info()
    print(machine_line(machine))
    print(
        f"{args.servers} servers + {args.agents} agents, {args.jobs} jobs @every 1s "
        f"(spread {args.spread}), window {args.window}s after {args.warmup}s warm-up"
    )
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=False)
        ours = run_cluster(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
            ours = run_cluster(args, Path(tmp))
    ours["window_s"] = args.window
    ours["loadavg_after"] = loadavg()
    bare = None
    if not args.skip_baseline:
        rate = ours["expected"] // args.window
        print(f"  bare fork-exec loop of `{' '.join(COMMAND)}` at {rate}/s (load {loadavg()[0]})")
        bare = phase_bare(rate, args.window, args.warmup, args.pool)
        bare["loadavg_after"] = loadavg()
    machine["loadavg_at_end"] = loadavg()
    print()
    print_table(build_rows(ours, bare))
    write_report(args.out, machine, args, TARGETS, {"cluster": ours, "bare": bare})


if __name__ == "__main__":
    main()
