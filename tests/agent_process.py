"""Real ``dkronctl agent`` processes and real ``dkronctl`` client invocations (shared by
the CLI, end-to-end, cluster and security tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import free_port

DKRONCTL = str(Path(sys.executable).parent / "dkronctl")
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: "not yet" in Dkron's JSON
START_DEADLINE = 30.0


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without DKRON_* settings, with HOME in the temp dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DKRON_")}
    env["HOME"] = str(home)
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Agent:
    """One ``dkronctl agent --server`` subprocess in its own session (so plugins die with it)."""

    def __init__(self, workdir: Path, node_name: str = "node1") -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.raft_port = free_port()
        self.gossip_port = free_port()
        self.node_name = node_name
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        # Set for an agent serving HTTPS (its CA, and a client certificate if it asks).
        self.ssl: ssl.SSLContext | None = None
        self.token: str | None = None  # an ACL token for api() once ACLs are bootstrapped

    @property
    def address(self) -> str:
        scheme = "https" if self.ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    def open(self, path: str, *, data: bytes | None = None, method: str | None = None,
             timeout: float = 10) -> Any:  # fmt: skip
        """urlopen on this agent's API, with its TLS context and token."""
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            f"{self.address}{path}", data=data, method=method, headers=headers
        )
        return urllib.request.urlopen(request, timeout=timeout, context=self.ssl)

    def argv(self, *extra: str) -> list[str]:
        return [
            DKRONCTL,
            "agent",
            "--server",
            "--bootstrap-expect",
            "1",
            "--data-dir",
            str(self.data_dir),
            "--http-addr",
            f"127.0.0.1:{self.http_port}",
            "--rpc-port",
            str(self.rpc_port),
            "--raft-port",
            str(self.raft_port),
            "--bind-addr",
            f"127.0.0.1:{self.gossip_port}",
            "--node-name",
            self.node_name,
            "--plugin-dir",
            str(self.workdir / "plugins"),
            *extra,
        ]

    def start(
        self,
        *extra: str,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        """Start the agent with ``extra`` flags (and ``env`` added to a clean environment)
        and wait until it leads; secrets belong in ``env``, as operators should pass them."""
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        self.stdout_path = self.workdir / f"agent-{self.starts}.out"
        self.stderr_path = self.workdir / f"agent-{self.starts}.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                self.argv(*extra),
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                env=clean_env(self.workdir, **(env or {})),
                start_new_session=True,
                preexec_fn=preexec_fn,
            )
        self.wait_healthy()

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"agent exited with {self.process.returncode}: {self.stderr()}"
                )
            return self.health() is not None

        wait_for(healthy, timeout=START_DEADLINE)
        # /health answers before Raft elects itself; writes need the leader.
        wait_for(lambda: self.is_leader(), timeout=START_DEADLINE)

    def health(self) -> dict[str, Any] | None:
        """/health's answer (healthy or, with a 503, unhealthy), or None if it does not
        answer; it needs no ACL token."""
        try:
            with self.open("/health", timeout=1) as response:
                answer: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                return None
            answer = json.loads(exc.read())
        except OSError:
            return None
        return answer

    def is_leader(self) -> bool:
        # /health says so on a server (Dkron 4.1).
        answer = self.health()
        return bool(answer and answer.get("leader"))

    def api(self, path: str) -> Any:
        """A direct GET, for polling: cheaper than a dkronctl process per attempt."""
        with self.open(path) as response:
            return json.loads(response.read())

    def executions(self, job: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api(f"/v1/jobs/{job}/executions")
        return result

    def post(self, path: str, body: object | None = None) -> Any:
        """A direct POST of ``body`` as JSON; the decoded answer (None if empty)."""
        data = b"" if body is None else json.dumps(body).encode()
        with self.open(path, data=data, method="POST") as response:
            answer = response.read()
        return json.loads(answer) if answer.strip() else None

    def finished(self, job: str) -> list[dict[str, Any]]:
        """The job's finished executions (newest first, as the API lists them)."""
        return [e for e in self.executions(job) if e["finished_at"] != ZERO_TIME]

    def run_shell(self, job: str, command: str) -> dict[str, Any]:
        """Create a manual shell job, run it once, wait for it; its execution."""
        self.post("/v1/jobs", {"name": job, "schedule": "@manually", "executor": "shell",
                               "executor_config": {"command": command}})  # fmt: skip
        self.post(f"/v1/jobs/{job}/run")
        done: list[dict[str, Any]] = wait_for(lambda: self.finished(job))
        return done[0]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill9(self) -> None:
        """SIGKILL the agent and everything in its session (its plugins), then reap it."""
        if self.process is None or self.process.poll() is not None:
            return  # already reaped: its pid (and group id) may belong to someone else now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> Result:
        return run_cli(*args, address=self.address, home=self.workdir, input=input, check=check)


class Result:
    def __init__(self, completed: subprocess.CompletedProcess[str]) -> None:
        self.code = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"Result(code={self.code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


def run_cli(
    *args: str,
    address: str | None,
    home: Path,
    input: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> Result:
    extra = {"DKRON_ADDR": address} if address else {}
    extra.update(env or {})
    completed = subprocess.run(
        [DKRONCTL, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home,
        env=clean_env(home, **extra),
    )
    result = Result(completed)
    if check:
        assert result.code == 0, result
    return result
