"""Real multi-process dkron-py clusters on loopback, for the cluster tests and the benches.

A :class:`Node` is one ``dkronctl agent`` process (server or agent-only) in its own session,
with ports chosen once and reused on every restart, so a restarted node comes back at the
address the others know. A :class:`Cluster` is servers and agents that retry-join each other.
Every process started here is killed and reaped by ``Node.kill``/``Cluster.close`` (and, as a
last resort, at interpreter exit); nothing waits by sleeping: every wait polls a condition
with a deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent_process import DKRONCTL, Result, clean_env, run_cli
from support import free_gossip_port, free_port

__all__ = [
    "DKRONCTL",
    "LIVE_CLUSTERS",
    "ZERO_TIME",
    "Cluster",
    "Node",
    "NodeError",
    "Response",
    "epoch",
    "http",
    "poll",
]

ZERO_TIME = "0001-01-01T00:00:00Z"
START_DEADLINE = 45.0
FORM_DEADLINE = 60.0
STOP_DEADLINE = 30.0

# Clusters not closed yet: the pytest report hook prints their logs when a test fails.
LIVE_CLUSTERS: list[Cluster] = []
_LIVE_NODES: set[Node] = set()
_TAKEN_PORTS: set[int] = set()


class NodeError(AssertionError):
    """A node did not start, exited early, or a cluster did not reach the wanted state."""


# -- small helpers ----------------------------------------------------------------------------


def poll(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
) -> Any:
    """Call ``predicate`` until it returns something truthy and return that (a deadline,
    never a fixed sleep). ``what`` names the condition in the timeout message."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise NodeError(f"{what}: not within {timeout:g}s (last: {last!r}){detail}")
        time.sleep(interval)


def epoch(text: str | None) -> float | None:
    """An API timestamp (RFC 3339, nanoseconds allowed) as epoch seconds; None for Go's zero."""
    if not text or text.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(text).timestamp()


def _free_port(udp: bool = False) -> int:
    """A loopback port free now (TCP, and UDP too for gossip), never handed out twice,
    and outside the kernel's ephemeral range (support.free_port says why)."""
    while True:
        port = free_gossip_port() if udp else free_port()
        if port not in _TAKEN_PORTS:
            _TAKEN_PORTS.add(port)
            return port


def _session_members(sid: int) -> list[int]:
    """PIDs whose session is ``sid``: a node and everything it started (plugins, commands),
    including children that changed process group. Only our own nodes' sessions are
    scanned, and a session id stays allocated while any member lives, so this never
    names a stranger."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, session.
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry))
    return members


@dataclass
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str]

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.text[:500]!r})"


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Response:
    """One HTTP request; an HTTP error status is a Response, a connection failure raises
    OSError (callers that poll catch it)."""
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return Response(answer.status, answer.read(), dict(answer.headers))
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.read(), dict(error.headers))


# -- one node ---------------------------------------------------------------------------------


class Node:
    """One ``dkronctl agent`` process. Ports are picked once; restarts reuse them."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        server: bool,
        tags: Mapping[str, str] | None = None,
        join: Sequence[str] = (),
        bootstrap_expect: int = 0,
        retry_interval: str = "200ms",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.server = server
        self.tags = dict(tags or {})
        self.join = list(join)
        self.bootstrap_expect = bootstrap_expect
        self.retry_interval = retry_interval
        self.extra_args = list(extra_args)
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.gossip_port = _free_port(udp=True)
        self.rpc_port = _free_port()
        self.raft_port = _free_port() if server else 0
        self.http_port = _free_port() if server else 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path: Path | None = None
        self.paused = False

    def __repr__(self) -> str:
        role = "server" if self.server else "agent"
        return f"Node({self.name!r}, {role}, pid={self.pid})"

    # addresses

    @property
    def gossip_addr(self) -> str:
        return f"127.0.0.1:{self.gossip_port}"

    @property
    def rpc_addr(self) -> str:
        return f"127.0.0.1:{self.rpc_port}"

    @property
    def address(self) -> str:
        """Base URL of the REST API (servers only)."""
        if not self.server:
            raise NodeError(f"{self.name} is an agent-only node: it has no REST API")
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def argv(self) -> list[str]:
        argv = [
            DKRONCTL,
            "agent",
            "--node-name",
            self.name,
            "--bind-addr",
            self.gossip_addr,
            "--rpc-port",
            str(self.rpc_port),
            "--data-dir",
            str(self.data_dir),
            "--plugin-dir",
            str(self.dir / "plugins"),
            "--retry-interval",
            self.retry_interval,
        ]
        if self.server:
            argv += [
                "--server",
                "--bootstrap-expect",
                str(self.bootstrap_expect),
                "--raft-port",
                str(self.raft_port),
                "--http-addr",
                f"127.0.0.1:{self.http_port}",
            ]
        for key, value in self.tags.items():
            argv += ["--tag", f"{key}={value}"]
        for address in self.join:
            argv += ["--retry-join", address]
        return argv + self.extra_args

    # life cycle

    @property
    def running(self) -> bool:
        """Started and not exited (a paused node is running). Never reaps, so the pid and
        its session stay ours until ``kill``/``stop`` reap them."""
        if self.process is None or self.process.returncode is not None:
            return False
        try:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return info is None

    def spawn(self) -> None:
        """Start the process without waiting for it (a cluster starts every node at once)."""
        if self.running:
            raise NodeError(f"{self.name} is already running (pid {self.pid})")
        self._reap()
        self.starts += 1
        self.log_path = self.dir / f"{self.name}-{self.starts}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=clean_env(self.dir),
                start_new_session=True,
            )
        self.paused = False
        _LIVE_NODES.add(self)

    def wait_started(self, timeout: float = START_DEADLINE) -> None:
        """Until the start-up line is printed (servers print it once the API listens)."""
        marker = f"dkron-py agent '{self.name}' ("

        def started() -> bool:
            if not self.running:
                code = self.process.poll() if self.process else None
                raise NodeError(f"{self.name} exited with {code} while starting:\n{self.tail()}")
            return marker in self.log()

        poll(started, timeout, f"{self.name} start-up line", on_timeout=self._tail_detail)

    def start(self, timeout: float = START_DEADLINE) -> None:
        self.spawn()
        self.wait_started(timeout)

    def kill(self) -> None:
        """SIGKILL the node and everything in its session, then reap it."""
        if self.process is None:
            return
        if self.process.returncode is None:
            # The unreaped leader keeps its pid (= the session id) ours while we sweep.
            self._signal_session(signal.SIGKILL)
            self.process.wait(STOP_DEADLINE)
        self._sweep()
        self.paused = False
        _LIVE_NODES.discard(self)

    def stop(self, timeout: float = STOP_DEADLINE) -> int | None:
        """SIGTERM (a graceful leave), wait, SIGKILL what is left. Returns the exit status."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        if self.paused:
            self.resume()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        return code

    def restart(self, graceful: bool = False, wait: bool = True) -> None:
        """Stop (SIGTERM) or kill (SIGKILL) it, then start it on the same ports and data."""
        if graceful:
            self.stop()
        else:
            self.kill()
        self.spawn()
        if wait:
            self.wait_started()

    def pause(self) -> None:
        """SIGSTOP the node and its session: a frozen machine, as far as the others see."""
        self._signal_session(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._signal_session(signal.SIGCONT)
        self.paused = False

    def session_pids(self) -> list[int]:
        """The node's pid and every live process of its session (plugins, commands)."""
        if self.process is None or self.process.returncode is not None:
            return []
        return sorted({self.process.pid, *_session_members(self.process.pid)})

    def _signal_session(self, number: int) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        pids = {self.process.pid, *_session_members(self.process.pid)}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    def _sweep(self) -> None:
        # Leftovers of this session whose leader has exited (plugins, commands).
        if self.process is None:
            return
        for _ in range(50):
            left = _session_members(self.process.pid)
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)  # the kernel tears them down asynchronously

    def _reap(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.kill()

    # logs

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def all_logs(self) -> str:
        """Every start's log, oldest first (a restarted node's history matters)."""
        parts = []
        for number in range(1, self.starts + 1):
            path = self.dir / f"{self.name}-{number}.log"
            if path.exists():
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def _tail_detail(self) -> str:
        return f"\n--- {self.name} log tail ---\n{self.tail()}"

    # REST (servers)

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Response:
        return http(method, f"{self.address}{path}", body, timeout)

    def get_json(self, path: str) -> Any:
        answer = self.api("GET", path)
        if answer.status != 200:
            raise NodeError(f"GET {path} on {self.name}: {answer!r}")
        return answer.json()

    def leader_name(self) -> str | None:
        """The Name in this server's GET /v1/leader, None if it has no leader (or no answer)."""
        try:
            answer = self.api("GET", "/v1/leader", timeout=2.0)
        except OSError:
            return None
        if answer.status != 200:
            return None
        try:
            name = answer.json().get("Name")
        except (ValueError, AttributeError):
            return None
        return str(name) if name else None

    def is_leader(self) -> bool:
        try:
            return self.api("GET", "/v1/isleader", timeout=2.0).status == 200
        except OSError:
            return False

    def cli(self, *args: str, check: bool = True, input: str | None = None) -> Result:
        """``dkronctl ARGS`` against this server's API."""
        return run_cli(*args, address=self.address, home=self.dir, input=input, check=check)


# -- a cluster --------------------------------------------------------------------------------


class Cluster:
    """``servers`` servers (``s1``..) and ``agents`` agent-only nodes (``a1``..), each
    retry-joining every server's gossip address but its own.

    ``tags`` maps a node name to its ``--tag`` values; ``server_args``/``agent_args`` are
    extra flags for every server/agent (``--max-history 10000`` in the benches).
    """

    def __init__(
        self,
        workdir: Path,
        servers: int = 3,
        agents: int = 0,
        tags: Mapping[str, Mapping[str, str]] | None = None,
        bootstrap_expect: int | None = None,
        server_args: Sequence[str] = (),
        agent_args: Sequence[str] = (),
        retry_interval: str = "200ms",
    ) -> None:
        self.workdir = workdir
        self.retry_interval = retry_interval
        self.agent_args = list(agent_args)
        tags = tags or {}
        expect = servers if bootstrap_expect is None else bootstrap_expect
        self.servers = [
            Node(
                f"s{i}",
                workdir,
                server=True,
                tags=tags.get(f"s{i}"),
                bootstrap_expect=expect,
                retry_interval=retry_interval,
                extra_args=server_args,
            )
            for i in range(1, servers + 1)
        ]
        seeds = [server.gossip_addr for server in self.servers]
        for server in self.servers:
            server.join = [seed for seed in seeds if seed != server.gossip_addr]
        self.agents: list[Node] = []
        for i in range(1, agents + 1):
            self._new_agent(f"a{i}", tags.get(f"a{i}"))
        LIVE_CLUSTERS.append(self)

    def _new_agent(self, name: str, tags: Mapping[str, str] | None) -> Node:
        agent = Node(
            name,
            self.workdir,
            server=False,
            tags=tags,
            join=[server.gossip_addr for server in self.servers],
            retry_interval=self.retry_interval,
            extra_args=self.agent_args,
        )
        self.agents.append(agent)
        return agent

    @property
    def nodes(self) -> list[Node]:
        return [*self.servers, *self.agents]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # life cycle

    def start(self, timeout: float = START_DEADLINE) -> None:
        """Start every node at once (servers wait for each other to bootstrap)."""
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            node.wait_started(timeout)

    def add_agent(self, name: str, tags: Mapping[str, str] | None = None) -> Node:
        """Start one more agent-only node that joins the running cluster."""
        agent = self._new_agent(name, tags)
        agent.start()
        return agent

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.kill()
        with contextlib.suppress(ValueError):
            LIVE_CLUSTERS.remove(self)

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def heal(self, timeout: float = FORM_DEADLINE) -> Node:
        """Resume paused nodes, restart dead ones, and wait until formed; returns the leader."""
        dead = []
        for node in self.nodes:
            if node.paused:
                node.resume()
            if not node.running:
                node.spawn()
                dead.append(node)
        for node in dead:
            node.wait_started()
        return self.wait_formed(timeout)

    # cluster state

    def reachable_servers(self, exclude: Iterable[Node] = ()) -> list[Node]:
        skip = {node.name for node in exclude}
        return [s for s in self.servers if s.running and not s.paused and s.name not in skip]

    def any_server(self) -> Node:
        servers = self.reachable_servers()
        if not servers:
            raise NodeError("no server is running")
        return servers[0]

    def agreed_leader(self, exclude: Iterable[Node] = ()) -> Node | None:
        """The server every reachable server (but ``exclude``) names in GET /v1/leader, if
        they all agree on one that is itself reachable."""
        servers = self.reachable_servers(exclude)
        names = {server.leader_name() for server in servers}
        if len(names) != 1:
            return None
        (name,) = names
        for server in servers:
            if server.name == name:
                return server
        return None

    def leader(self, timeout: float = FORM_DEADLINE) -> Node:
        leader: Node = poll(
            self.agreed_leader, timeout, "servers agreeing on a leader", on_timeout=self.tails
        )
        return leader

    def wait_formed(self, timeout: float = FORM_DEADLINE) -> Node:
        """Until every reachable server names the same leader in GET /v1/leader and lists
        every running node as alive in GET /v1/members. Returns the leader."""
        expected = {node.name for node in self.nodes if node.running and not node.paused}

        def formed() -> Node | None:
            leader = self.agreed_leader()
            if leader is None:
                return None
            for server in self.reachable_servers():
                try:
                    members = server.get_json("/v1/members")
                except (OSError, NodeError, ValueError):
                    return None
                alive = {m.get("Name") for m in members if m.get("Status") == 1}
                if not expected <= alive:
                    return None
            return leader

        found: Node = poll(formed, timeout, "cluster formed", on_timeout=self._formation_detail)
        return found

    def wait_new_leader(self, exclude: Iterable[Node], timeout: float = 30.0) -> Node:
        """Until the reachable servers other than ``exclude`` agree on a leader among them."""
        excluded = list(exclude)
        found: Node = poll(
            lambda: self.agreed_leader(excluded),
            timeout,
            f"a new leader (not {[n.name for n in excluded]})",
            interval=0.02,
            on_timeout=self.tails,
        )
        return found

    def kill_leader(self) -> tuple[Node, float]:
        """SIGKILL the current leader; returns it and the wall-clock time of the kill."""
        leader = self.leader()
        killed_at = time.time()
        leader.kill()
        return leader, killed_at

    # REST helpers (through any reachable server unless ``via`` is given)

    def members(self, via: Node | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (via or self.any_server()).get_json("/v1/members")
        return found

    def create_job(self, job: Mapping[str, Any], via: Node | None = None) -> dict[str, Any]:
        answer = (via or self.any_server()).api("POST", "/v1/jobs", dict(job))
        if answer.status != 201:
            raise NodeError(f"creating job {job.get('name')!r}: {answer!r}")
        created: dict[str, Any] = answer.json()
        return created

    def run_job(self, name: str, via: Node | None = None) -> None:
        answer = (via or self.any_server()).api("POST", f"/v1/jobs/{name}")
        if answer.status != 200:
            raise NodeError(f"running job {name!r}: {answer!r}")

    def toggle_job(self, name: str, via: Node | None = None) -> dict[str, Any]:
        answer = (via or self.any_server()).api("POST", f"/v1/jobs/{name}/toggle")
        if answer.status != 200:
            raise NodeError(f"toggling job {name!r}: {answer!r}")
        job: dict[str, Any] = answer.json()
        return job

    def executions(self, name: str, via: Node | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (via or self.any_server()).get_json(
            f"/v1/jobs/{name}/executions"
        )
        return found

    # diagnostics

    def tails(self, lines: int = 40) -> str:
        parts = []
        for node in self.nodes:
            if node.log_path is None:
                continue
            state = "paused" if node.paused else "running" if node.running else "stopped"
            parts.append(f"\n--- {node.name} ({state}) {node.log_path} ---\n{node.tail(lines)}")
        return "".join(parts)

    def _formation_detail(self) -> str:
        views = []
        for server in self.reachable_servers():
            try:
                members = server.get_json("/v1/members")
                seen = sorted(
                    f"{m.get('Name')}:{m.get('statusText', m.get('Status'))}" for m in members
                )
            except (OSError, NodeError, ValueError) as error:
                seen = [f"error {error}"]
            views.append(f"{server.name}: leader={server.leader_name()} members={seen}")
        return "\n" + "\n".join(views) + self.tails()


@atexit.register
def _kill_leftovers() -> None:
    # Last resort for a bench interrupted before its finally blocks ran.
    for node in list(_LIVE_NODES):
        with contextlib.suppress(Exception):
            node.kill()
