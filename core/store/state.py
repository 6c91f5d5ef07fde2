"""The state machine behind Raft: jobs, execution history, launch records.

Everything here is deterministic and synchronous: commands carry their inputs, and
queries never copy more than the page they return. One instance lives on every
server; it is only mutated through :meth:`StoreState.apply`, from the Raft log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
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
from core.store.codec import CodecError, decode_record, decode_time, encode_record, encode_time
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
    "AlreadyFinished",
    "JobQuery",
    "NotFound",
    "QueryError",
    "StartResult",
    "StoreError",
    "StoreState",
]

DEFAULT_MAX_HISTORY = 100
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
        # job name -> execution id -> execution, in start order
        self.executions: dict[str, dict[str, Execution]] = {}
        self.running: dict[str, set[str]] = {}
        self.launches: dict[str, Launch] = {}
        # job name -> the latest scheduled time recorded for it (misfire handling)
        self.last_fire: dict[str, datetime] = {}
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
        self.executions.pop(name, None)
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
        running = self.running.setdefault(execution.job_name, set())
        if check_forbid and job.concurrency == CONCURRENCY_FORBID and running:
            return StartResult(
                False, f"job {job.name!r} is still running and its concurrency is forbid"
            )
        history = self.executions.setdefault(execution.job_name, {})
        history[execution.id] = execution
        running.add(execution.id)
        self._trim(execution.job_name, history)
        if self.events.wanted(ExecutionStarted):
            self.events.publish(ExecutionStarted(execution))
        return StartResult(True)

    def _trim(self, job_name: str, history: dict[str, Execution]) -> None:
        excess = len(history) - self.max_history
        if excess <= 0:
            return
        running = self.running.get(job_name, set())
        for key in list(history):
            if excess <= 0:
                break
            if key not in running:  # never drop the record of a run in progress
                del history[key]
                excess -= 1

    def _finish(self, execution: Execution) -> tuple[Job, str]:
        job = self.jobs.get(execution.job_name)
        if job is None:
            raise NotFound("grpc: Received execution done for a deleted job")
        if len(execution.output) > self.output_limit:
            execution = dataclasses.replace(
                execution, output=execution.output[-self.output_limit :]
            )
        history = self.executions.setdefault(execution.job_name, {})
        stored = history.get(execution.id)
        if stored is not None and stored.finished_at is not None:
            raise AlreadyFinished(f"execution {execution.id} of {job.name!r} already finished")
        history[execution.id] = execution
        running = self.running.get(job.name, set())
        running.discard(execution.id)
        if execution.success:
            job = dataclasses.replace(
                job, success_count=job.success_count + 1, last_success=execution.finished_at
            )
        else:
            job = dataclasses.replace(
                job, error_count=job.error_count + 1, last_error=execution.finished_at
            )
        job.status = self._group_status(history.values(), execution.group)
        self._put_job(job)
        self._trim(job.name, history)
        if execution.run_id and not any(
            history[key].run_id == execution.run_id for key in running if key in history
        ):
            self.launches.pop(execution.run_id, None)  # every target of the launch is done
        if self.events.wanted(ExecutionFinished):
            self.events.publish(ExecutionFinished(execution, dataclasses.replace(job)))
        return dataclasses.replace(job), job.status

    @staticmethod
    def _group_status(executions: Iterable[Execution], group: int) -> str:
        # Only each node's latest attempt counts: a run that succeeds on retry is a
        # success (Dkron counts the failed attempt too and reports partially_failed,
        # which also stops its children from running).
        latest: dict[str, Execution] = {}
        for execution in executions:
            if execution.group != group or execution.finished_at is None:
                continue
            current = latest.get(execution.node_name)
            if current is None or execution.attempt > current.attempt:
                latest[execution.node_name] = execution
        failed = sum(1 for e in latest.values() if not e.success)
        if failed == 0:
            return STATUS_SUCCESS
        if failed == len(latest):
            return STATUS_FAILED
        return STATUS_PARTIALLY_FAILED

    def _delete_executions(self, job_name: str) -> Job:
        job = self.jobs.get(job_name)
        if job is None:
            raise NotFound("job not found")
        self.executions.pop(job_name, None)
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
        return iter(self.executions.get(job_name, {}).values())

    def get_execution(self, job_name: str, execution_id: str) -> Execution | None:
        return self.executions.get(job_name, {}).get(execution_id)

    def running_executions(self) -> list[Execution]:
        found: list[Execution] = []
        for job_name, ids in self.running.items():
            history = self.executions.get(job_name, {})
            found.extend(history[i] for i in ids if i in history)
        return sorted(found, key=lambda e: (e.started_at is None, e.started_at))

    # -- snapshots -------------------------------------------------------------------------
    #
    # A snapshot is a sequence of named sections of plain values (core.store.codec writes
    # them); a section this version does not know is refused rather than dropped.

    def snapshot_sections(self) -> Iterator[tuple[str, Any]]:
        yield "jobs", [encode_record(job) for job in self.jobs.values()]
        # Each execution with its key, so loading need not recompute it.
        executions = [
            [name, [[key, encode_record(e)] for key, e in history.items()]]
            for name, history in self.executions.items()
        ]
        yield "executions", executions
        yield "running", {name: sorted(ids) for name, ids in self.running.items() if ids}
        yield "launches", [encode_record(launch) for launch in self.launches.values()]
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
        fresh.executions = {k: dict(v) for k, v in data["executions"].items()}
        fresh.running = {k: set(v) for k, v in data["running"].items()}
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
        self.executions = fresh.executions
        self.running = fresh.running
        self.launches = fresh.launches
        self.last_fire = fresh.last_fire
        self.leader_term = fresh.leader_term
        self.acl_policies = fresh.acl_policies
        self.acl_tokens = fresh.acl_tokens
        self.acl_tokens_by_hash = {t.secret_hash: t for t in fresh.acl_tokens.values()}
        self.acl_bootstrapped = fresh.acl_bootstrapped


def _load_jobs(state: StoreState, value: Any) -> None:

    if not isinstance(value, list):
        raise CodecError("snapshot jobs: expected a list")
    for index, item in enumerate(value):
        job: Job = decode_record(Job, item, f"snapshot job {index}")
        state.jobs[job.name] = job


def _load_executions(state: StoreState, value: Any) -> None:

    if not isinstance(value, list):
        raise CodecError("snapshot executions: expected a list")
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise CodecError("snapshot executions: expected [job name, executions]")
        name, records = item
        if not isinstance(records, list):
            raise CodecError(f"snapshot executions of {name!r}: expected a list")
        history: dict[str, Execution] = {}
        for pair in records:
            if not (type(pair) is list and len(pair) == 2 and type(pair[0]) is str):
                raise CodecError(f"snapshot executions of {name!r}: expected [id, execution]")
            history[pair[0]] = decode_record(Execution, pair[1], f"execution of {name!r}")
        state.executions[name] = history


def _load_running(state: StoreState, value: Any) -> None:

    if not isinstance(value, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in value.values()
    ):
        raise CodecError("snapshot running: expected a map of job name to execution ids")
    state.running = {str(name): set(ids) for name, ids in value.items()}


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


_SECTION_LOADERS: dict[str, Callable[[StoreState, Any], None]] = {
    "jobs": _load_jobs,
    "executions": _load_executions,
    "running": _load_running,
    "launches": _load_launches,
    "last_fire": _load_last_fire,
    "leader_term": _load_leader_term,
    "acl": _load_acl,
}
