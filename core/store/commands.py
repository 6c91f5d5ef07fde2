"""The replicated commands. Each carries every input it needs (times included), so
applying the log is deterministic on every server and on replay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.jobs.model import Execution, Job

__all__ = [
    "ACL_TOKEN_TYPES",
    "AclBootstrap",
    "AclPolicy",
    "AclToken",
    "Barrier",
    "Batch",
    "CloseLaunches",
    "Command",
    "DeleteAclPolicy",
    "DeleteAclToken",
    "DeleteExecutions",
    "DeleteJob",
    "FinishExecution",
    "Launch",
    "RecordLaunches",
    "SetAclPolicy",
    "SetAclToken",
    "SetJob",
    "SetNext",
    "StartExecution",
]


@dataclass(frozen=True, slots=True)
class SetJob:
    job: Job
    # Restore and toggle replace counters outright; the API merges (Dkron's SetJob rules).
    merge: bool = True


@dataclass(frozen=True, slots=True)
class DeleteJob:
    name: str


@dataclass(frozen=True, slots=True)
class SetNext:
    """The scheduler's computed next fire times, batched: ``(job name, next or None)``."""

    updates: tuple[tuple[str, datetime | None], ...]


@dataclass(frozen=True, slots=True)
class Launch:
    """A scheduled fire, committed before it is dispatched.

    ``run_id`` is derived from (job, scheduled time), so the same fire can never be
    recorded twice; the cluster milestone fences on ``term`` and dedupes on ``run_id``.
    """

    run_id: str
    job_name: str
    scheduled_at: datetime
    group: int
    term: int = 0


@dataclass(frozen=True, slots=True)
class RecordLaunches:
    launches: tuple[Launch, ...]


@dataclass(frozen=True, slots=True)
class StartExecution:
    """Dkron's SetExecution for a starting run; refused for a busy ``forbid`` job."""

    execution: Execution
    check_forbid: bool = True
    term: int = 0  # the dispatching leader's term; refused once a newer leader took over


@dataclass(frozen=True, slots=True)
class FinishExecution:
    """Dkron's ExecutionDone (store side)."""

    execution: Execution


@dataclass(frozen=True, slots=True)
class DeleteExecutions:
    job_name: str


@dataclass(frozen=True, slots=True)
class CloseLaunches:
    """Launches that will not run (job disabled, expired, forbid): a new leader must
    not dispatch them again."""

    run_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Barrier:
    """Applied by a new leader: once it is, every entry before it is applied too (the
    leader's view of the log is complete). It also raises the state's leader term,
    so launches and starts from a deposed leader that reach the log later (a
    follower forwards commands) are refused."""

    term: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    """Several starts or finishes in one log entry (one replication round for a burst
    of fires). Each is applied on its own: one refusal does not refuse the others."""

    commands: tuple[StartExecution | FinishExecution, ...]


ACL_TOKEN_TYPES = ("client", "management")


@dataclass(frozen=True, slots=True)
class AclPolicy:
    """A named ACL policy: Dkron Pro's rules document, kept as its canonical JSON text
    (``{"path": {"<glob>": {"capabilities": [...]}}}``; see ``core.acl``)."""

    name: str
    rules: str


@dataclass(frozen=True, slots=True)
class AclToken:
    """An ACL token. Only the SHA-256 of its secret is stored, never the secret."""

    accessor_id: str
    secret_hash: str
    name: str
    type: str  # one of ACL_TOKEN_TYPES
    policies: tuple[str, ...]
    create_time: datetime


@dataclass(frozen=True, slots=True)
class SetAclPolicy:
    policy: AclPolicy


@dataclass(frozen=True, slots=True)
class DeleteAclPolicy:
    name: str


@dataclass(frozen=True, slots=True)
class SetAclToken:
    token: AclToken


@dataclass(frozen=True, slots=True)
class DeleteAclToken:
    """Revokes a token on every server as soon as it is applied."""

    accessor_id: str


@dataclass(frozen=True, slots=True)
class AclBootstrap:
    """The cluster's first management token and the default policy; refused once done."""

    token: AclToken
    policy: AclPolicy


Command = (
    SetJob
    | DeleteJob
    | SetNext
    | RecordLaunches
    | StartExecution
    | FinishExecution
    | DeleteExecutions
    | CloseLaunches
    | Barrier
    | Batch
    | SetAclPolicy
    | DeleteAclPolicy
    | SetAclToken
    | DeleteAclToken
    | AclBootstrap
)
