"""Leader kills (and, with --faults, more) under load: are scheduled launches run exactly once,
and how fast is failover?

    python bench/chaos.py [--servers 3] [--agents 2] [--jobs 20] [--period 1s] [--kills 10]
                          [--misfire skip|run_once] [--steady 3] [--json PATH]
                          [--faults [--seed 1] [--fault-hold 3] [--run-seconds 0.5]
                           [--disk-mib 128]] [--log-level warn] [--workdir DIR]

Starts a real loopback cluster (one ``dkronctl agent`` process per node, through
tests/cluster/cluster_harness.py), creates ``--jobs`` jobs ``@every PERIOD`` that each run
on one node (an agent when there are agents), then ``--kills`` times: SIGKILL the leader,
wait for a new one, restart the killed server on its ports and data, wait until the
cluster is whole again and ``--steady`` seconds more. At the end every job is disabled and
its executions are read back.

With ``--faults``, each leader kill is followed by one more fault, the kinds in an order
drawn from ``--seed`` (every kind once per round of three), each held ``--fault-hold``
seconds and then healed (cluster whole again, ``--steady`` seconds more):
- agent_kill: SIGKILL an agent while it runs a job (its commands sleep ``--run-seconds``
  after their line, so there is one to catch), restart it on its ports and data dir;
- follower_pause: SIGSTOP a follower server (and its session), then SIGCONT;
- disk_full: every server's data dir is on its own ``--disk-mib`` tmpfs, mounted before
  the servers start; a follower's is filled with a file, then writes with a large ballast
  job are sent through that follower until it answers 507 (the journal has preallocated
  room that a full filesystem alone does not take away); the file is deleted to heal and
  the follower must take writes again by itself. Where tmpfs cannot be mounted this
  fault is skipped, saying so. Every tmpfs is unmounted at the end, errors or not.

Counted per (job, scheduled time) over the run:
- expected: ticks of every job from its first launch to the end of the run;
- run: ticks with at least one launch; duplicated: extra launches of a tick (first
  attempts: a retry, attempt > 1, is not a duplicate). An execution killed with its agent
  is a failed launch of its tick;
- missed: ticks with none, split into those inside a failover window (between a kill and
  one period after the new leader was seen, which the ``skip`` policy allows), inside a
  fault window (injection to one period after the cluster was whole again, per kind) and
  the rest (target 0);
- stuck: executions still running 30 s after the jobs were disabled;
- lost records: unrecorded launches (a line appended to a per-job file by the command
  beyond the executions the store recorded: a launch the store never heard of), plus
  executions read back during the run (after every kill and fault) that are gone at the
  end, plus runs seen in flight on a killed agent with no execution covering them;
- records missing on a follower: finished executions the leader has that a follower
  still lacks 30 s after the end (a follower whose disk was full must catch up).
Failover time of one kill = kill -> first start of an execution scheduled after the kill
(only the new leader can launch those); election time = kill -> every surviving server
names the same new leader. Prints a table and writes JSON.

For telling causes apart afterwards (not targets): failed executions by cause (killed with
their agent, sent to a killed agent while down or soon after it was back, in a failover
or fault window, other); a watcher samples every 0.5 s which server leads, whether its
scheduler runs and every server's Raft term, so a stretch with no launch outside the
failover windows, a leader change no kill explains and a leader that kept its place at a
new term are printed with what the bench did just before; CRITICAL lines and tracebacks
in the nodes' logs are printed. With ``--workdir`` everything is kept there: node logs,
``executions.json`` (the final read-back) and each tmpfs data dir (``data-at-end``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import json
import math
import os
import pickle
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))
sys.path.insert(2, str(Path(__file__).resolve().parent.parent / "tests"))  # agent_process
from _common import check_target, loadavg, machine_info, machine_line, percentile, write_report
from cluster_harness import (
    ZERO_TIME,
    Cluster,
    Node,
    NodeError,
    Response,
    _session_members,
    epoch,
    poll,
)

TARGETS: dict[str, tuple[float, bool]] = {
    # name: (goal, higher is better)
    "duplicated": (0.0, False),
    "off_schedule": (0.0, False),
    "stuck": (0.0, False),
    "missed_outside_failover": (0.0, False),
    "unrecorded": (0.0, False),
    "lost": (0.0, False),
    "follower_missing": (0.0, False),
    "failover_p99_s": (2.0, False),
}
QUIET_DEADLINE = 30.0
CONVERGE_DEADLINE = 30.0
FAULT_KINDS = ("agent_kill", "follower_pause", "disk_full")
FAULT_LABELS = {
    "agent_kill": "agent SIGKILLed mid-run",
    "follower_pause": "follower SIGSTOPped",
    "disk_full": "follower disk full",
}
BALLAST_JOB = "chaos-ballast"
# Ballast sizes, largest first: each is sent until the follower refuses it, so its journal
# is left with less room than the smallest (below the 64 KiB its own disk probe wants).
BALLAST_SIZES = (128 << 10, 64 << 10, 32 << 10, 16 << 10)
BITE_DEADLINE = 60.0
RESUME_DEADLINE = 30.0
# A failed run on a restarted agent this soon after its start-up line is told apart.
BACK_WINDOW = 10.0
JOB_IN_COMMAND = re.compile(r"/(chaos-\d+)\.runs\b")


@dataclass
class Kill:
    killed: str
    killed_at: float
    new_leader: str
    leader_seen_at: float
    rejoined_at: float


@dataclass
class Fault:
    kind: str
    number: int
    pick: float  # drawn from --seed: which of the candidate nodes is hit
    target: str = ""
    injected_at: float = 0.0
    healed_at: float = 0.0
    settled_at: float = 0.0
    skipped: str = ""
    error: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return not self.skipped and self.injected_at > 0


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


def job_spec(
    name: str, period: float, runs: Path, agents: int, misfire: str, run_seconds: float
) -> dict[str, Any]:
    command = f"echo run >> {shlex.quote(str(runs))}"
    if run_seconds > 0:
        command += f"; sleep {run_seconds:g}"  # in flight long enough to be killed mid-run
    return {
        "name": name,
        "schedule": f"@every {int(period)}s",
        "executor": "shell",
        "executor_config": {"command": command, "shell": "true"},
        # One node per launch, so each tick should produce exactly one execution.
        "tags": {"pool": "chaos:1"} if agents else {"server": "true:1"},
        "misfire_policy": misfire,
        "misfire_grace": "1h",
    }


def wait_first_launches(cluster: Cluster, names: list[str], timeout: float) -> None:
    pending = set(names)

    def all_launched() -> bool:
        for name in list(pending):
            try:
                if cluster.executions(name, via=cluster.leader()):
                    pending.discard(name)
            except NodeError:  # not applied on that server yet (404)
                return False
        return not pending

    poll(all_launched, timeout, "a first launch of every job", interval=0.2)


# -- tmpfs data dirs ---------------------------------------------------------------------------


class Tmpfs:
    """A small tmpfs mounted by the bench under one server's directory, holding its data
    dir; ``fill`` takes every free block with one file, ``unfill`` deletes it."""

    def __init__(self, root: Path, mib: int) -> None:
        self.root = root
        self.mib = mib
        self.mounted = False
        self.filler = root / "filler"
        self.peak_used = 0

    def mount(self) -> str:
        """Empty once mounted, else why not."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={self.mib}m", "tmpfs", str(self.root)],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return str(error)
        if done.returncode != 0:
            return (done.stderr or done.stdout).strip() or f"mount exited {done.returncode}"
        self.mounted = True
        return ""

    def usage(self) -> tuple[int, int]:
        """(used, free) bytes."""
        stat = os.statvfs(self.root)
        used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
        self.peak_used = max(self.peak_used, used - self.filled_bytes())
        return used, stat.f_bavail * stat.f_frsize

    def filled_bytes(self) -> int:
        try:
            return self.filler.stat().st_blocks * 512
        except OSError:
            return 0

    def fill(self) -> int:
        """Allocate every free block to the filler file; returns the bytes it holds."""
        _, free = self.usage()
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        offset = 0
        step = max(free, 4096)
        try:
            while step >= 4096:
                try:
                    os.posix_fallocate(fd, offset, step)
                    offset += step
                except OSError as error:
                    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    step //= 2
        finally:
            os.close(fd)
        return offset

    def unfill(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def unmount(self) -> str:
        """Empty once unmounted (lazily if busy), else why not."""
        if not self.mounted:
            return ""
        self.unfill()
        for argv in (["umount", str(self.root)], ["umount", "-l", str(self.root)]):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                if subprocess.run(argv, capture_output=True, timeout=30).returncode == 0:
                    break
        if _is_mounted(self.root):
            return f"{self.root} is still mounted"
        self.mounted = False
        return ""


def _is_mounted(path: Path) -> bool:
    wanted = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == wanted for line in mounts if len(line.split()) > 1)


# -- faults ------------------------------------------------------------------------------------


def fault_plan(seed: int, count: int) -> list[Fault]:
    """``count`` faults, each kind once per round of three in a seeded order."""
    rng = random.Random(seed)
    kinds: list[str] = []
    while len(kinds) < count:
        round_ = list(FAULT_KINDS)
        rng.shuffle(round_)
        kinds += round_
    return [Fault(kind, n, rng.random()) for n, kind in enumerate(kinds[:count], 1)]


def _pick(candidates: list[Node], pick: float) -> Node:
    ordered = sorted(candidates, key=lambda node: node.name)
    return ordered[min(len(ordered) - 1, int(pick * len(ordered)))]


def running_jobs(node: Node) -> list[str]:
    """Jobs whose command runs in ``node``'s session now (read from /proc)."""
    found = set()
    for pid in node.session_pids():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        match = JOB_IN_COMMAND.search(command.decode(errors="replace"))
        if match:
            found.add(match.group(1))
    return sorted(found)


def inject_agent_kill(cluster: Cluster, fault: Fault, hold: float, catch_within: float) -> None:
    agent = _pick([a for a in cluster.agents if a.running], fault.pick)
    fault.target = agent.name
    deadline = time.monotonic() + catch_within
    running: list[str] = []
    while time.monotonic() < deadline:
        running = running_jobs(agent)
        if running:
            break
        time.sleep(0.01)
    fault.injected_at = time.time()
    agent.kill()  # SIGKILL its whole session (the job commands too), then reap
    fault.detail.update(mid_run=bool(running), running=running, killed_by=time.time())
    # While it is down: how the leader's member list shows it (transitions only).
    seen: list[tuple[float, Any]] = []
    until = time.monotonic() + hold
    while time.monotonic() < until:
        status = member_status(cluster, agent.name)
        if not seen or seen[-1][1] != status:
            seen.append((round(time.time() - fault.injected_at, 2), status))
        time.sleep(0.2)
    fault.detail["leader_view_while_down"] = seen
    agent.start()
    fault.healed_at = time.time()
    cluster.wait_formed()
    fault.settled_at = time.time()
    view = ", ".join(f"{at:+.1f}s {'alive' if st == 1 else st}" for at, st in seen)
    print(
        f"  fault {fault.number}: SIGKILL {agent.name} "
        f"{'running ' + ', '.join(running) if running else '(caught no run in flight)'}; "
        f"the leader listed it: {view or '?'}; "
        f"back after {fault.healed_at - fault.injected_at:.1f}s, "
        f"whole after {fault.settled_at - fault.injected_at:.1f}s"
    )


def member_status(cluster: Cluster, name: str) -> Any:
    """``name``'s Status in the leader's GET /v1/members (1 alive), None if absent."""
    try:
        leader = cluster.leader(timeout=2.0)
        for member in leader.get_json("/v1/members"):
            if member.get("Name") == name:
                return member.get("Status")
    except (OSError, NodeError, ValueError):
        return "no answer"
    return None


def inject_follower_pause(cluster: Cluster, fault: Fault, hold: float) -> None:
    leader = cluster.leader()
    follower = _pick([s for s in cluster.servers if s is not leader and s.running], fault.pick)
    fault.target = follower.name
    fault.injected_at = time.time()
    follower.pause()
    probe_from = time.monotonic()
    try:
        answered = follower.api("GET", "/v1/leader", timeout=min(1.0, hold)).status
    except OSError:
        answered = None  # frozen: no answer
    time.sleep(max(0.0, hold - (time.monotonic() - probe_from)))
    follower.resume()
    fault.healed_at = time.time()
    after = cluster.wait_formed()
    fault.settled_at = time.time()
    fault.detail.update(
        leader_before=leader.name,
        leader_after=after.name,
        leader_changed=after.name != leader.name,
        answered_while_stopped=answered,
    )
    print(
        f"  fault {fault.number}: SIGSTOP {follower.name} for {hold:g}s "
        f"(answered while stopped: {answered}); whole after "
        f"{fault.settled_at - fault.injected_at:.1f}s, leader {leader.name} -> {after.name}"
    )


def ballast_write(
    node: Node, size: int, marker: str = "", timeout: float = 10.0
) -> Response | None:
    job = {
        "name": BALLAST_JOB,
        "schedule": "@manually",
        "disabled": True,
        "executor": "shell",
        "executor_config": {"command": "true"},
        "metadata": {"ballast": "x" * size, "probe": marker},
    }
    try:
        return node.api("POST", "/v1/jobs", job, timeout=timeout)
    except OSError:
        return None


def ballast_marker(cluster: Cluster) -> str | None:
    """The ``probe`` metadata of the ballast job as the leader has it."""
    try:
        job = cluster.leader(timeout=5.0).get_json(f"/v1/jobs/{BALLAST_JOB}")
    except (OSError, NodeError, ValueError):
        return None
    return str((job.get("metadata") or {}).get("probe", ""))


def inject_disk_full(cluster: Cluster, fault: Fault, disks: dict[str, Tmpfs], hold: float) -> None:
    leader = cluster.leader()
    candidates = [s for s in cluster.servers if s is not leader and s.running and s.name in disks]
    victim = _pick(candidates, fault.pick)
    disk = disks[victim.name]
    fault.target = victim.name
    log_before = victim.log()
    fault.injected_at = time.time()
    refused: Response | None = None
    ballast = 0
    statuses: Counter[int] = Counter()
    try:
        used, _ = disk.usage()
        filled = disk.fill()
        fault.detail.update(used_before=used, filler_bytes=filled)
        # The journal may hold preallocated room: eat it with ballast through the victim
        # until it refuses (every refusal is a 507 with nothing written).
        deadline = time.monotonic() + BITE_DEADLINE
        for size in BALLAST_SIZES:
            while time.monotonic() < deadline:
                answer = ballast_write(victim, size)
                status = answer.status if answer else 0
                statuses[status] += 1
                if answer is not None and answer.status == 507:
                    refused = refused or answer
                    break
                if answer is not None and answer.status < 300:
                    ballast += size
                else:
                    time.sleep(0.1)
        bit_at = time.time()
        fault.detail.update(
            bit=refused is not None,
            bite_s=round(bit_at - fault.injected_at, 2),
            ballast_bytes=ballast,
            ballast_statuses=dict(statuses),
            refusal=refused.text.strip()[:300] if refused else "",
        )
        # A small write through the full follower, while the hold lasts: a 507 is the
        # answer wanted (it may still fit this one write's own room check, though).
        marker = f"fault-{fault.number}-{time.time():.3f}"
        began = time.monotonic()
        small = ballast_write(victim, 1024, marker=marker, timeout=hold)
        took = time.monotonic() - began
        time.sleep(max(0.0, hold - took))
        fault.detail["small_write"] = {
            "status": small.status if small else None,
            "answer_s": round(took, 2),
            "text": small.text.strip()[:200] if small else f"no answer within {hold:g}s",
            # Committed by the leader anyway?
            "on_leader": ballast_marker(cluster) == marker,
        }
    finally:
        disk.unfill()
    fault.healed_at = time.time()

    def writes_again() -> bool:
        answer = ballast_write(victim, 1024)
        return answer is not None and answer.status < 300

    resumed: float | None = None
    try:
        poll(writes_again, RESUME_DEADLINE, f"{victim.name} taking writes again", interval=0.2)
        resumed = time.time() - fault.healed_at
    except NodeError as error:
        fault.error = str(error).splitlines()[0]
    after = cluster.wait_formed()
    fault.settled_at = time.time()
    log_new = victim.log()[len(log_before) :] if victim.log().startswith(log_before) else ""
    fault.detail.update(
        resumed_after_s=None if resumed is None else round(resumed, 2),
        logged_disk_full=log_new.count("disk full:"),
        logged_space_back=log_new.count("disk space is back"),
        leader_before=leader.name,
        leader_after=after.name,
    )
    bite = (
        f"507 after {fault.detail['bite_s']:.1f}s and {ballast >> 10} KiB of ballast"
        if refused
        else f"NO 507 within {BITE_DEADLINE:g}s ({dict(statuses)})"
    )
    small = fault.detail["small_write"]
    small_text = (
        f"a 1 KiB write then got {small['status']} in {small['answer_s']:.1f}s"
        if small["status"] is not None
        else f"a 1 KiB write then got NO answer within {hold:g}s"
        + (" (committed by the leader)" if small["on_leader"] else "")
    )
    print(
        f"  fault {fault.number}: disk of {victim.name} full ({filled >> 20} MiB filler): "
        f"{bite}; {small_text}; writes back "
        f"{'after ' + format(resumed, '.1f') + 's' if resumed is not None else 'NOT'} "
        f"once freed; whole after {fault.settled_at - fault.injected_at:.1f}s"
    )


def inject(
    cluster: Cluster,
    fault: Fault,
    args: argparse.Namespace,
    period: float,
    disks: dict[str, Tmpfs],
    no_disk: str,
) -> None:
    if fault.kind == "agent_kill":
        if not cluster.agents:
            fault.skipped = "no agents (--agents 0)"
        else:
            inject_agent_kill(cluster, fault, args.fault_hold, catch_within=3 * period + 5)
    elif fault.kind == "follower_pause":
        inject_follower_pause(cluster, fault, args.fault_hold)
    elif fault.kind == "disk_full":
        leader = cluster.leader()
        if not any(s.name in disks for s in cluster.servers if s is not leader):
            fault.skipped = no_disk or "no follower has a tmpfs data dir"
        else:
            inject_disk_full(cluster, fault, disks, args.fault_hold)
    if fault.skipped:
        print(f"  fault {fault.number}: {fault.kind} SKIPPED: {fault.skipped}")


# -- the run -----------------------------------------------------------------------------------


class Watch(threading.Thread):
    """Every half second: which reachable servers say they lead (GET /v1/isleader), whether
    their scheduler runs (``scheduler_started`` in GET /debug/vars), and every server's Raft
    term (pysyncobj stores it in ``raft/journal.bin.meta`` before it acts on it), to tell a
    launch gap's cause afterwards."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(name="chaos-watch", daemon=True)
        self.cluster = cluster
        # (time, {leader: scheduler_started}, {server: term})
        self.samples: list[tuple[float, dict[str, Any], dict[str, int]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            now = time.time()
            leaders: dict[str, Any] = {}
            terms: dict[str, int] = {}
            for server in list(self.cluster.servers):
                term = raft_term(server)
                if term is not None:
                    terms[server.name] = term
                if server.paused or not server.running:
                    continue
                try:
                    if server.api("GET", "/v1/isleader", timeout=1.0).status != 200:
                        continue
                    answer = server.api("GET", "/debug/vars", timeout=1.0)
                    leaders[server.name] = (
                        answer.json().get("scheduler_started") if answer.status == 200 else None
                    )
                except (OSError, ValueError):
                    continue
            self.samples.append((now, leaders, terms))

    def leader_changes(
        self, kills: list[Kill], faults: list[Fault]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[float, str]]]:
        """Moments the leading server changed (or none led) that no leader kill explains;
        moments one server led in two samples in a row with a higher term in the second
        (it lost and won the leadership in between); and the condensed timeline."""
        timeline: list[tuple[float, str]] = []
        for moment, leaders, terms in self.samples:
            text = ",".join(f"{n}@{terms.get(n, '?')}" for n in sorted(leaders)) or "-"
            if not timeline or timeline[-1][1] != text:
                timeline.append((round(moment, 2), text))
        events = [(k.killed_at, f"leader {k.killed} killed") for k in kills]
        events += [(k.rejoined_at, f"{k.killed} rejoined") for k in kills]
        events += [(f.injected_at, f"{f.kind} on {f.target}") for f in faults if f.done]
        events += [(f.healed_at, f"{f.kind} on {f.target} healed") for f in faults if f.done]
        events.sort()

        def last_event(moment: float) -> str:
            last = [(t, what) for t, what in events if t <= moment]
            return f"{last[-1][1]} {moment - last[-1][0]:.1f}s before" if last else ""

        def explained(moment: float) -> bool:
            return any(k.killed_at - 0.6 <= moment <= k.leader_seen_at + 0.6 for k in kills)

        changed = []
        for (_, before), (moment, after) in itertools.pairwise(timeline):
            if before.split("@")[0] != after.split("@")[0] and not explained(moment):
                changed.append(
                    {"at": moment, "from": before, "to": after, "after": last_event(moment)}
                )
        reelected = []
        for (_, led, terms), (moment, leads, later) in itertools.pairwise(self.samples):
            for name in set(led) & set(leads):
                if later.get(name, 0) > terms.get(name, 0) > 0 and len(leads) == 1:
                    reelected.append(
                        {
                            "at": round(moment, 2),
                            "leader": name,
                            "terms": [terms[name], later[name]],
                            "after": last_event(moment),
                        }
                    )
        return changed, reelected, timeline

    def during(self, start: float, end: float) -> list[str]:
        """What the samples in [start, end] say, condensed to its changes."""
        out: list[str] = []
        last = None
        for moment, leaders, terms in self.samples:
            if start <= moment <= end:
                text = (
                    ", ".join(
                        f"{name} leads (term {terms.get(name, '?')}), scheduler "
                        f"{'on' if on else 'OFF' if on == 0 else on}"
                        for name, on in sorted(leaders.items())
                    )
                    or "no server says it leads"
                )
                if text != last:
                    out.append(f"{moment - start:+.1f}s {text}")
                    last = text
        return out


def raft_term(server: Node) -> int | None:
    """The current Raft term in the server's own journal metadata (our own data dir)."""
    try:
        meta = pickle.loads((server.data_dir / "raft" / "journal.bin.meta").read_bytes())
        return int(meta["currentTerm"])
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError):
        return None


def launch_gaps(
    executions: dict[str, list[dict[str, Any]]],
    period: float,
    windows: list[tuple[float, float]],
    began: float,
    ended_at: float,
) -> list[tuple[float, float]]:
    """Stretches with no launch started that last more than two periods outside every
    window (a gap that holds a failover is a stall only for its time outside it)."""
    starts = sorted(
        moment
        for runs in executions.values()
        for e in runs
        if (moment := epoch(e["started_at"])) is not None and began <= moment <= ended_at
    )
    gaps = []
    for before, after in itertools.pairwise(starts):
        covered = sum(max(0.0, min(after, end) - max(before, start)) for start, end in windows)
        if after - before - covered > 2 * period:
            gaps.append((before, after))
    return gaps


def read_executions(
    cluster: Cluster, names: list[str], via: Node
) -> dict[str, list[dict[str, Any]]]:
    return {name: cluster.executions(name, via=via) for name in names}


def remember(
    seen: dict[tuple[str, str], float], executions: dict[str, list[dict[str, Any]]]
) -> None:
    """Finished executions read back now: each must still be there at the end."""
    now = time.time()
    for name, runs in executions.items():
        for e in runs:
            if e["finished_at"] != ZERO_TIME and e.get("id"):
                seen.setdefault((name, e["id"]), now)


def follower_gaps(
    cluster: Cluster, names: list[str], leader: Node, final: dict[str, list[dict[str, Any]]]
) -> dict[str, int]:
    """Finished executions the leader has that each follower still lacks after a while."""
    want = {
        name: {e["id"] for e in runs if e["finished_at"] != ZERO_TIME}
        for name, runs in final.items()
    }
    gaps: dict[str, int] = {}
    for server in cluster.reachable_servers(exclude=[leader]):

        def missing(server: Node = server) -> int:
            try:
                have = read_executions(cluster, names, server)
            except (OSError, NodeError, ValueError):
                return -1
            return sum(
                len(want[name] - {e["id"] for e in have[name] if e["finished_at"] != ZERO_TIME})
                for name in names
            )

        deadline = time.monotonic() + CONVERGE_DEADLINE
        left = missing()
        while left != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            left = missing()
        gaps[server.name] = left
    return gaps


def leftover_processes(cluster: Cluster, pids: set[int]) -> list[str]:
    """Processes of ours still alive: node processes not reaped, session members left."""
    left = []
    for node in cluster.nodes:
        if node.process is not None and node.process.returncode is None:
            left.append(f"{node.name} pid {node.process.pid} not reaped")
    for pid in sorted(pids):
        for member in _session_members(pid):
            left.append(f"pid {member} of session {pid}")
    return left


def run_chaos(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    period = parse_period(args.period)
    run_seconds = args.run_seconds
    if run_seconds is None:
        run_seconds = min(0.5, period / 2) if args.faults else 0.0
    tags = {f"a{i}": {"pool": "chaos"} for i in range(1, args.agents + 1)}
    cluster = Cluster(
        workdir,
        servers=args.servers,
        agents=args.agents,
        tags=tags,
        server_args=["--max-history", "100000", "--log-level", args.log_level],
        agent_args=["--log-level", args.log_level],
    )
    disks: dict[str, Tmpfs] = {}
    no_disk = ""
    pids: set[int] = set()
    extra: dict[str, Any] = {}
    errors: list[str] = []
    watch = Watch(cluster)
    try:
        if args.faults:
            for server in cluster.servers:
                disk = Tmpfs(server.dir / "disk", args.disk_mib)
                disks[server.name] = disk
                why = disk.mount()
                if why:
                    no_disk = f"cannot mount a tmpfs ({why})"
                    print(f"  {no_disk}: the disk_full fault is skipped")
                    break
                server.data_dir = disk.root / "data"  # read by Node.argv() at each start
            if no_disk:  # every server back on the ordinary disk
                for name, disk in list(disks.items()):
                    if not disk.unmount():
                        del disks[name]  # else left for the finally to report
                for server in cluster.servers:
                    server.data_dir = server.dir / "data"
            else:
                print(
                    f"  data dirs of {', '.join(sorted(disks))} on their own "
                    f"{args.disk_mib} MiB tmpfs"
                )
        with cluster:
            result = run_cluster(
                args, cluster, workdir, period, run_seconds, disks, no_disk, pids, errors, watch
            )
        left = leftover_processes(cluster, pids)
        extra["processes_started"] = sum(node.starts for node in cluster.nodes)
        extra["processes_left"] = left
        if left:
            errors.append(f"processes left after the end: {left}")
    finally:
        watch.done.set()  # before the nodes go (it is a daemon thread in any case)
        unmounted = []
        for name, disk in disks.items():
            with contextlib.suppress(OSError):
                disk.usage()
            if args.workdir:  # kept: keep the data too, for a later look
                with contextlib.suppress(OSError, shutil.Error):
                    disk.unfill()
                    shutil.copytree(disk.root / "data", disk.root.parent / "data-at-end")
            peak = disk.peak_used
            why = disk.unmount()
            if why:
                errors.append(f"tmpfs of {name}: {why}")
            else:
                unmounted.append(name)
            extra.setdefault("tmpfs_peak_used_mib", {})[name] = round(peak / (1 << 20), 1)
        extra["tmpfs_unmounted"] = unmounted
        extra["tmpfs_not_mounted"] = no_disk
    result.update(extra)
    result["errors"] = errors
    return result


def run_cluster(
    args: argparse.Namespace,
    cluster: Cluster,
    workdir: Path,
    period: float,
    run_seconds: float,
    disks: dict[str, Tmpfs],
    no_disk: str,
    pids: set[int],
    errors: list[str],
    watch: Watch,
) -> dict[str, Any]:
    def track() -> None:
        pids.update(node.pid for node in cluster.nodes if node.pid is not None)
        for disk in disks.values():
            with contextlib.suppress(OSError):
                disk.usage()

    began = time.time()
    cluster.start()
    track()
    cluster.wait_formed()
    formed_s = time.time() - began
    print(f"  cluster of {args.servers} servers + {args.agents} agents formed in {formed_s:.1f}s")
    runs_dir = workdir / "runs"
    runs_dir.mkdir()
    names = [f"chaos-{i:03d}" for i in range(args.jobs)]
    leader = cluster.leader()
    for name in names:
        spec = job_spec(
            name, period, runs_dir / f"{name}.runs", args.agents, args.misfire, run_seconds
        )
        cluster.create_job(spec, via=leader)
    wait_first_launches(cluster, names, timeout=30 + 2 * period)
    watched_from = time.time()
    watch.start()
    time.sleep(args.steady)  # the workload runs undisturbed for a while first

    kills: list[Kill] = []
    plan = fault_plan(args.seed, args.kills) if args.faults else []
    seen: dict[tuple[str, str], float] = {}

    def snapshot() -> None:
        try:
            remember(seen, read_executions(cluster, names, cluster.leader()))
        except (OSError, NodeError, ValueError) as error:
            errors.append(f"reading executions mid-run: {str(error).splitlines()[0]}")

    for number in range(1, args.kills + 1):
        try:
            old, killed_at = cluster.kill_leader()
            new = cluster.wait_new_leader(exclude=[old], timeout=30)
            seen_at = time.time()
            old.start()
            track()
            cluster.wait_formed()
            rejoined = time.time()
        except NodeError as error:
            errors.append(f"kill {number}: {error}")
            print(f"  kill {number}: FAILED: {str(error).splitlines()[0]}")
            cluster.heal()
            track()
        else:
            kills.append(Kill(old.name, killed_at, new.name, seen_at, rejoined))
            print(
                f"  kill {number}/{args.kills}: {old.name} -> {new.name} "
                f"seen after {seen_at - killed_at:.2f}s, rejoined after {rejoined - killed_at:.1f}s"
            )
        snapshot()
        time.sleep(args.steady)
        if not plan:
            continue
        fault = plan[number - 1]
        try:
            inject(cluster, fault, args, period, disks, no_disk)
        except (NodeError, OSError) as error:
            fault.error = str(error).splitlines()[0]
            errors.append(f"fault {number} ({fault.kind} {fault.target}): {error}")
            print(f"  fault {number}: {fault.kind} FAILED: {fault.error}")
            cluster.heal()
            fault.settled_at = fault.settled_at or time.time()
        track()
        if fault.done:
            snapshot()
            time.sleep(args.steady)

    ended_at = time.time()
    watch.done.set()
    watch.join(5.0)
    leader = cluster.leader()
    for name in names:
        cluster.toggle_job(name, via=leader)
    quiet_deadline = time.time() + QUIET_DEADLINE
    executions: dict[str, list[dict[str, Any]]] = {}
    while True:
        executions = read_executions(cluster, names, leader)
        running = sum(
            1 for runs in executions.values() for e in runs if e["finished_at"] == ZERO_TIME
        )
        if not running or time.time() > quiet_deadline:
            break
        time.sleep(0.2)
    written = {name: _lines(runs_dir / f"{name}.runs") for name in names}
    # Evidence for a later look (the data dirs may be on a tmpfs that is about to go).
    (workdir / "executions.json").write_text(json.dumps(executions, indent=1))
    gaps = follower_gaps(cluster, names, leader, executions)
    failed = [n.name for n in cluster.nodes if not n.running]
    if failed:
        errors.append(f"nodes not running at the end: {failed}")
    result = analyse(args, period, kills, plan, executions, written, ended_at, seen)
    result["follower_missing_by_server"] = gaps
    # Where nothing was launched for a while outside every window: what the leader said.
    windows = [(k.killed_at, k.leader_seen_at + period) for k in kills]
    stalls = []
    for before, after in launch_gaps(executions, period, windows, watched_from, ended_at):
        stalls.append(
            {
                "from": before,
                "to": after,
                "seconds": round(after - before, 2),
                "watch": watch.during(before - 1.0, after),
            }
        )
    result["launch_stalls"] = stalls
    result["leader_samples"] = len(watch.samples)
    unexplained, reelected, timeline = watch.leader_changes(kills, plan)
    result["leader_changes_without_kill"] = unexplained
    result["leader_reelected"] = reelected
    result["leader_timeline"] = timeline
    result["log_concerns"] = log_concerns(cluster)
    result["follower_missing"] = sum(max(0, n) for n in gaps.values())
    if any(n < 0 for n in gaps.values()):
        errors.append(f"a follower could not be read at the end: {gaps}")
    return result


CONCERNING = re.compile(r"\b(CRITICAL|Traceback)\b|diverged")


def log_concerns(cluster: Cluster) -> dict[str, list[str]]:
    """CRITICAL lines and tracebacks in every node's logs (every start), for evidence."""
    found: dict[str, list[str]] = {}
    for node in cluster.nodes:
        for number in range(1, node.starts + 1):
            path = node.dir / f"{node.name}-{number}.log"
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if CONCERNING.search(line):
                    found.setdefault(node.name, []).append(f"{path.name}: {line[:300]}")
    return found


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


# -- analysis ----------------------------------------------------------------------------------


def analyse(
    args: argparse.Namespace,
    period: float,
    kills: list[Kill],
    faults: list[Fault],
    executions: dict[str, list[dict[str, Any]]],
    written: dict[str, int],
    ended_at: float,
    seen: dict[tuple[str, str], float],
) -> dict[str, Any]:
    windows = [(k.killed_at, k.leader_seen_at + period) for k in kills]
    fault_windows = [
        (f.kind, f.injected_at, (f.settled_at or ended_at) + period) for f in faults if f.done
    ]

    def in_failover(moment: float) -> bool:
        return any(start <= moment <= end for start, end in windows)

    def fault_at(moment: float) -> str:
        for kind, start, end in fault_windows:
            if start <= moment <= end:
                return kind
        return ""

    expected = ran = duplicated = off_schedule = stuck = unrecorded = retries = 0
    missed_in: list[str] = []
    missed_fault: dict[str, list[str]] = {kind: [] for kind in FAULT_KINDS}
    missed_out: list[str] = []
    duplicated_sample: list[str] = []
    failed_runs = 0
    for name, runs in executions.items():
        # Launches: first attempts (a retry is attempt 2.. of the same launch), counted per
        # scheduled time in whole milliseconds, so ticks compare exactly.
        firsts = [e for e in runs if int(e.get("attempt") or 1) <= 1]
        retries += len(runs) - len(firsts)
        ticks = Counter(round((epoch(e.get("scheduled_at")) or 0.0) * 1000) for e in firsts)
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
            label = f"{name}@{tick / 1000:.3f}"
            if launches:
                ran += 1
                duplicated += launches - 1
                if launches > 1:
                    duplicated_sample.append(f"{label} x{launches}")
            elif in_failover(tick / 1000):
                missed_in.append(label)
            elif kind := fault_at(tick / 1000):
                missed_fault[kind].append(label)
            else:
                missed_out.append(label)
        # Launches for times no tick was due (a stale leader firing on an old phase).
        off_schedule += sum(n for tick, n in ticks.items() if tick not in want and tick <= last)

    # Records seen during the run and gone at the end.
    final_ids = {(name, e.get("id")) for name, runs in executions.items() for e in runs}
    vanished = sorted(f"{name}/{id_}" for name, id_ in seen if (name, id_) not in final_ids)

    # Runs in flight on a killed agent: each must be recorded, and as failed.
    killed_runs = killed_failed = killed_succeeded = killed_unrecorded = 0
    killed_sample: list[str] = []
    killed_ids: set[tuple[str, str]] = set()
    for fault in faults:
        if fault.kind != "agent_kill" or not fault.done:
            continue
        covering_ids: set[tuple[str, str]] = set()
        killed_by = float(fault.detail.get("killed_by", fault.injected_at))
        in_flight: set[str] = set()
        for name, runs in executions.items():
            for e in runs:
                started = epoch(e["started_at"]) or math.inf
                finished = epoch(e["finished_at"])
                if e.get("node_name") != fault.target or started > fault.injected_at:
                    continue
                if finished is not None and finished < fault.injected_at - 0.1:
                    continue
                in_flight.add(name)  # seen running on it up to the kill: it has a record
                if finished is not None and finished < fault.injected_at:
                    continue
                if finished is not None and e["success"] and finished <= killed_by:
                    continue  # it ended while the kill was under way, before it landed
                covering_ids.add((name, e.get("id")))
                killed_runs += 1
                if finished is not None and not e["success"]:
                    killed_failed += 1
                    if len(killed_sample) < 6:
                        output = (e.get("output") or "").strip().splitlines()
                        killed_sample.append(f"{name}: {output[-1] if output else ''}"[:160])
                elif finished is not None:
                    killed_succeeded += 1
        for name in fault.detail.get("running", []):
            if name not in in_flight:
                killed_unrecorded += 1
                fault.detail.setdefault("unrecorded_runs", []).append(name)
        killed_ids |= covering_ids

    # Why each failed execution failed, by when and where it started.
    failed_why: Counter[str] = Counter()
    failed_other: list[str] = []
    failed_after_back: list[str] = []
    for name, runs in executions.items():
        for e in runs:
            if e["finished_at"] == ZERO_TIME or e["success"]:
                continue
            started = epoch(e["started_at"]) or 0.0
            down = back = None
            for f in faults:
                if f.kind == "agent_kill" and f.done and e.get("node_name") == f.target:
                    if f.injected_at <= started < f.healed_at:
                        down = f
                    elif f.healed_at <= started <= f.healed_at + BACK_WINDOW:
                        back = f
            if (name, e.get("id")) in killed_ids:
                failed_why["killed with its agent"] += 1
            elif down:
                failed_why["sent to the killed agent while down"] += 1
            elif back:
                # The agent had printed its start-up line: worth a look.
                failed_why["sent to the killed agent after it was back"] += 1
                output = (e.get("output") or "").strip().splitlines()
                failed_after_back.append(
                    f"{name}/{e.get('id')} (fault {back.number}): started "
                    f"{started - back.healed_at:+.2f}s after {back.target} was back "
                    f"({started - back.settled_at:+.2f}s after every server listed it), "
                    f"finished {(epoch(e['finished_at']) or 0.0) - back.healed_at:+.2f}s: "
                    f"{output[-1] if output else ''}"[:300]
                )
            elif in_failover(started) or in_failover(started + period):
                # Started up to a period before a kill: the killed leader may have recorded
                # the start and never sent it.
                failed_why["in a failover window"] += 1
            elif kind := fault_at(started):
                failed_why[f"in a {kind} window"] += 1
            else:
                failed_why["outside any window"] += 1
                output = (e.get("output") or "").strip().splitlines()
                failed_other.append(f"{name}/{e.get('id')}: {output[-1] if output else ''}"[:200])

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

    by_kind: dict[str, dict[str, Any]] = {}
    for kind in FAULT_KINDS:
        mine = [f for f in faults if f.kind == kind]
        by_kind[kind] = {
            "planned": len(mine),
            "injected": sum(1 for f in mine if f.done),
            "skipped": sum(1 for f in mine if f.skipped),
            "failed": sum(1 for f in mine if f.error),
            "missed_in_window": len(missed_fault[kind]),
        }
    by_kind["agent_kill"]["mid_run"] = sum(
        1 for f in faults if f.kind == "agent_kill" and f.detail.get("mid_run")
    )
    by_kind["disk_full"]["bit"] = sum(
        1 for f in faults if f.kind == "disk_full" and f.detail.get("bit")
    )
    smalls = [f.detail["small_write"] for f in faults if "small_write" in f.detail]
    by_kind["disk_full"]["small_write_507"] = sum(1 for w in smalls if w["status"] == 507)
    by_kind["disk_full"]["small_write_unanswered"] = sum(1 for w in smalls if w["status"] is None)
    by_kind["disk_full"]["resumed"] = sum(
        1 for f in faults if f.kind == "disk_full" and f.detail.get("resumed_after_s") is not None
    )
    by_kind["follower_pause"]["leader_changed"] = sum(
        1 for f in faults if f.kind == "follower_pause" and f.detail.get("leader_changed")
    )
    missed_in_faults = sum(len(v) for v in missed_fault.values())
    lost = unrecorded + len(vanished) + killed_unrecorded

    return {
        "kills_done": len(kills),
        "expected": expected,
        "run": ran,
        "duplicated": duplicated,
        "duplicated_sample": duplicated_sample[:20],
        "retries": retries,
        "off_schedule": off_schedule,
        "missed": len(missed_in) + missed_in_faults + len(missed_out),
        "missed_in_failover": len(missed_in),
        "missed_in_faults": missed_in_faults,
        "missed_in_fault_sample": {k: v[:10] for k, v in missed_fault.items() if v},
        "missed_outside_failover": len(missed_out),
        "missed_outside_failover_sample": missed_out[:20],
        "stuck": stuck,
        "unrecorded": unrecorded,
        "vanished": len(vanished),
        "vanished_sample": vanished[:20],
        "records_checked_mid_run": len(seen),
        "killed_runs": killed_runs,
        "killed_runs_failed": killed_failed,
        "killed_runs_succeeded": killed_succeeded,
        "killed_runs_unrecorded": killed_unrecorded,
        "killed_runs_sample": killed_sample,
        "lost": lost,
        "failed_executions": failed_runs,
        "failed_by_cause": dict(failed_why),
        "failed_outside_windows_sample": failed_other[:20],
        "failed_after_agent_back_sample": failed_after_back[:20],
        "failover_s": spread(failover),
        "failover_p99_s": spread(failover)["p99"],
        "election_s": spread(election),
        "failover_per_kill_s": failover,
        "kills": [vars(k) for k in kills],
        "faults_by_kind": by_kind,
        "faults": [vars(f) for f in faults],
    }


# -- output ------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def target_cell(name: str, value: float) -> str:
    goal, higher = TARGETS[name]
    if goal == 0.0 and not higher:
        return "=0: ok" if value == 0 else f"=0: MISSED ({fmt(value)})"
    return f"{'≥' if higher else '≤'}{goal:g}: {check_target(value, goal, higher)}"


def print_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    faults = bool(args.faults)
    windows = "failover/fault windows" if faults else "failover windows"
    rows = [("leader kills done", fmt(result["kills_done"]), "-")]
    if faults:
        by_kind = result["faults_by_kind"]
        for kind in FAULT_KINDS:
            info = by_kind[kind]
            notes = []
            if kind == "agent_kill" and info["injected"]:
                notes.append(f"{info['mid_run']} caught mid-run")
            if kind == "disk_full" and info["injected"]:
                notes.append(
                    f"{info['bit']} answered 507, {info['resumed']} took writes again; "
                    f"a small write in the hold: {info['small_write_507']} got 507, "
                    f"{info['small_write_unanswered']} no answer"
                )
            if kind == "follower_pause" and info["injected"]:
                notes.append(f"{info['leader_changed']} changed the leader")
            if info["skipped"]:
                notes.append(f"{info['skipped']} skipped")
            if info["failed"]:
                notes.append(f"{info['failed']} FAILED")
            rows.append((f"faults: {FAULT_LABELS[kind]}", fmt(info["injected"]), "; ".join(notes)))
    rows += [
        ("launches expected", fmt(result["expected"]), "-"),
        ("launches run", fmt(result["run"]), "-"),
        ("duplicated", fmt(result["duplicated"]), target_cell("duplicated", result["duplicated"])),
        ("retries (attempt > 1, not duplicates)", fmt(result["retries"]), "-"),
        (
            "launches at no due time",
            fmt(result["off_schedule"]),
            target_cell("off_schedule", result["off_schedule"]),
        ),
        ("missed (total)", fmt(result["missed"]), "-"),
        (
            f"  inside failover windows ({args.misfire} allows)",
            fmt(result["missed_in_failover"]),
            "-",
        ),
    ]
    if faults:
        for kind in FAULT_KINDS:
            rows.append(
                (
                    f"  inside {kind} windows",
                    fmt(result["faults_by_kind"][kind]["missed_in_window"]),
                    "-",
                )
            )
    rows += [
        (
            f"  outside {windows}",
            fmt(result["missed_outside_failover"]),
            target_cell("missed_outside_failover", result["missed_outside_failover"]),
        ),
        ("stuck running", fmt(result["stuck"]), target_cell("stuck", result["stuck"])),
        (
            "unrecorded launches",
            fmt(result["unrecorded"]),
            target_cell("unrecorded", result["unrecorded"]),
        ),
        (
            f"records gone since read mid-run (of {fmt(result['records_checked_mid_run'])})",
            fmt(result["vanished"]),
            "-",
        ),
    ]
    if faults:
        rows.append(
            (
                "runs killed with their agent: recorded failed / all",
                f"{fmt(result['killed_runs_failed'])}/{fmt(result['killed_runs'])}",
                f"{result['killed_runs_unrecorded']} unrecorded, "
                f"{result['killed_runs_succeeded']} recorded a success",
            )
        )
    rows += [
        (
            "lost records (all of the above)",
            fmt(result["lost"]),
            target_cell("lost", result["lost"]),
        ),
        (
            "records missing on a follower at the end",
            fmt(result["follower_missing"]),
            target_cell("follower_missing", result["follower_missing"]),
        ),
        (
            "leader changes no kill explains (sampled every 0.5s)",
            fmt(len(result.get("leader_changes_without_kill", []))),
            f"{len(result.get('leader_reelected', []))} more kept the leader at a new term",
        ),
        (
            "failed executions",
            fmt(result["failed_executions"]),
            ", ".join(f"{n} {why}" for why, n in sorted(result["failed_by_cause"].items())) or "-",
        ),
    ]
    for key, label in (("failover_s", "failover kill->first launch"), ("election_s", "election")):
        for q in ("p50", "p99", "max"):
            cell = (
                target_cell("failover_p99_s", result[key][q])
                if (key, q) == ("failover_s", "p99")
                else "-"
            )
            rows.append((f"{label} {q} (s)", fmt(result[key][q]), cell))
    rows.append(
        (
            "processes started / left running",
            f"{fmt(result.get('processes_started', 0))}/{len(result.get('processes_left', []))}",
            "-",
        )
    )
    if faults:
        rows.append(
            (
                "tmpfs unmounted",
                fmt(len(result.get("tmpfs_unmounted", []))),
                result.get("tmpfs_not_mounted") or "-",
            )
        )
    headers = ("metric", "value", "target")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(3)]
    for row in [headers, *rows]:
        print(
            "  ".join(
                cell.rjust(widths[i]) if i == 1 else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
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
        "--faults",
        action="store_true",
        help="after each leader kill, one more fault: agent SIGKILL, follower SIGSTOP, "
        "follower disk full (in a --seed order)",
    )
    parser.add_argument("--seed", type=int, default=1, help="order and targets of the faults")
    parser.add_argument("--fault-hold", type=float, default=3.0, help="seconds each fault is held")
    parser.add_argument(
        "--run-seconds",
        type=float,
        help="each command sleeps this long after its line (default 0.5 with --faults, else 0)",
    )
    parser.add_argument(
        "--disk-mib", type=int, default=128, help="size of each server's tmpfs (--faults)"
    )
    parser.add_argument(
        "--log-level", default="warn", help="of every node (info shows leadership changes)"
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "chaos.json"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep node data and logs here (default: a temp dir)"
    )
    args = parser.parse_args()
    if args.servers < 3:
        parser.error("--servers must be at least 3: a leader kill needs a quorum to survive")
    # SIGTERM (e.g. `timeout`) unwinds through the finally blocks, which reap every node
    # and unmount every tmpfs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machine = machine_info()
    print(machine_line(machine))
    print(
        f"{args.servers} servers, {args.agents} agents, {args.jobs} jobs @every {args.period} "
        f"(misfire {args.misfire}), {args.kills} leader kills, {args.steady:g}s between"
        + (f", faults seed {args.seed} held {args.fault_hold:g}s" if args.faults else "")
    )
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=False)
        result = run_chaos(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
            result = run_chaos(args, Path(tmp))
    machine["loadavg_at_end"] = loadavg()
    print()
    print_table(result, args)
    for stall in result.get("launch_stalls", []):
        print(
            f"no launch for {stall['seconds']:.1f}s from "
            f"{time.strftime('%H:%M:%S', time.gmtime(stall['from']))} UTC (outside failover "
            f"windows); leaders seen from 1s before: {'; '.join(stall['watch']) or 'none'}"
        )
    for change in result.get("leader_changes_without_kill", [])[:10]:
        print(
            f"leader change without a kill at "
            f"{time.strftime('%H:%M:%S', time.gmtime(change['at']))} UTC: "
            f"{change['from']} -> {change['to']} (after {change['after']})"
        )
    for again in result.get("leader_reelected", [])[:10]:
        print(
            f"same leader, new term at {time.strftime('%H:%M:%S', time.gmtime(again['at']))} "
            f"UTC: {again['leader']} term {again['terms'][0]} -> {again['terms'][1]} "
            f"(after {again['after']})"
        )
    for line in result.get("failed_after_agent_back_sample", [])[:10]:
        print(f"failed after its agent was back: {line}")
    for line in result.get("failed_outside_windows_sample", [])[:10]:
        print(f"failed outside any window: {line}")
    for node, lines in result.get("log_concerns", {}).items():
        for line in lines[:10]:
            print(f"log of {node}: {line}")
    for error in result["errors"]:
        print(f"error: {error}")
    write_report(args.json, machine, args, TARGETS, result)


if __name__ == "__main__":
    main()
