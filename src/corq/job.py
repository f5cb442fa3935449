"""The job record, its states and the legal moves between them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from corq.types import JobId, QueueName, TaskName, WorkerId


class JobStatus(StrEnum):
    """Where a job is in its life; see docs/design.md for the diagram."""

    SCHEDULED = "scheduled"  #: waiting for its time (delay, eta)
    WAITING = "waiting"  #: waiting for its dependencies (workflows)
    QUEUED = "queued"  #: ready to be claimed by a worker
    RUNNING = "running"  #: claimed by a worker
    SUCCEEDED = "succeeded"  #: done, result stored
    FAILED = "failed"  #: last attempt raised; another attempt is scheduled
    DEAD = "dead"  #: out of attempts (or unrunnable); kept in the dead letters
    CANCELLED = "cancelled"  #: cancelled before it finished
    UPSTREAM_FAILED = "upstream_failed"  #: a dependency ended dead or cancelled
    EXPIRED = "expired"  #: not started by its deadline (or dropped over a rate limit)


#: States a job never leaves (except dead → queued, by an explicit retry of a dead letter).
TERMINAL_STATES = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.DEAD,
        JobStatus.CANCELLED,
        JobStatus.UPSTREAM_FAILED,
        JobStatus.EXPIRED,
    }
)

_S = JobStatus
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # → expired: not started by its `expires` deadline (found by promotion or a claim), or
    # popped over a dropping rate limit (queued only).
    _S.SCHEDULED: frozenset({_S.QUEUED, _S.CANCELLED, _S.EXPIRED}),
    _S.WAITING: frozenset({_S.QUEUED, _S.SCHEDULED, _S.UPSTREAM_FAILED, _S.CANCELLED, _S.EXPIRED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED, _S.DEAD, _S.EXPIRED}),
    # running → queued: released at shutdown or reclaimed after its worker died;
    # running → dead: out of retries, unknown task, bad payload, or a poison job;
    # running → scheduled: snoozed (the attempt did not count).
    _S.RUNNING: frozenset(
        {_S.SUCCEEDED, _S.FAILED, _S.DEAD, _S.QUEUED, _S.CANCELLED, _S.SCHEDULED}
    ),
    _S.FAILED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.SUCCEEDED: frozenset(),
    _S.DEAD: frozenset({_S.QUEUED}),
    _S.CANCELLED: frozenset(),
    _S.UPSTREAM_FAILED: frozenset(),
    _S.EXPIRED: frozenset(),
}


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    """True when a job may move from `source` to `target`."""
    return target in TRANSITIONS[source]


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """A snapshot of one job's record as the broker holds it."""

    #: Unique id, chosen by the producer (random unless given).
    id: JobId
    #: Registered task name the worker looks up; nothing is imported from it.
    task: TaskName
    #: Queue the job waits in.
    queue: QueueName
    #: Current state.
    status: JobStatus
    #: Encoded ``{"args": [...], "kwargs": {...}}``.
    payload: bytes
    #: Higher runs first within a queue.
    priority: int = 0
    #: Attempts started so far (1 on the first run).
    attempt: int = 0
    #: Attempts that ended in an exception or a timeout.
    failures: int = 0
    #: Attempts that ended because their worker died (crash, kill -9, cut off).
    deaths: int = 0
    #: When the producer handed the job over.
    enqueued_at_ms: int = 0
    #: Earliest time the job may start.
    run_at_ms: int = 0
    #: When the current or last attempt started.
    started_at_ms: int | None = None
    #: When the job reached a final state.
    finished_at_ms: int | None = None
    #: Worker holding (or that last held) the job.
    worker_id: WorkerId | None = None
    #: Encoded return value, once succeeded.
    result: bytes | None = None
    #: One-line error of the last failed attempt (``ValueError: boom``).
    error: str | None = None
    #: Formatted traceback of the last failed attempt.
    traceback: str | None = None
    #: Last progress the task reported, 0.0 to 1.0.
    progress: float | None = None
    #: Ids of the workers that died while running it (evidence for poison jobs).
    death_log: tuple[str, ...] = ()
    #: The schedule that fired it, and the tick (ms since the epoch) it fired for.
    schedule: str | None = None
    tick_ms: int | None = None
    #: The workflow it belongs to, if any.
    workflow: str | None = None
    #: How its parents' results feed its arguments (``first``, ``list``, ``summary``).
    inputs: str | None = None
    #: Its fairness key (the task's ``key=`` function of its arguments), if any.
    key: str | None = None
    #: Its ``unique_key``, if any.
    unique_key: str | None = None
    #: The deadline of its first start (``expires``): not started by then, it ends expired.
    start_by_ms: int | None = None
