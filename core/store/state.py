"""The state machine behind Raft: jobs, execution history, launch records.

Everything here is deterministic and synchronous: commands carry their inputs, and
queries never copy more than the page they return. One instance lives on every
server; it is only mutated through :meth:`StoreState.apply`, from the Raft log.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from core.jobs.model import (
    CONCURRENCY_FORBID,
    EXECUTION_FIELDS,
    JOB_FIELDS,
    STATUS_FAILED,
    STATUS_PARTIALLY_FAILED,
    STATUS_SUCCESS,
    Execution,
    Job,
)
from core.store import history as history_codec
from core.store.codec import (
    CodecError,
    Streamed,
    decode_record,
    decode_time,
    encode_record,
    encode_time,
)
from core.store.commands import (
    AclBootstrap,
    AclPolicy,
    AclToken,
    Barrier,
    Batch,
    CloseLaunches,
    Command,
    DeleteAclPolicy,
    DeleteAclToken,
    DeleteExecutions,
    DeleteJob,
    FinishExecution,
    Launch,
    RecordLaunches,
    SetAclPolicy,
    SetAclToken,
    SetJob,
    SetNext,
    StartExecution,
)
from core.store.events import (
    EventBus,
    ExecutionFinished,
    ExecutionStarted,
    JobChanged,
    JobDeleted,
)
from core.store.index import JobIndex

__all__ = [
    "DEFAULT_MAX_HISTORY",
    "SORTABLE_JOB_FIELDS",
    "STATS_DAYS",
    "AlreadyFinished",
    "JobQuery",
    "NotFound",
    "QueryError",
    "StartResult",
    "StoreError",
    "StoreState",
]

DEFAULT_MAX_HISTORY = 100
# Days of execution counts kept for /v1/stats (Dkron's maximum ?days=).
STATS_DAYS = 365
DEFAULT_OUTPUT_LIMIT = 256_000
# Dkron's BuntDB indexes (the field tables' sortable rows); `id` is an alias of `name`.
SORTABLE_JOB_FIELDS = JOB_FIELDS.sortable
SORTABLE_EXECUTION_FIELDS = EXECUTION_FIELDS.sortable


class StoreError(Exception):
    """A command was refused; the message is what Dkron says."""


class AlreadyFinished(StoreError):
    """An execution reported done twice (stream and fallback, or old and new leader):
    the first report stands, so counters, retries and children happen once."""


class NotFound(StoreError):
    pass


class QueryError(ValueError):
    """A list query is malformed (bad sort key, bad range)."""


@dataclass(frozen=True, slots=True)
class StartResult:
    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class JobQuery:
    metadata: Mapping[str, str] = field(default_factory=dict)
    q: str = ""
    status: str | None = None
    disabled: str | None = None
    sort: str = "name"
    descending: bool = False
    start: int = 0
    end: int | None = None


class StoreState:
    def __init__(
        self, max_history: int = DEFAULT_MAX_HISTORY, output_limit: int = DEFAULT_OUTPUT_LIMIT
    ) -> None:
        self.max_history = max_history
        self.output_limit = output_limit
        self.jobs: dict[str, Job] = {}
        # Sorted names, one order per sortable field and the filter sets (list_jobs).
        self._index = JobIndex(SORTABLE_JOB_FIELDS)
        # job name -> its executions in start order, as compact records (core.store.history);
        # the tuple is replaced on each change, never changed, so a snapshot can keep it.
        self.histories: dict[str, tuple[bytes, ...]] = {}
        # job name -> ids of its executions in progress (replaced too; no empty sets)
        self.running: dict[str, frozenset[str]] = {}
        self.launches: dict[str, Launch] = {}
        # job name -> the latest scheduled time recorded for it (misfire handling)
        self.last_fire: dict[str, datetime] = {}
        # Executions finished per UTC day (days since 1970-01-01) -> (succeeded, failed),
        # the last STATS_DAYS days: Dkron 4.1's /v1/stats. Values are replaced, not changed.
        self.daily: dict[int, tuple[int, int]] = {}
        # The newest leader term that established leadership (see Barrier).
        self.leader_term = 0
        # ACLs (core.acl reads these): policies by name, tokens by accessor id and by
        # the hash of their secret.
        self.acl_policies: dict[str, AclPolicy] = {}
        self.acl_tokens: dict[str, AclToken] = {}
        self.acl_tokens_by_hash: dict[str, AclToken] = {}
        self.acl_bootstrapped = False
        # Job and execution events as the log is applied (on every server), so the
        # leader's scheduler follows the state machine rather than the API.
        self.events = EventBus()

    # -- commands --------------------------------------------------------------------------

    def apply(self, command: Command) -> Any:
        match command:
            case SetJob():
                return self._set_job(command.job, command.merge)
            case DeleteJob():
                return self._delete_job(command.name)
            case SetNext():
                for name, moment in command.updates:
                    job = self.jobs.get(name)
                    if job is not None:
                        self._put_job(dataclasses.replace(job, next=moment))
                return None
            case RecordLaunches():
                return self._record_launches(command.launches)
            case StartExecution():
                if 0 < command.term < self.leader_term:
                    return StartResult(False, f"stale leader term {command.term}")
                return self._start(command.execution, command.check_forbid)
            case FinishExecution():
                return self._finish(command.execution)
            case DeleteExecutions():
                return self._delete_executions(command.job_name)
            case CloseLaunches():
                for run_id in command.run_ids:
                    self.launches.pop(run_id, None)
                return None
            case Barrier():
                self.leader_term = max(self.leader_term, command.term)
                return None
            case SetAclPolicy():
                self.acl_policies[command.policy.name] = command.policy
                return command.policy
            case DeleteAclPolicy():
                if self.acl_policies.pop(command.name, None) is None:
                    raise NotFound(f"ACL policy {command.name!r} not found")
                return None
            case SetAclToken():
                self._store_token(command.token)
                return command.token
            case DeleteAclToken():
                token = self.acl_tokens.pop(command.accessor_id, None)
                if token is None:
                    raise NotFound(f"ACL token {command.accessor_id!r} not found")
                self.acl_tokens_by_hash.pop(token.secret_hash, None)
                return token
            case AclBootstrap():
                if self.acl_bootstrapped:
                    raise StoreError("ACL bootstrap already done (it can be done once per cluster)")
                self.acl_bootstrapped = True
                self.acl_policies.setdefault(command.policy.name, command.policy)
                self._store_token(command.token)
                return command.token
            case Batch():
                results: list[tuple[bool, Any]] = []
                for item in command.commands:
                    try:
                        results.append((True, self.apply(item)))
                    except StoreError as exc:
                        results.append((False, exc))
                return results
        raise StoreError(f"unknown command {type(command).__name__}")

    def _store_token(self, token: AclToken) -> None:
        previous = self.acl_tokens.get(token.accessor_id)
        if previous is not None:
            self.acl_tokens_by_hash.pop(previous.secret_hash, None)
        self.acl_tokens[token.accessor_id] = token
        self.acl_tokens_by_hash[token.secret_hash] = token

    def _set_job(self, job: Job, merge: bool) -> Job:
        from core.jobs.validation import merge_for_update

        job = dataclasses.replace(job, id=None)
        if job.parent_job and job.parent_job not in self.jobs:
            raise NotFound("specified parent job not found")
        stored = self.jobs.get(job.name)
        if stored is not None and merge:
            job = merge_for_update(stored, job)
        if job.processors is None:
            job.processors = {}
        old_parent = stored.parent_job if stored is not None else ""
        if old_parent != job.parent_job:
            if old_parent and old_parent in self.jobs:
                self._drop_dependent(old_parent, job.name)
            if job.parent_job:
                parent = self.jobs[job.parent_job]
                if job.name not in (parent.dependent_jobs or []):
                    dependents = [*(parent.dependent_jobs or []), job.name]
                    self._put_job(dataclasses.replace(parent, dependent_jobs=dependents))
        self._put_job(job)
        self.events.publish(JobChanged(job))
        return dataclasses.replace(job)

    # Every change of a stored job goes through these two: a stored Job is never
    # mutated in place but replaced, so a snapshot can hold the old object and the
    # indexes see each old/new pair.
    def _put_job(self, job: Job) -> None:
        self._index.put(self.jobs.get(job.name), job)
        self.jobs[job.name] = job

    def _remove_job(self, name: str) -> None:
        self._index.remove(self.jobs.pop(name))

    def _drop_dependent(self, parent_name: str, child: str) -> None:
        parent = self.jobs[parent_name]
        remaining = [d for d in parent.dependent_jobs or [] if d != child]
        self._put_job(dataclasses.replace(parent, dependent_jobs=remaining or None))

    def _delete_job(self, name: str) -> Job:
        job = self.jobs.get(name)
        if job is None:
            raise NotFound("job not found")
        if job.dependent_jobs:
            raise StoreError(
                "store: could not delete job with dependent jobs, delete children first"
            )
        if job.parent_job and job.parent_job in self.jobs:
            self._drop_dependent(job.parent_job, name)
        self._remove_job(name)
        # Exactly this job's history (Dkron's prefix delete also took `foobar`'s for `foo`).
        self.histories.pop(name, None)
        self.running.pop(name, None)
        self.last_fire.pop(name, None)
        for run_id in [r for r, launch in self.launches.items() if launch.job_name == name]:
            del self.launches[run_id]
        self.events.publish(JobDeleted(name))
        return job

    def _record_launches(self, launches: Iterable[Launch]) -> list[str]:
        """Record fires; returns the run ids that were new (a replayed fire is not)."""
        recorded = []
        for launch in launches:
            if launch.run_id in self.launches or launch.job_name not in self.jobs:
                continue
            if 0 < launch.term < self.leader_term:
                continue  # fired by a deposed leader
            previous = self.last_fire.get(launch.job_name)
            if previous is not None and launch.scheduled_at <= previous:
                continue  # this fire (or a later one) was already launched
            self.launches[launch.run_id] = launch
            self.last_fire[launch.job_name] = launch.scheduled_at
            recorded.append(launch.run_id)
        return recorded

    def _start(self, execution: Execution, check_forbid: bool) -> StartResult:
        job = self.jobs.get(execution.job_name)
        if job is None:
            return StartResult(False, f"job {execution.job_name!r} no longer exists")
        name = execution.job_name
        running = self.running.get(name, frozenset())
        if check_forbid and job.concurrency == CONCURRENCY_FORBID and running:
            return StartResult(
                False, f"job {job.name!r} is still running and its concurrency is forbid"
            )
        record = _record_of(execution)
        self._set_running(name, running | {execution.id})
        self._store_record(name, execution.id, record)
        if self.events.wanted(ExecutionStarted):
            self.events.publish(ExecutionStarted(execution))
        return StartResult(True)

    def _set_running(self, job_name: str, ids: frozenset[str]) -> None:
        if ids:
            self.running[job_name] = ids
        else:
            self.running.pop(job_name, None)

    def _store_record(self, job_name: str, execution_id: str, record: bytes) -> None:
        """Put an execution's record in its job's history (in its place if there, else
        last), trimmed to max_history."""
        history = self.histories.get(job_name, ())
        index = history_codec.find(history, execution_id)
        if index < 0:
            history = (*history, record)
        else:
            history = (*history[:index], record, *history[index + 1 :])
        self.histories[job_name] = self._trimmed(job_name, history)

    def _trimmed(self, job_name: str, history: tuple[bytes, ...]) -> tuple[bytes, ...]:
        excess = len(history) - self.max_history
        if excess <= 0:
            return history
        running = self.running.get(job_name, frozenset())
        dropped: list[int] = []  # the oldest records, never one of a run in progress
        for index, record in enumerate(history):
            if len(dropped) == excess:
                break
            if not (running and history_codec.record_id(record) in running):
                dropped.append(index)
        if not dropped:  # every record is of a run in progress
            return history
        if dropped[-1] == len(dropped) - 1:  # the common case: the oldest ones
            return history[len(dropped) :]
        skip = set(dropped)
        return tuple(r for i, r in enumerate(history) if i not in skip)

    def _finish(self, execution: Execution) -> tuple[Job, str]:
        job = self.jobs.get(execution.job_name)
        if job is None:
            raise NotFound("grpc: Received execution done for a deleted job")
        if len(execution.output) > self.output_limit:
            execution = dataclasses.replace(
                execution, output=execution.output[-self.output_limit :]
            )
        name = job.name
        previous = self.histories.get(name, ())
        index = history_codec.find(previous, execution.id)
        if index >= 0 and history_codec.is_finished(previous[index]):
            raise AlreadyFinished(f"execution {execution.id} of {job.name!r} already finished")
        record = _record_of(execution)
        running = self.running.get(name, frozenset()) - {execution.id}
        self._set_running(name, running)
        # Status over the history before trimming, as Dkron does.
        if index < 0:
            untrimmed = (*previous, record)
        else:
            untrimmed = (*previous[:index], record, *previous[index + 1 :])
        if execution.success:
            job = dataclasses.replace(
                job, success_count=job.success_count + 1, last_success=execution.finished_at
            )
        else:
            job = dataclasses.replace(
                job, error_count=job.error_count + 1, last_error=execution.finished_at
            )
        job.status = self._group_status(untrimmed, execution.group)
        self._put_job(job)
        self._count_day(execution)
        history = self._trimmed(name, untrimmed)
        self.histories[name] = history
        if execution.run_id and not self._launch_running(history, running, execution.run_id):
            self.launches.pop(execution.run_id, None)  # every target of the launch is done
        if self.events.wanted(ExecutionFinished):
            self.events.publish(ExecutionFinished(execution, dataclasses.replace(job)))
        return dataclasses.replace(job), job.status

    @staticmethod
    def _launch_running(history: tuple[bytes, ...], running: frozenset[str], run_id: str) -> bool:
        for key in running:
            index = history_codec.find(history, key)
            if index >= 0 and history_codec.run_id_of(history[index]) == run_id:
                return True
        return False

    @staticmethod
    def _group_status(history: Iterable[bytes], group: int) -> str:
        # Only each node's latest attempt counts: a run that succeeds on retry is a
        # success (Dkron counts the failed attempt too and reports partially_failed,
        # which also stops its children from running).
        latest: dict[bytes, tuple[int, bool]] = {}
        for node, attempt, success in history_codec.group_outcomes(history, group):
            current = latest.get(node)
            if current is None or attempt > current[0]:
                latest[node] = (attempt, success)
        failed = sum(1 for _, success in latest.values() if not success)
        if failed == 0:
            return STATUS_SUCCESS
        if failed == len(latest):
            return STATUS_FAILED
        return STATUS_PARTIALLY_FAILED

    def _delete_executions(self, job_name: str) -> Job:
        job = self.jobs.get(job_name)
        if job is None:
            raise NotFound("job not found")
        self.histories.pop(job_name, None)
        self.running.pop(job_name, None)
        job = dataclasses.replace(
            job, success_count=0, error_count=0, last_success=None, last_error=None
        )
        self._put_job(job)
        return dataclasses.replace(job)

    # -- queries ---------------------------------------------------------------------------

    def get_job(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def list_jobs(self, query: JobQuery) -> tuple[list[Job], int]:
        """One page of jobs and the filtered total (X-Total-Count), from the indexes:
        about the page's cost, not the number of jobs (see core.store.index)."""
        sort = "name" if query.sort in ("id", "") else query.sort
        if sort not in SORTABLE_JOB_FIELDS:
            raise QueryError(
                f"cannot sort by {query.sort!r}; use one of: id, {', '.join(SORTABLE_JOB_FIELDS)}"
            )
        names, total = self._index.page(
            self.jobs,
            sort,
            query.descending,
            query.metadata,
            query.status,
            query.disabled,
            query.q,
            lambda total: self._range(query, total),
        )
        return [self.jobs[n] for n in names], total

    @staticmethod
    def _range(query: JobQuery, total: int) -> tuple[int, int]:
        end = total if query.end is None else min(query.end, total)
        if query.start < 0 or (query.end is not None and query.end < 0):
            raise QueryError("_start and _end must not be negative")
        if query.start > end and query.start != 0:
            raise QueryError(f"_start ({query.start}) is past _end ({end})")
        return min(query.start, end), end

    def executions_of(self, job_name: str) -> Iterator[Execution]:
        """The job's executions in start order, decoded as they are iterated."""
        return (history_codec.decode(r, job_name) for r in self.histories.get(job_name, ()))

    def get_execution(self, job_name: str, execution_id: str) -> Execution | None:
        history = self.histories.get(job_name, ())
        index = history_codec.find(history, execution_id)
        return None if index < 0 else history_codec.decode(history[index], job_name)

    def running_executions(self) -> list[Execution]:
        found: list[Execution] = []
        for job_name, ids in self.running.items():
            history = self.histories.get(job_name, ())
            for key in ids:
                index = history_codec.find(history, key)
                if index >= 0:
                    found.append(history_codec.decode(history[index], job_name))
        return sorted(found, key=lambda e: (e.started_at is None, e.started_at))

    def _count_day(self, execution: Execution) -> None:
        # The day of the finish as the leader recorded it, so every server counts alike.
        if execution.finished_at is None:
            return
        day = _utc_day(execution.finished_at)
        succeeded, failed = self.daily.get(day, (0, 0))
        if execution.success:
            succeeded += 1
        else:
            failed += 1
        self.daily[day] = (succeeded, failed)
        if len(self.daily) > STATS_DAYS:
            for old in sorted(self.daily)[: len(self.daily) - STATS_DAYS]:
                del self.daily[old]

    def execution_stats(self, days: int, today: int) -> list[tuple[int, int, int]]:
        """(day, succeeded, failed) for the ``days`` UTC days up to ``today``, oldest
        first, zeros where nothing finished (Dkron's GetExecutionStats)."""
        return [(day, *self.daily.get(day, (0, 0))) for day in range(today - days + 1, today + 1)]

    # -- snapshots -------------------------------------------------------------------------
    #
    # A snapshot is a sequence of named sections of plain values (core.store.codec writes
    # them); a section this version does not know is refused rather than dropped.

    def capture(self) -> Capture:
        """The state as of now, for a snapshot written elsewhere (another thread) while
        this one moves on: copies of the containers only. Their values (jobs, history
        tuples, records, launches, ACL records) are never changed in place, only
        replaced, so the copies stay consistent. O(jobs) pointer copies."""
        return Capture(
            jobs=dict(self.jobs),
            histories=dict(self.histories),
            running=dict(self.running),
            launches=dict(self.launches),
            last_fire=dict(self.last_fire),
            leader_term=self.leader_term,
            acl_bootstrapped=self.acl_bootstrapped,
            acl_policies=dict(self.acl_policies),
            acl_tokens=dict(self.acl_tokens),
            daily=dict(self.daily),
        )

    def snapshot_sections(self) -> Iterator[tuple[str, Any]]:
        return self.capture().sections()

    def restore_sections(self, sections: Iterable[tuple[str, Any]]) -> None:
        """Replace the state with a snapshot's; raises CodecError for a bad one."""
        from core.store.codec import CodecError

        fresh = StoreState(self.max_history, self.output_limit)
        for name, value in sections:
            loader = _SECTION_LOADERS.get(name)
            if loader is None:
                raise CodecError(
                    f"snapshot section {name!r} is unknown (written by a newer dkron-py?)"
                )
            loader(fresh, value)
        self._adopt(fresh)

    def restore_legacy(self, data: Mapping[str, Any]) -> None:
        """The pickled snapshot dict of dkron-py before store format 1 (migration only)."""
        fresh = StoreState(self.max_history, self.output_limit)
        fresh.jobs = dict(data["jobs"])
        fresh.histories = {
            name: tuple(history_codec.encode(e) for e in history.values())
            for name, history in data["executions"].items()
        }
        fresh.running = {k: frozenset(v) for k, v in data["running"].items() if v}
        fresh.launches = dict(data["launches"])
        fresh.last_fire = dict(data["last_fire"])
        fresh.leader_term = int(data.get("leader_term", 0))
        self._adopt(fresh)

    def _adopt(self, fresh: StoreState) -> None:
        # Indexed before anything is swapped in (seconds at 1M jobs: wherever the restore
        # runs, the rebuild goes with it), then jobs and index change together.
        index = JobIndex(SORTABLE_JOB_FIELDS)
        index.rebuild(fresh.jobs)
        self.jobs = fresh.jobs
        self._index = index
        self.histories = fresh.histories
        self.running = fresh.running
        self.launches = fresh.launches
        self.last_fire = fresh.last_fire
        self.leader_term = fresh.leader_term
        self.acl_policies = fresh.acl_policies
        self.acl_tokens = fresh.acl_tokens
        self.acl_tokens_by_hash = {t.secret_hash: t for t in fresh.acl_tokens.values()}
        self.acl_bootstrapped = fresh.acl_bootstrapped
        self.daily = fresh.daily


def _record_of(execution: Execution) -> bytes:
    try:
        return history_codec.encode(execution)
    except (struct.error, OverflowError, TypeError, AttributeError) as exc:
        # Refused before anything changed, the same way on every server.
        raise StoreError(f"execution {execution.id!r} cannot be stored: {exc}") from None


@dataclass(frozen=True, slots=True)
class Capture:
    """What a snapshot holds, taken by :meth:`StoreState.capture`; :meth:`sections`
    encodes it lazily (section by section, item by item), so another thread can write
    it while the state goes on changing."""

    jobs: dict[str, Job]
    histories: dict[str, tuple[bytes, ...]]
    running: dict[str, frozenset[str]]
    launches: dict[str, Launch]
    last_fire: dict[str, datetime]
    leader_term: int
    acl_bootstrapped: bool
    acl_policies: dict[str, AclPolicy]
    acl_tokens: dict[str, AclToken]
    daily: dict[int, tuple[int, int]]

    def sections(self) -> Iterator[tuple[str, Any]]:
        jobs = self.jobs
        yield "jobs", Streamed(len(jobs), (encode_record(job) for job in jobs.values()))
        # Snapshots before compact records had "executions" (maps); that section still loads.
        histories = self.histories
        yield "history", Streamed(len(histories), ([n, h] for n, h in histories.items()))
        yield "running", {name: sorted(ids) for name, ids in self.running.items() if ids}
        launches = self.launches
        yield "launches", Streamed(len(launches), map(encode_record, launches.values()))
        yield "last_fire", {name: encode_time(t) for name, t in self.last_fire.items()}
        yield "leader_term", self.leader_term
        yield (
            "acl",
            {
                "bootstrapped": self.acl_bootstrapped,
                "policies": [encode_record(p) for p in self.acl_policies.values()],
                "tokens": [encode_record(t) for t in self.acl_tokens.values()],
            },
        )
        # Added within format 2 (snapshots without it load with no counts).
        yield "daily", [[day, ok, failed] for day, (ok, failed) in sorted(self.daily.items())]


def _load_jobs(state: StoreState, value: Any) -> None:

    if not isinstance(value, list):
        raise CodecError("snapshot jobs: expected a list")
    for index, item in enumerate(value):
        job: Job = decode_record(Job, item, f"snapshot job {index}")
        state.jobs[job.name] = job


def _load_executions(state: StoreState, value: Any) -> None:
    # The section of snapshots before compact records: each execution as a map.
    if not isinstance(value, list):
        raise CodecError("snapshot executions: expected a list")
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise CodecError("snapshot executions: expected [job name, executions]")
        name, records = item
        if not isinstance(records, list):
            raise CodecError(f"snapshot executions of {name!r}: expected a list")
        history: dict[str, bytes] = {}
        for pair in records:
            if not (type(pair) is list and len(pair) == 2 and type(pair[0]) is str):
                raise CodecError(f"snapshot executions of {name!r}: expected [id, execution]")
            execution = decode_record(Execution, pair[1], f"execution of {name!r}")
            history[pair[0]] = history_codec.encode(execution)
        state.histories[name] = tuple(history.values())


def _load_history(state: StoreState, value: Any) -> None:
    # [job name, [record, ...]] per job, records as core.store.history lays them out.
    if type(value) is not list:
        raise CodecError("snapshot history: expected a list")
    valid = history_codec.is_valid
    histories = state.histories
    for item in value:
        if not (type(item) is list and len(item) == 2 and type(item[0]) is str):
            raise CodecError("snapshot history: expected [job name, records]")
        name, records = item
        if type(records) is not list or not all(map(valid, records)):
            raise CodecError(f"snapshot history of {name!r}: a record is not one this reads")
        histories[name] = tuple(records)


def _load_running(state: StoreState, value: Any) -> None:

    if not isinstance(value, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in value.values()
    ):
        raise CodecError("snapshot running: expected a map of job name to execution ids")
    state.running = {str(name): frozenset(ids) for name, ids in value.items() if ids}


def _load_launches(state: StoreState, value: Any) -> None:

    if not isinstance(value, list):
        raise CodecError("snapshot launches: expected a list")
    for item in value:
        launch: Launch = decode_record(Launch, item, "snapshot launch")
        state.launches[launch.run_id] = launch


def _load_last_fire(state: StoreState, value: Any) -> None:

    if not isinstance(value, dict):
        raise CodecError("snapshot last_fire: expected a map")
    try:
        state.last_fire = {str(k): decode_time(v) for k, v in value.items()}
    except CodecError as exc:
        raise CodecError(f"snapshot last_fire: {exc}") from None


def _load_leader_term(state: StoreState, value: Any) -> None:

    if type(value) is not int or value < 0:
        raise CodecError("snapshot leader_term: expected a whole number")
    state.leader_term = value


def _load_acl(state: StoreState, value: Any) -> None:

    if not isinstance(value, dict) or type(value.get("bootstrapped")) is not bool:
        raise CodecError("snapshot acl: expected a map with 'bootstrapped'")
    state.acl_bootstrapped = value["bootstrapped"]
    for item in value.get("policies", []):
        policy: AclPolicy = decode_record(AclPolicy, item, "snapshot ACL policy")
        state.acl_policies[policy.name] = policy
    for item in value.get("tokens", []):
        token: AclToken = decode_record(AclToken, item, "snapshot ACL token")
        state.acl_tokens[token.accessor_id] = token


def _load_daily(state: StoreState, value: Any) -> None:
    if not isinstance(value, list) or not all(
        type(item) is list and len(item) == 3 and all(type(v) is int and v >= 0 for v in item)
        for item in value
    ):
        raise CodecError("snapshot daily: expected [day, succeeded, failed] counts")
    state.daily = {day: (ok, failed) for day, ok, failed in value}


def _utc_day(moment: datetime) -> int:
    """Days since 1970-01-01 of ``moment`` in UTC."""
    return (moment.astimezone(UTC).date() - _EPOCH_DAY).days


_EPOCH_DAY = date(1970, 1, 1)


_SECTION_LOADERS: dict[str, Callable[[StoreState, Any], None]] = {
    "jobs": _load_jobs,
    "executions": _load_executions,
    "history": _load_history,
    "running": _load_running,
    "launches": _load_launches,
    "last_fire": _load_last_fire,
    "leader_term": _load_leader_term,
    "acl": _load_acl,
    "daily": _load_daily,
}
