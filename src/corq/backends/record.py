"""The job record: the one list of its fields that both brokers derive from.

A job's stored fields, their kinds and their roles are declared once, in ``JOB_FIELDS``.
Brokers never name a field by position: the Redis scripts get the field names from a Lua
include generated from this list and exchange records as name/value pairs, and SQLite
builds its column lists from it. What a field holds is read through its :class:`Kind`, so
a damaged value is caught and named the same way on every broker.

Adding a field to the job record touches two places (see docs/design.md):

1. ``JOB_FIELDS`` here, and the attribute of the classes its roles name (:class:`NewJob`
   and :class:`ClaimedJob` below, for ``NEW`` and ``CLAIMED``);
2. :class:`corq.job.Job`, when the field is ``SHOWN``;

plus a migration of the SQLite schema (a Redis hash takes a new field as it is). A unit
test checks that the classes and the roles agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from corq.flow import Dedupe
from corq.limits import MAX_JOB_ID_CHARS as MAX_JOB_ID_CHARS
from corq.limits import PRIORITY_MAX as PRIORITY_MAX
from corq.limits import PRIORITY_MIN as PRIORITY_MIN
from corq.types import JobId, QueueName, TaskName


class Kind(StrEnum):
    """What a field holds, and so how a broker stores, checks and decodes it.

    The values are the names the Lua include uses for the same kinds.
    """

    #: UTF-8 text (decoded with replacement when another program wrote bytes).
    TEXT = "text"
    #: Opaque bytes (payload, result).
    BYTES = "bytes"
    #: An integer that may be negative (priority, timestamps in ms).
    INT = "int"
    #: An integer that is never negative (attempt, failures, deaths, fence).
    COUNT = "count"
    #: A finite number (progress).
    NUMBER = "number"
    #: 0 or 1.
    FLAG = "flag"
    #: A :class:`~corq.job.JobStatus` value.
    STATUS = "status"
    #: Space-separated words, read as a tuple (the death log).
    WORDS = "words"


class Role(Enum):
    """Where a field travels, beyond the broker's own record."""

    #: The producer sets it: a :class:`NewJob` attribute, written at enqueue.
    NEW = "new"
    #: Handed to the worker: a :class:`ClaimedJob` attribute.
    CLAIMED = "claimed"
    #: Shown to people: a :class:`~corq.job.Job` attribute (get_job, list_dead).
    SHOWN = "shown"
    #: Must be readable before a claim, an outcome or a reclaim acts on the record; a
    #: record where it is not goes to the dead letters as damaged.
    CHECKED = "checked"


@dataclass(frozen=True, slots=True)
class JobField:
    """One field of the job record."""

    name: str
    kind: Kind
    #: What the field reads as when the record lacks it (None: optional).
    default: object
    roles: frozenset[Role]
    #: The column's declaration in SQLite's jobs table (type and constraints).
    sql: str

    def has(self, role: Role) -> bool:
        """True when the field plays `role`."""
        return role in self.roles


def _field(name: str, kind: Kind, default: object, sql: str, *roles: Role) -> JobField:
    return JobField(name, kind, default, frozenset(roles), sql)


_N, _C, _S, _K = Role.NEW, Role.CLAIMED, Role.SHOWN, Role.CHECKED

#: Every field of the job record common to the brokers, in the order reads list them.
#: (Each broker adds its own ordering key: Redis a ready ``score``, SQLite a ``seq``.)
JOB_FIELDS: tuple[JobField, ...] = (
    _field("id", Kind.TEXT, "", "TEXT NOT NULL", _N, _C, _S, _K),
    _field("task", Kind.TEXT, "", "TEXT NOT NULL", _N, _C, _S),
    _field("queue", Kind.TEXT, "", "TEXT NOT NULL", _N, _C, _S),
    _field("status", Kind.STATUS, "queued", "TEXT NOT NULL", _S),
    _field("payload", Kind.BYTES, b"", "BLOB NOT NULL", _N, _C, _S, _K),
    _field("priority", Kind.INT, 0, "INTEGER NOT NULL DEFAULT 0", _N, _C, _S, _K),
    _field("attempt", Kind.COUNT, 0, "INTEGER NOT NULL DEFAULT 0", _C, _S, _K),
    _field("failures", Kind.COUNT, 0, "INTEGER NOT NULL DEFAULT 0", _C, _S, _K),
    _field("deaths", Kind.COUNT, 0, "INTEGER NOT NULL DEFAULT 0", _C, _S, _K),
    _field("fence", Kind.COUNT, 0, "INTEGER NOT NULL DEFAULT 0", _C, _K),
    _field("enqueued_at_ms", Kind.INT, 0, "INTEGER NOT NULL", _N, _C, _S, _K),
    _field("run_at_ms", Kind.INT, 0, "INTEGER NOT NULL", _N, _C, _S, _K),
    _field("started_at_ms", Kind.INT, None, "INTEGER", _S),
    _field("finished_at_ms", Kind.INT, None, "INTEGER", _S),
    _field("worker_id", Kind.TEXT, None, "TEXT", _S),
    _field("result", Kind.BYTES, None, "BLOB", _S),
    _field("error", Kind.TEXT, None, "TEXT", _S),
    _field("traceback", Kind.TEXT, None, "TEXT", _S),
    _field("progress", Kind.NUMBER, None, "REAL", _S),
    _field("death_log", Kind.WORDS, (), "TEXT NOT NULL DEFAULT ''", _S, _K),
    _field("suspect", Kind.FLAG, 0, "INTEGER NOT NULL DEFAULT 0", _C, _K),
    _field("isolated", Kind.FLAG, 0, "INTEGER NOT NULL DEFAULT 0"),
    _field("schedule", Kind.TEXT, None, "TEXT", _N, _C, _S),
    _field("tick_ms", Kind.INT, None, "INTEGER", _N, _C, _S),
    _field("workflow", Kind.TEXT, None, "TEXT", _N, _C, _S),
    _field("inputs", Kind.TEXT, None, "TEXT", _N, _C, _S),
    _field("notify", Kind.FLAG, 0, "INTEGER NOT NULL DEFAULT 0", _C),
    # Flow control (see docs/design.md, "Flow control").
    _field("key", Kind.TEXT, None, "TEXT", _N, _C, _S),
    _field("unique_key", Kind.TEXT, None, "TEXT", _N, _S),
    _field("start_by_ms", Kind.INT, None, "INTEGER", _N, _S),
    # Written by the broker: how long the unique key stays taken after the end (from the
    # enqueue's Dedupe), the lane the job waits in ('' = the plain ready set, else
    # ``<task>\x1f<key>``), and whether the running attempt holds concurrency slots.
    _field("unique_for_ms", Kind.INT, 0, "INTEGER NOT NULL DEFAULT 0"),
    _field("lane", Kind.TEXT, "", "TEXT NOT NULL DEFAULT ''"),
    _field("limited", Kind.FLAG, 0, "INTEGER NOT NULL DEFAULT 0"),
)

#: Fields by name.
FIELDS_BY_NAME: dict[str, JobField] = {f.name: f for f in JOB_FIELDS}


def names(role: Role) -> tuple[str, ...]:
    """The names of the fields that play `role`, in record order."""
    return tuple(f.name for f in JOB_FIELDS if f.has(role))


#: Names by role (the column lists and Lua field lists are built from these).
NEW_FIELDS = names(Role.NEW)
CLAIMED_FIELDS = names(Role.CLAIMED)
SHOWN_FIELDS = names(Role.SHOWN)
CHECKED_FIELDS = names(Role.CHECKED)


@dataclass(frozen=True, kw_only=True, slots=True)
class NewJob:
    """A job as a producer hands it over."""

    #: Unique id (at most MAX_JOB_ID_CHARS); enqueueing an id that exists is a no-op (False).
    id: JobId
    #: Registered task name.
    task: TaskName
    #: Queue to wait in.
    queue: QueueName
    #: Encoded arguments.
    payload: bytes
    #: Higher runs first (PRIORITY_MIN..PRIORITY_MAX).
    priority: int = 0
    #: When the producer enqueued it.
    enqueued_at_ms: int
    #: When it may start; greater than enqueued_at_ms means ``scheduled`` (the delayed set).
    run_at_ms: int
    #: The schedule that fired it, and the tick (ms) it fired for; None for other jobs.
    schedule: str | None = None
    tick_ms: int | None = None
    #: The workflow it belongs to (None for a plain job); set on every job of a
    #: ``NewWorkflow`` (see ``corq.backends.base.Workflows``).
    workflow: str | None = None
    #: How its parents' results feed its arguments (a ``corq.workflow.Inputs`` value):
    #: None (they do not; ``parent_results()`` still reads them), ``first`` (a chain link:
    #: its one parent's result is the first argument), ``list`` (a chord callback: the list
    #: of its parents' results, in edge order), ``summary`` (a batch callback: the batch
    #: summary).
    inputs: str | None = None
    #: Its fairness key (the task's key function of its arguments); with the task's rules
    #: stored in the broker it picks the lane (see ``FlowControl``).
    key: str | None = None
    #: Live jobs in one queue never share a unique key (see ``dedupe`` for what a
    #: duplicate does); None: no uniqueness.
    unique_key: str | None = None
    #: Deadline of the first start: a job not started by then ends ``expired``.
    start_by_ms: int | None = None
    #: Not stored: what the enqueue does about a taken ``unique_key``, debounce and
    #: cooldown (None: a duplicate keeps the existing job, no debounce, no cooldown).
    dedupe: Dedupe | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimedJob:
    """A job a worker now holds and must finish, fail or release."""

    #: Job id.
    id: JobId
    #: Registered task name ("" when the record has none: the worker dead-letters it).
    task: TaskName
    #: Queue it came from.
    queue: QueueName
    #: Encoded arguments.
    payload: bytes
    #: This attempt's number (1 on the first run).
    attempt: int
    #: Earlier attempts that raised or timed out.
    failures: int
    #: Earlier attempts whose worker (or own process) died.
    deaths: int
    #: Claim number; passed back when the outcome is recorded.
    fence: int
    #: When the producer enqueued it.
    enqueued_at_ms: int
    #: When it became due (enqueue time, or the end of its delay).
    run_at_ms: int
    #: Priority it was enqueued with.
    priority: int = 0
    #: Taken from the suspects: run it in a sandbox (a child process), see module docstring.
    suspect: bool = False
    #: The schedule that fired it and its tick (ms), None for other jobs.
    schedule: str | None = None
    tick_ms: int | None = None
    #: Its workflow, and how its parents' results feed its arguments (see NewJob).
    workflow: str | None = None
    inputs: str | None = None
    #: Some workflow watches this job's end (an external parent of a ``depends_on``): the
    #: worker settles workflows right after recording its outcome.
    notify: bool = False
    #: Its fairness key, if any (a batched task may group its calls by it).
    key: str | None = None
