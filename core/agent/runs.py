"""The node side of exactly-once launches: leader-term fencing, runs keyed by
(run_id, attempt) that outlive the stream that started them, and reporting a result
no stream took back to the leader."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from core.jobs.model import Execution, Job
from core.plugins.output import OutputBuffer
from core.plugins.runtime import PluginRuntime

__all__ = [
    "AgentStateError",
    "ReportDone",
    "Run",
    "RunKey",
    "RunTable",
    "Subscription",
    "TermFence",
]

log = logging.getLogger("dkron.agent")

RunKey = tuple[str, int]
ReportDone = Callable[[Execution], Awaitable[bool]]

REPORT_FIRST_DELAY = 0.5
REPORT_MAX_DELAY = 5.0
TERM_FILE = "agent-term"
# Raft terms grow by one per election. A term beyond these bounds is not a leader's: it
# is refused, never stored (and a stored one, from before this check, is discarded).
MAX_TERM = 2**31
MAX_TERM_JUMP = 1_000_000


class AgentStateError(ValueError):
    """The agent's state directory holds something it cannot read."""


class TermFence:
    """The highest leader term this node has seen; runs from older terms are refused.

    Term 0 means unfenced (a single node, or a Go Dkron leader): always admitted and
    never raises the mark. With a ``state_dir`` the mark survives restarts, so a
    restarted agent still refuses a deposed leader.
    """

    def __init__(self, state_dir: Path | None = None) -> None:
        self._path = None if state_dir is None else Path(state_dir) / TERM_FILE
        self.highest = self._load()

    def _load(self) -> int:
        if self._path is None:
            return 0
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = self._path.read_text(encoding="ascii")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentStateError(f"cannot read the leader term mark {self._path}: {exc}") from exc
        value = text.strip()
        if not value.isdigit():
            # Starting from 0 would let a deposed leader launch again: refuse to start.
            raise AgentStateError(
                f"{self._path} does not hold a leader term (found {text[:40]!r}); "
                "write the cluster's current Raft term into it, or delete it to start unfenced"
            )
        mark = int(value)
        if mark > MAX_TERM:
            # No real cluster gets there: an unauthenticated caller wrote it (possible
            # before node calls were authenticated). Fencing resumes with the next leader.
            log.warning(
                "discarding the implausible leader term mark %d in %s (no Raft cluster "
                "reaches it); the next leader's term sets it again",
                mark,
                self._path,
            )
            with contextlib.suppress(OSError):
                self._path.unlink()
            return 0
        return mark

    def refusal(self, term: int) -> str | None:
        """Admit ``term`` (raising the mark if it is newer) or say why it is refused."""
        if term == 0:
            return None
        if term > MAX_TERM or (self.highest and term > self.highest + MAX_TERM_JUMP):
            return (
                f"implausible leader term {term} (this node has seen term {self.highest}): "
                "refused, and not recorded"
            )
        if term < self.highest:
            return (
                f"stale leader term {term} (this node has seen term {self.highest}): "
                "refusing a run from a deposed leader"
            )
        if term > self.highest:
            self.highest = term
            self._save(term)
        return None

    def _save(self, term: int) -> None:
        if self._path is None:
            return
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="ascii") as out:
                out.write(f"{term}\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            # The mark still holds in memory; refusing the new leader would be worse.
            log.error("cannot persist leader term %d to %s: %s", term, self._path, exc)


class Subscription:
    """One stream attached to a run: pending output (coalesced), then the final result."""

    def __init__(self, run: Run, limit: int) -> None:
        self.run = run
        self._pending = OutputBuffer(limit)
        self._final = False
        self._wake = asyncio.Event()

    def _push(self, chunk: bytes) -> None:
        self._pending.write(chunk)
        self._wake.set()

    def _finish(self) -> None:
        self._final = True
        self._wake.set()

    async def next(self) -> bytes | None:
        """The output since the last call, or ``None`` once the final result is ready."""
        while True:
            if len(self._pending):
                chunk = self._pending.getvalue()
                self._pending = OutputBuffer(self._pending.limit)
                return chunk
            if self._final:
                return None
            self._wake.clear()
            await self._wake.wait()

    def taken(self) -> None:
        """The stream handed the final result to the leader."""
        self.run._settle(self, delivered=True)

    def close(self) -> None:
        """The stream is gone (idempotent); if it owed the final result, it did not deliver."""
        self.run._settle(self, delivered=False)


class Run:
    """One plugin run on this node, independent of any stream."""

    def __init__(
        self,
        execution: Execution,
        key: RunKey | None,
        output_limit: int,
        on_undelivered: Callable[[Run], None],
        on_delivered: Callable[[Run], None],
    ) -> None:
        self.execution = execution
        self.key = key
        self.final: Execution | None = None
        self.delivered = False
        self.report: asyncio.Task[None] | None = None
        self.undelivered = False  # no stream took the final result when it was due
        self._limit = output_limit
        self._output: OutputBuffer | None = OutputBuffer(output_limit)
        self._streaming: set[Subscription] = set()  # attached, final not out yet
        self._owing: set[Subscription] = set()  # given the final, not yet confirmed
        self._on_undelivered = on_undelivered
        self._on_delivered = on_delivered

    @property
    def streams(self) -> int:
        return len(self._streaming) + len(self._owing)

    def output_so_far(self) -> bytes:
        if self.final is not None:
            return self.final.output
        return b"" if self._output is None else self._output.getvalue()

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, self._limit)
        if self.final is None:
            self._streaming.add(subscription)
        else:
            subscription._finish()
            self._owing.add(subscription)
        return subscription

    def append(self, chunk: bytes) -> None:
        if self._output is not None:
            self._output.write(chunk)
        for subscription in self._streaming:
            subscription._push(chunk)

    def finish(self, final: Execution) -> None:
        self.final = final
        self._output = None  # final.output is the output from now on
        streams, self._streaming = self._streaming, set()
        for subscription in streams:
            subscription._finish()
        self._owing |= streams
        if not self._owing:
            self._give_up_streams()

    def _settle(self, subscription: Subscription, *, delivered: bool) -> None:
        self._streaming.discard(subscription)
        if subscription not in self._owing:
            return
        self._owing.discard(subscription)
        if delivered:
            if not self.delivered:
                self.delivered = True
                self._on_delivered(self)
        elif not self._owing and not self.delivered:
            self._give_up_streams()

    def _give_up_streams(self) -> None:
        if not self.undelivered:
            self.undelivered = True
            self._on_undelivered(self)


class RunTable:
    """Runs in progress and recent results, deduplicated by (run_id, attempt)."""

    def __init__(
        self,
        runtime: PluginRuntime,
        *,
        report_done: ReportDone | None,
        max_results: int,
        result_ttl: float,
        report_deadline: float,
    ) -> None:
        if max_results < 1:
            raise ValueError(f"max_results must be at least 1, not {max_results}")
        if result_ttl <= 0:
            raise ValueError(f"result_ttl must be positive, not {result_ttl}")
        if report_deadline < 0:
            raise ValueError(f"report_deadline must not be negative, not {report_deadline}")
        self._runtime = runtime
        self._report_done = report_done
        self._max_results = max_results
        self._result_ttl = result_ttl
        self._report_deadline = report_deadline
        self._running: dict[RunKey, Run] = {}
        self._by_id: dict[str, Run] = {}
        self._results: OrderedDict[RunKey, tuple[float, Run]] = OrderedDict()
        self._reports: set[asyncio.Task[None]] = set()
        self._closed = False
        self.active: dict[str, asyncio.Task[None]] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        self._kill_reason = "the agent is shutting down"

    # -- lookup ----------------------------------------------------------------------------

    def find(self, key: RunKey) -> Run | None:
        run = self._running.get(key)
        if run is not None:
            return run
        self._prune()
        entry = self._results.get(key)
        return None if entry is None else entry[1]

    def running(self) -> list[Execution]:
        return [dataclasses.replace(run.execution) for run in self._by_id.values()]

    def get(self, execution_id: str) -> Run | None:
        return self._by_id.get(execution_id)

    def _prune(self) -> None:
        horizon = asyncio.get_running_loop().time() - self._result_ttl
        while self._results:
            finished_at, _ = next(iter(self._results.values()))
            if len(self._results) <= self._max_results and finished_at > horizon:
                break
            self._results.popitem(last=False)

    # -- running ---------------------------------------------------------------------------

    def start(
        self, execution: Execution, key: RunKey | None, job: Job, timeout: float | None
    ) -> Run:
        run = Run(
            execution,
            key,
            self._runtime.settings.output_limit,
            self._undelivered,
            self._cancel_report,
        )
        task = asyncio.create_task(self._execute(run, job, timeout), name=f"run-{job.name}")
        if key is not None:
            self._running[key] = run
        self._by_id[execution.id] = run
        self.active[execution.id] = task
        self.idle.clear()
        return run

    async def _execute(self, run: Run, job: Job, timeout: float | None) -> None:
        cancelled = False
        try:
            outcome = await self._runtime.execute(
                job.executor,
                job.name,
                dict(job.executor_config or {}),
                on_output=lambda chunk, _is_error: run.append(chunk),
                timeout=timeout,
            )
            success, output = outcome.success, outcome.output
        except asyncio.CancelledError:
            # Only shutting down cancels a run (the plugin kills the job's process group);
            # streams still get a result, with the output so far.
            cancelled = True
            success, output = False, f"execution killed: {self._kill_reason}\n".encode()
            output += run.output_so_far()
        except Exception as exc:
            log.exception("execution %s failed inside the agent", run.execution.id)
            success, output = False, f"agent error: {exc}\n".encode() + run.output_so_far()
        final = dataclasses.replace(
            run.execution, success=success, output=output, finished_at=datetime.now(UTC)
        )
        execution_id = run.execution.id
        if self._by_id.get(execution_id) is run:
            del self._by_id[execution_id]
            self.active.pop(execution_id, None)
        if run.key is not None:
            self._running.pop(run.key, None)
            self._results[run.key] = (asyncio.get_running_loop().time(), run)
            self._results.move_to_end(run.key)
            self._prune()
        if not self.active:
            self.idle.set()
        run.finish(final)
        if cancelled:
            raise asyncio.CancelledError

    # -- reporting -------------------------------------------------------------------------

    def _undelivered(self, run: Run) -> None:
        assert run.final is not None
        if self._report_done is None:
            log.warning(
                "execution %s (run %r attempt %d) finished with no leader stream attached; "
                "no report channel, the result waits for adoption",
                run.final.id,
                run.final.run_id,
                run.final.attempt,
            )
            return
        if self._closed:
            log.error(
                "execution %s (run %r attempt %d) finished after shutdown began; "
                "its result was not delivered to the leader",
                run.final.id,
                run.final.run_id,
                run.final.attempt,
            )
            return
        task = asyncio.create_task(self._report(run), name=f"report-{run.final.id}")
        run.report = task
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    def _cancel_report(self, run: Run) -> None:
        # A stream (e.g. a new leader adopting the run) took the result: stop resending.
        if run.report is not None and not run.report.done():
            run.report.cancel()

    async def _report(self, run: Run) -> None:
        final = run.final
        assert final is not None and self._report_done is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._report_deadline
        delay = REPORT_FIRST_DELAY
        attempts = 0
        last_error = "returned False"
        while True:
            attempts += 1
            try:
                async with asyncio.timeout_at(deadline):
                    delivered = await self._report_done(final)
            except TimeoutError:
                delivered, last_error = False, "timed out"
            except Exception as exc:  # any failure is retried
                delivered, last_error = False, f"{type(exc).__name__}: {exc}"
            else:
                last_error = "returned False"
            if delivered:
                run.delivered = True
                log.info("execution %s reported to the leader (attempt %d)", final.id, attempts)
                return
            if loop.time() + delay > deadline:
                log.error(
                    "giving up reporting execution %s (job %r, run %r attempt %d) after %d "
                    "attempt(s) over %.0fs: last report %s; the leader may record it as lost",
                    final.id,
                    final.job_name,
                    final.run_id,
                    final.attempt,
                    attempts,
                    self._report_deadline,
                    last_error,
                )
                return
            log.warning(
                "reporting execution %s failed (%s); retrying in %.1fs", final.id, last_error, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, REPORT_MAX_DELAY)

    async def kill_all(self, reason: str) -> int:
        """Cancel every run in progress (its plugin kills the job) and wait until each
        has its final result, saying ``reason``; returns how many there were."""
        tasks = list(self.active.values())
        self._kill_reason = reason
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def close(self, grace: float = 0.0) -> None:
        """Stop report retries (after up to ``grace`` seconds for them to get through);
        running plugin runs are left to the runtime's close."""
        self._closed = True
        if grace > 0 and self._reports:
            await asyncio.wait(list(self._reports), timeout=grace)
        reports = list(self._reports)
        if reports:
            log.error("shutting down with %d execution report(s) undelivered", len(reports))
        for task in reports:
            task.cancel()
        for task in reports:
            with contextlib.suppress(asyncio.CancelledError):
                await task
