"""Leader kills under load: are scheduled launches run exactly once, and how fast is failover?

    python bench/chaos.py [--servers 3] [--agents 2] [--jobs 20] [--period 1s] [--kills 10]
                          [--misfire skip|run_once] [--steady 3] [--json PATH]

Starts a real loopback cluster (one ``dkronctl agent`` process per node, through
tests/cluster/cluster_harness.py), creates ``--jobs`` jobs ``@every PERIOD`` that each run
on one node (an agent when there are agents), then ``--kills`` times: SIGKILL the leader,
wait for a new one, restart the killed server on its ports and data, wait until the
cluster is whole again and ``--steady`` seconds more. At the end every job is disabled and
its executions are read back.

Counted per (job, scheduled time) over the run:
- expected: ticks of every job from its first launch to the end of the run;
- run: ticks with at least one execution; duplicated: extra executions of a tick;
- missed: ticks with none, split into those inside a failover window (between a kill and
  one period after the new leader was seen, which the ``skip`` policy allows) and the rest;
- stuck: executions still running 30 s after the jobs were disabled;
- unrecorded: launches the command saw (a line appended to a per-job file) beyond the
  executions the store recorded: a double launch the store never heard of.
Failover time of one kill = kill -> first start of an execution scheduled after the kill
(only the new leader can launch those); election time = kill -> every surviving server
names the same new leader. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))
from _common import check_target, loadavg, machine_info, machine_line, percentile, write_report
from cluster_harness import ZERO_TIME, Cluster, NodeError, epoch, poll

TARGETS: dict[str, tuple[float, bool]] = {
    # name: (goal, higher is better)
    "duplicated": (0.0, False),
    "off_schedule": (0.0, False),
    "stuck": (0.0, False),
    "missed_outside_failover": (0.0, False),
    "unrecorded": (0.0, False),
    "failover_p99_s": (2.0, False),
}
QUIET_DEADLINE = 30.0


@dataclass
class Kill:
    killed: str
    killed_at: float
    new_leader: str
    leader_seen_at: float
    rejoined_at: float


def parse_period(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for unit in ("ms", "s", "m"):
        if text.endswith(unit):
            try:
                value = float(text[: -len(unit)]) * units[unit]
            except ValueError:
                break
            if value >= 1.0 and value == int(value):
                return value
            raise SystemExit(f"--period {text}: @every needs whole seconds (at least 1s)")
    raise SystemExit(f"--period {text!r}: expected a duration such as 1s, 5s or 1m")


def job_spec(name: str, period: float, runs: Path, agents: int, misfire: str) -> dict[str, Any]:
    return {
        "name": name,
        "schedule": f"@every {int(period)}s",
        "executor": "shell",
        "executor_config": {"command": f"echo run >> {shlex.quote(str(runs))}", "shell": "true"},
        # One node per launch, so each tick should produce exactly one execution.
        "tags": {"pool": "chaos:1"} if agents else {"server": "true:1"},
        "misfire_policy": misfire,
        "misfire_grace": "1h",
    }


def wait_first_launches(cluster: Cluster, names: list[str], timeout: float) -> None:
    pending = set(names)

    def all_launched() -> bool:
        for name in list(pending):
            if cluster.executions(name):
                pending.discard(name)
        return not pending

    poll(all_launched, timeout, "a first launch of every job", interval=0.2)


def run_chaos(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    period = parse_period(args.period)
    tags = {f"a{i}": {"pool": "chaos"} for i in range(1, args.agents + 1)}
    cluster = Cluster(
        workdir,
        servers=args.servers,
        agents=args.agents,
        tags=tags,
        server_args=["--max-history", "100000", "--log-level", "warn"],
        agent_args=["--log-level", "warn"],
    )
    with cluster:
        began = time.time()
        cluster.start()
        cluster.wait_formed()
        formed_s = time.time() - began
        print(
            f"  cluster of {args.servers} servers + {args.agents} agents formed in {formed_s:.1f}s"
        )
        runs_dir = workdir / "runs"
        runs_dir.mkdir()
        names = [f"chaos-{i:03d}" for i in range(args.jobs)]
        leader = cluster.leader()
        for name in names:
            spec = job_spec(name, period, runs_dir / f"{name}.runs", args.agents, args.misfire)
            cluster.create_job(spec, via=leader)
        wait_first_launches(cluster, names, timeout=30 + 2 * period)
        time.sleep(args.steady)  # the workload runs undisturbed for a while first

        kills: list[Kill] = []
        errors: list[str] = []
        for number in range(1, args.kills + 1):
            try:
                old, killed_at = cluster.kill_leader()
                new = cluster.wait_new_leader(exclude=[old], timeout=30)
                seen = time.time()
                old.start()
                cluster.wait_formed()
                rejoined = time.time()
            except NodeError as error:
                errors.append(f"kill {number}: {error}")
                print(f"  kill {number}: FAILED: {str(error).splitlines()[0]}")
                cluster.heal()
                continue
            kills.append(Kill(old.name, killed_at, new.name, seen, rejoined))
            print(
                f"  kill {number}/{args.kills}: {old.name} -> {new.name} "
                f"seen after {seen - killed_at:.2f}s, rejoined after {rejoined - killed_at:.1f}s"
            )
            time.sleep(args.steady)

        ended_at = time.time()
        leader = cluster.leader()
        for name in names:
            cluster.toggle_job(name, via=leader)
        quiet_deadline = time.time() + QUIET_DEADLINE
        executions: dict[str, list[dict[str, Any]]] = {}
        while True:
            executions = {name: cluster.executions(name, via=leader) for name in names}
            running = sum(
                1 for runs in executions.values() for e in runs if e["finished_at"] == ZERO_TIME
            )
            if not running or time.time() > quiet_deadline:
                break
            time.sleep(0.2)
        written = {name: _lines(runs_dir / f"{name}.runs") for name in names}
        failed = any(not node.running for node in cluster.nodes)
        if failed:
            errors.append(f"nodes not running at the end: {[n.name for n in cluster.nodes]}")
    return analyse(args, period, kills, executions, written, ended_at, errors)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def analyse(
    args: argparse.Namespace,
    period: float,
    kills: list[Kill],
    executions: dict[str, list[dict[str, Any]]],
    written: dict[str, int],
    ended_at: float,
    errors: list[str],
) -> dict[str, Any]:
    windows = [(k.killed_at, k.leader_seen_at + period) for k in kills]

    def in_failover(moment: float) -> bool:
        return any(start <= moment <= end for start, end in windows)

    expected = ran = duplicated = off_schedule = stuck = unrecorded = 0
    missed_in: list[str] = []
    missed_out: list[str] = []
    failed_runs = 0
    for name, runs in executions.items():
        # Scheduled times in whole milliseconds, so ticks compare exactly.
        ticks = Counter(round((epoch(e.get("scheduled_at")) or 0.0) * 1000) for e in runs)
        stuck += sum(1 for e in runs if e["finished_at"] == ZERO_TIME)
        failed_runs += sum(1 for e in runs if e["finished_at"] != ZERO_TIME and not e["success"])
        unrecorded += max(0, written[name] - len(runs))
        if not ticks:
            continue
        first = min(ticks)
        step = round(period * 1000)
        # Ticks up to one period before the end: the last one may have been cut by the stop.
        last = round((ended_at - period) * 1000)
        want = set(range(first, last + 1, step))
        expected += len(want)
        for tick in sorted(want):
            launches = ticks.get(tick, 0)
            if launches:
                ran += 1
                duplicated += launches - 1
            elif in_failover(tick / 1000):
                missed_in.append(f"{name}@{tick / 1000:.3f}")
            else:
                missed_out.append(f"{name}@{tick / 1000:.3f}")
        # Launches for times no tick was due (a stale leader firing on an old phase).
        off_schedule += sum(n for tick, n in ticks.items() if tick not in want and tick <= last)

    failover: list[float] = []
    election: list[float] = []
    starts = sorted(
        (epoch(e.get("scheduled_at")) or 0.0, epoch(e["started_at"]) or math.inf)
        for runs in executions.values()
        for e in runs
    )
    for index, kill in enumerate(kills):
        until = kills[index + 1].killed_at if index + 1 < len(kills) else ended_at
        after = [start for scheduled, start in starts if kill.killed_at < scheduled < until]
        failover.append(min(after) - kill.killed_at if after else math.nan)
        election.append(kill.leader_seen_at - kill.killed_at)

    def spread(values: list[float]) -> dict[str, float]:
        clean = [v for v in values if not math.isnan(v)]
        return {
            "p50": percentile(clean, 50),
            "p99": percentile(clean, 99),
            "max": max(clean) if clean else math.nan,
        }

    return {
        "kills_done": len(kills),
        "expected": expected,
        "run": ran,
        "duplicated": duplicated,
        "off_schedule": off_schedule,
        "missed": len(missed_in) + len(missed_out),
        "missed_in_failover": len(missed_in),
        "missed_outside_failover": len(missed_out),
        "missed_outside_failover_sample": missed_out[:20],
        "stuck": stuck,
        "unrecorded": unrecorded,
        "failed_executions": failed_runs,
        "failover_s": spread(failover),
        "failover_p99_s": spread(failover)["p99"],
        "election_s": spread(election),
        "failover_per_kill_s": failover,
        "kills": [vars(k) for k in kills],
        "errors": errors,
    }


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def target_cell(name: str, value: float) -> str:
    goal, higher = TARGETS[name]
    if goal == 0.0 and not higher:
        return "=0: ok" if value == 0 else f"=0: MISSED ({fmt(value)})"
    return f"{'≥' if higher else '≤'}{goal:g}: {check_target(value, goal, higher)}"


def print_table(result: dict[str, Any], misfire: str) -> None:
    rows = [
        ("leader kills done", fmt(result["kills_done"]), "-"),
        ("launches expected", fmt(result["expected"]), "-"),
        ("launches run", fmt(result["run"]), "-"),
        ("duplicated", fmt(result["duplicated"]), target_cell("duplicated", result["duplicated"])),
        (
            "launches at no due time",
            fmt(result["off_schedule"]),
            target_cell("off_schedule", result["off_schedule"]),
        ),
        ("missed (total)", fmt(result["missed"]), "-"),
        (
            f"  inside failover windows ({misfire} allows)",
            fmt(result["missed_in_failover"]),
            "-",
        ),
        (
            "  outside failover windows",
            fmt(result["missed_outside_failover"]),
            target_cell("missed_outside_failover", result["missed_outside_failover"]),
        ),
        ("stuck running", fmt(result["stuck"]), target_cell("stuck", result["stuck"])),
        (
            "unrecorded launches",
            fmt(result["unrecorded"]),
            target_cell("unrecorded", result["unrecorded"]),
        ),
        ("failed executions", fmt(result["failed_executions"]), "-"),
    ]
    for key, label in (("failover_s", "failover kill->first launch"), ("election_s", "election")):
        for q in ("p50", "p99", "max"):
            cell = (
                target_cell("failover_p99_s", result[key][q])
                if (key, q)
                == (
                    "failover_s",
                    "p99",
                )
                else "-"
            )
            rows.append((f"{label} {q} (s)", fmt(result[key][q]), cell))
    headers = ("metric", "value", "target")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(3)]
    for row in [headers, *rows]:
        print(
            "  ".join(
                cell.rjust(widths[i]) if i == 1 else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--period", default="1s", help="@every period (whole seconds)")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--misfire", choices=("skip", "run_once"), default="skip")
    parser.add_argument("--steady", type=float, default=3.0, help="seconds between kills")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "chaos.json"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep node data and logs here (default: a temp dir)"
    )
    args = parser.parse_args()
    if args.servers < 3:
        parser.error("--servers must be at least 3: a leader kill needs a quorum to survive")
    # SIGTERM (e.g. `timeout`) unwinds through the finally blocks, which reap every node.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machine = machine_info()
    print(machine_line(machine))
    print(
        f"{args.servers} servers, {args.agents} agents, {args.jobs} jobs @every {args.period} "
        f"(misfire {args.misfire}), {args.kills} leader kills, {args.steady:g}s between"
    )
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=False)
        result = run_chaos(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
            result = run_chaos(args, Path(tmp))
    machine["loadavg_at_end"] = loadavg()
    print()
    print_table(result, args.misfire)
    for error in result["errors"]:
        print(f"error: {error}")
    write_report(args.json, machine, args, TARGETS, result)


if __name__ == "__main__":
    main()
