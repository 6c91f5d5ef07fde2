"""Dkron's ``shell`` executor: run a command, stream its output, enforce timeout and memory.

Config keys (all strings): ``command`` (required), ``shell``, ``env``, ``cwd``, ``timeout``,
``mem_limit``, ``su``, ``payload``. Messages use Dkron's texts so jobs and alerts written
for Dkron keep working.

Where Dkron is buggy or vague we do the sane thing:

- Bad ``shell``, ``env``, ``su``, ``mem_limit`` or command quoting fails the execution with a
  clear message instead of being ignored; negative timeouts are refused (Dkron kills at once).
- An empty or blank ``command`` is ``shell: Command missing`` in shell mode too.
- ``env`` entries are split on ``,``; blank entries are skipped and a key's surrounding
  spaces dropped (``A=1, B=2`` sets ``B``); an entry without ``=`` is an error.
- The child always gets its own process group, so ``timeout`` and ``mem_limit`` kills reach
  grandchildren (Dkron sets ``Setpgid`` only with ``timeout``/``su``).
- The memory monitor stops when the job ends. It counts the process group as well as the
  descendants, so a grandchild whose parent exited still counts.
- As in Go, the job ends when the child has exited *and* its output pipes are closed; after
  a kill, a process that left the group and holds the pipes is waited for at most
  ``KILL_DRAIN_GRACE`` seconds. A kill always fails the execution, even if the direct child
  had already exited 0.
- ``payload`` is written while the output is read, so a payload over the pipe size cannot
  deadlock (Dkron writes it before starting the child).
- go-plugin's handshake variables (``DKRON_PLUGIN_MAGIC_COOKIE``, ``PLUGIN_*``) are not passed
  to the job, so a job that starts a plugin does not mistake itself for one.
- gRPC's fork support is off in plugin processes (the SDK does it unless the operator set
  ``GRPC_ENABLE_FORK_SUPPORT``): ``su`` needs a real fork(), whose gRPC handlers crashed the
  child now and then. Jobs do not see the variable.
- The kill message is also streamed live (Dkron only adds it to the final output), on its own
  line if the output did not end with a newline.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import grp
import logging
import os
import pwd
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, NoReturn

# `su` needs fork() rather than vfork(); the SDK turns gRPC's fork handlers off in
# plugin processes because they crash such children now and then (SIGSEGV before exec).
from plugin_sdk import (
    ENVIRONMENT_DEFAULTS,
    ExecuteRequest,
    ExecuteResponse,
    StatusHelper,
    serve,
)
from plugin_sdk.gocompat import (
    format_go_duration,
    parse_go_bool,
    parse_go_duration,
    parse_mem_limit,
)
from plugin_sdk.protocol import DKRON_HANDSHAKE

__all__ = [
    "MAX_OUTPUT_BYTES",
    "execute",
    "format_go_duration",
    "main",
    "parse_go_bool",
    "parse_go_duration",
    "parse_mem_limit",
]

log = logging.getLogger("builtin_plugins.shell")

# Dkron's maxBufSize: only the tail of a chatty job's output is kept.
MAX_OUTPUT_BYTES = 256_000
MEM_POLL_INTERVAL = 1.0
# After a kill, a process that left the group may still hold the pipes; stop waiting then.
KILL_DRAIN_GRACE = 2.0
# How often a running job checks whether the host cancelled the execution.
CANCEL_POLL_INTERVAL = 0.2
_READ_CHUNK = 64 * 1024
_NS_PER_S = 1_000_000_000

_GO_SIGNAL_NAMES = {
    1: "hangup",
    2: "interrupt",
    3: "quit",
    4: "illegal instruction",
    5: "trace/breakpoint trap",
    6: "aborted",
    7: "bus error",
    8: "floating point exception",
    9: "killed",
    10: "user defined signal 1",
    11: "segmentation fault",
    12: "user defined signal 2",
    13: "broken pipe",
    14: "alarm clock",
    15: "terminated",
    16: "stack fault",
    17: "child exited",
    18: "continued",
    19: "stopped (signal)",
    20: "stopped",
    21: "stopped (tty input)",
    22: "stopped (tty output)",
    23: "urgent I/O condition",
    24: "CPU time limit exceeded",
    25: "file size limit exceeded",
    26: "virtual timer expired",
    27: "profiling timer expired",
    28: "window changed",
    29: "I/O possible",
    30: "power failure",
    31: "bad system call",
}


class ConfigError(ValueError):
    """The job's executor_config is unusable; the message is the execution's error."""


# -- the job ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    command: str
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    timeout_ns: int
    mem_limit: int
    uid: int | None
    gid: int | None
    payload: bytes


@functools.cache
def _inherited_environment() -> dict[str, str]:
    # The plugin's environment does not change after start; building it once
    # saves ~0.2 ms per execution (it is copied, never mutated).
    env = {
        key: value
        for key, value in os.environ.items()
        if key != DKRON_HANDSHAKE.cookie_key and not key.startswith("PLUGIN_")
    }
    for name in ENVIRONMENT_DEFAULTS:
        env.pop(name, None)
    return env


def _environment(spec: str, job_name: str) -> dict[str, str]:
    env = dict(_inherited_environment())
    for entry in spec.split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f'shell: Error parsing env entry "{entry}": want KEY=VALUE '
                "(entries are separated by commas, so values cannot contain one)"
            )
        env[key] = value
    env["ENV_JOB_NAME"] = job_name
    return env


def _credentials(spec: str) -> tuple[int, int]:
    user, _, group = spec.partition(":")
    if not user or ":" in group:
        raise ConfigError(f'shell: Error parsing su "{spec}": want user or user:group')
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f'shell: su: unknown user "{user}"') from None
    if not group:
        return entry.pw_uid, entry.pw_gid
    try:
        return entry.pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f'shell: su: unknown group "{group}"') from None


def _parse(request: ExecuteRequest) -> _Job:
    config: Mapping[str, str] = request.config
    command = config.get("command", "")
    use_shell = False
    if config.get("shell", ""):
        try:
            use_shell = parse_go_bool(config["shell"])
        except ValueError:
            raise ConfigError(
                f'shell: Error parsing "shell" value "{config["shell"]}": want true or false'
            ) from None
    if not command.strip():
        raise ConfigError("shell: Command missing")
    if use_shell:
        argv = ["/bin/sh", "-c", command]
    else:
        try:
            argv = shlex.split(command, posix=True)
        except ValueError as exc:
            raise ConfigError(f"shell: Error parsing command: {exc}") from None
        if not argv:  # e.g. only a comment
            raise ConfigError("shell: Command missing")

    timeout_ns = 0
    if config.get("timeout", ""):
        try:
            timeout_ns = parse_go_duration(config["timeout"])
        except ValueError as exc:
            raise ConfigError(f"shell: Error parsing job timeout: {exc}") from None
        if timeout_ns < 0:
            raise ConfigError(
                f'shell: Error parsing job timeout: negative duration "{config["timeout"]}"'
            )

    mem_limit = 0
    if config.get("mem_limit", ""):
        try:
            mem_limit = parse_mem_limit(config["mem_limit"])
        except ValueError as exc:
            raise ConfigError(f"shell: Error parsing job memory limit: {exc}") from None

    uid = gid = None
    if config.get("su", ""):
        uid, gid = _credentials(config["su"])

    payload = b""
    if config.get("payload", ""):
        try:
            # Go's StdEncoding skips line breaks; anything else invalid is an error.
            cleaned = config["payload"].replace("\r", "").replace("\n", "")
            payload = base64.b64decode(cleaned, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"shell: Error decoding payload (want base64): {exc}") from None

    return _Job(
        command=command,
        argv=argv,
        env=_environment(config.get("env", ""), request.job_name),
        cwd=config.get("cwd") or None,
        timeout_ns=timeout_ns,
        mem_limit=mem_limit,
        uid=uid,
        gid=gid,
        payload=payload,
    )


def _start_error(job: _Job, exc: OSError) -> str:
    """Go's exec error texts: ``exec: "x": executable file not found in $PATH`` and co."""
    reason = exc.strerror or str(exc)
    reason = reason[:1].lower() + reason[1:]
    program = job.argv[0]
    if job.cwd is not None and exc.filename == job.cwd and exc.filename != program:
        return f"chdir {job.cwd}: {reason}"
    if isinstance(exc, FileNotFoundError) and "/" not in program:
        return f'exec: "{program}": executable file not found in $PATH'
    return f"fork/exec {program}: {reason}"


def _exit_error(returncode: int, core_dumped: bool) -> str:
    if returncode >= 0:
        return "" if returncode == 0 else f"exit status {returncode}"
    number = -returncode
    name = _GO_SIGNAL_NAMES.get(number, f"signal {number}")
    return f"signal: {name}" + (" (core dumped)" if core_dumped else "")


# -- memory of a process tree, from /proc -------------------------------------------------


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root``, its descendants and its process group."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    members = {root}  # the group's members and, below, every descendant
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:  # gone meanwhile
            continue
        # The command name may contain spaces and parentheses; fields follow the last ')'.
        fields = data[data.rfind(b")") + 2 :].split()
        pid, ppid, pgrp = int(name), int(fields[1]), int(fields[2])
        rss[pid] = int(fields[21])
        children.setdefault(ppid, []).append(pid)
        if pgrp == root:
            members.add(pid)
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in members:
                members.add(child)
                pending.append(child)
    return sum(rss.get(pid, 0) for pid in members) * os.sysconf("SC_PAGE_SIZE")


# -- running ------------------------------------------------------------------------------


class _TailBuffer:
    """Keeps the last ``limit`` bytes written (Dkron's circbuf)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._data += chunk
        if len(self._data) > 2 * self.limit:  # trim in batches, not on every write
            del self._data[: -self.limit]

    def endswith_newline(self) -> bool:
        return not self._data or self._data.endswith(b"\n")

    def value(self) -> bytes:
        return bytes(self._data[-self.limit :])


def _kill_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        return False
    return True


class _Supervisor:
    """Runs one started child to its end: pipes, payload, timeout and memory watch."""

    def __init__(
        self,
        job: _Job,
        process: subprocess.Popen[bytes],
        status: StatusHelper,
        cancelled: threading.Event | None = None,
    ):
        self.job = job
        self.cancelled = cancelled
        self.process = process
        self.status = status
        self.output = _TailBuffer(MAX_OUTPUT_BYTES)
        self.selector = selectors.DefaultSelector()
        self.kill_message = ""
        self.exited = False
        self.core_dumped = False
        self._pipes: dict[int, tuple[IO[bytes], bool]] = {}
        self._payload_pos = 0
        self._pidfd: int | None = None

    def run(self) -> ExecuteResponse:
        try:
            self._register()
            self._loop()
        finally:
            self._close_all()
            self.selector.close()
        returncode = self.process.wait()
        error = _exit_error(returncode, self.core_dumped)
        if self.kill_message:
            line = self.kill_message
            if not self.output.endswith_newline():
                line = "\n" + line
            self.output.write(line.encode())
            self.status.update(line, is_error=True)
            # The group was killed even if the direct child had already exited cleanly.
            error = error or self.kill_message
        if self.output.total > MAX_OUTPUT_BYTES:
            log.info(
                "shell: output truncated",
                extra={"command": self.job.command, "bytes": self.output.total},
            )
        return ExecuteResponse(output=self.output.value(), error=error)

    def _register(self) -> None:
        process = self.process
        assert process.stdout is not None and process.stderr is not None
        for stream, is_error in ((process.stdout, False), (process.stderr, True)):
            self._pipes[stream.fileno()] = (stream, is_error)
            self.selector.register(stream.fileno(), selectors.EVENT_READ)
        if process.stdin is not None:
            os.set_blocking(process.stdin.fileno(), False)
            self.selector.register(process.stdin.fileno(), selectors.EVENT_WRITE)
        try:
            self._pidfd = os.pidfd_open(process.pid)
        except OSError:  # kernel without pidfd: poll() below instead
            self._pidfd = None
        else:
            self.selector.register(self._pidfd, selectors.EVENT_READ)

    def _loop(self) -> None:
        started = time.monotonic()
        deadline = started + self.job.timeout_ns / _NS_PER_S if self.job.timeout_ns else None
        next_poll = started + MEM_POLL_INTERVAL if self.job.mem_limit else None
        drain_until: float | None = None
        while self._pipes or not self.exited:
            now = time.monotonic()
            waits: list[float] = []
            if not self.kill_message:
                if self.cancelled is not None:
                    if self.cancelled.is_set():
                        self._kill_for_cancel()
                        drain_until = now + KILL_DRAIN_GRACE
                        continue
                    waits.append(CANCEL_POLL_INTERVAL)
                if deadline is not None:
                    if now >= deadline:
                        self._kill_for_timeout()
                        drain_until = now + KILL_DRAIN_GRACE
                        continue
                    waits.append(deadline - now)
                if next_poll is not None:
                    if now >= next_poll:
                        if self._check_memory():
                            drain_until = now + KILL_DRAIN_GRACE
                            continue
                        next_poll = now + MEM_POLL_INTERVAL
                    waits.append(next_poll - now)
            if drain_until is not None:
                if now >= drain_until and self._pipes:
                    log.warning(
                        "shell: a killed job's pipes stayed open; dropping the rest",
                        extra={"command": self.job.command},
                    )
                    self._close_pipes()
                    continue
                waits.append(drain_until - now)
            if self._pidfd is None and not self.exited:
                waits.append(0.05)
            timeout = max(0.0, min(waits)) if waits else None
            for key, _ in self.selector.select(timeout):
                self._handle(key.fd)
            if self._pidfd is None and not self.exited and self.process.poll() is not None:
                self.exited = True

    def _handle(self, fd: int) -> None:
        if fd == self._pidfd:
            self._child_exited()
        elif fd in self._pipes:
            stream, is_error = self._pipes[fd]
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                self.selector.unregister(fd)
                del self._pipes[fd]
                stream.close()
                return
            self.output.write(chunk)
            self.status.update(chunk, is_error=is_error)
        else:
            self._write_payload()

    def _write_payload(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        payload = self.job.payload
        try:
            written = os.write(
                stdin.fileno(), payload[self._payload_pos : self._payload_pos + _READ_CHUNK]
            )
        except BlockingIOError:
            return
        except OSError:  # the job closed its stdin early, as Go ignores it so do we
            written = len(payload) - self._payload_pos
        self._payload_pos += written
        if self._payload_pos >= len(payload):
            self._close_stdin()

    def _child_exited(self) -> None:
        assert self._pidfd is not None
        try:
            # WNOWAIT: learn about a core dump but leave reaping to Popen.
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            info = None
        self.core_dumped = info is not None and info.si_code == os.CLD_DUMPED
        self.exited = True
        self.selector.unregister(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None

    def _kill_for_timeout(self) -> None:
        limit = format_go_duration(self.job.timeout_ns)
        prefix = (
            f"shell: Job '{self.job.command}' execution time exceeding defined timeout {limit}."
        )
        if _kill_group(self.process.pid):
            self.kill_message = f"{prefix} Job was killed"
        else:
            self.kill_message = f"{prefix} SIGKILL returned error. Job may not have been killed"

    def _kill_for_cancel(self) -> None:
        # The host gave up on the execution (its per-execution timeout, or shutdown):
        # nobody will read the result, so the job must not keep running unseen.
        prefix = f"shell: Job '{self.job.command}' cancelled by the host."
        if _kill_group(self.process.pid):
            self.kill_message = f"{prefix} Job was killed"
        else:
            self.kill_message = f"{prefix} SIGKILL returned error. Job may not have been killed"

    def _check_memory(self) -> bool:
        usage = _tree_rss(self.process.pid)
        if usage <= self.job.mem_limit:
            return False
        prefix = (
            f"shell: Job '{self.job.command}' memory usage ({usage} bytes) exceeding "
            f"defined limit ({self.job.mem_limit} bytes)."
        )
        if _kill_group(self.process.pid):
            self.kill_message = f"{prefix} Job was killed"
        else:
            self.kill_message = f"{prefix} SIGKILL returned error. Job may not have been killed"
        return True

    def _close_stdin(self) -> None:
        stdin = self.process.stdin
        if stdin is not None and not stdin.closed:
            self.selector.unregister(stdin.fileno())
            with contextlib.suppress(OSError):
                stdin.close()

    def _close_pipes(self) -> None:
        for fd, (stream, _) in list(self._pipes.items()):
            self.selector.unregister(fd)
            stream.close()
        self._pipes.clear()

    def _close_all(self) -> None:
        self._close_stdin()
        self._close_pipes()
        if self._pidfd is not None:
            self.selector.unregister(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


def execute(request: ExecuteRequest, status: StatusHelper) -> ExecuteResponse:
    """One execution of Dkron's shell executor."""
    try:
        job = _parse(request)
    except ConfigError as exc:
        return ExecuteResponse(error=str(exc))
    # Debug, as Dkron's (a plain Printf that go-plugin's host logs at debug): at info,
    # every run cost a JSON log line here, its parse in the agent, and a lock both sides.
    log.debug("shell: going to run %s", job.command, extra={"job": request.job_name})
    try:
        process = subprocess.Popen(
            job.argv,
            stdin=subprocess.PIPE if job.payload else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=job.env,
            cwd=job.cwd,
            process_group=0,
            user=job.uid,
            group=job.gid,
            # Like Go's Credential: supplementary groups are dropped too.
            extra_groups=[] if job.uid is not None else None,
        )
    except OSError as exc:
        return ExecuteResponse(error=_start_error(job, exc))
    try:
        return _Supervisor(job, process, status, request.cancelled).run()
    except BaseException:
        # Never leave the job running behind a plugin bug.
        _kill_group(process.pid)
        process.wait()
        raise


def main() -> NoReturn:
    serve(execute)


if __name__ == "__main__":
    main()
