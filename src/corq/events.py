"""Lifecycle events and a job's attempt history: what operators read after the fact.

Every change of a job's state is written, in the same atomic step as the change, to a
bounded log in the broker (see "Operations" in docs/design.md); a reader follows it by an
opaque cursor and may resume from the last one it saw. Each job also keeps its own list of
attempts, which outlives the bounded log as long as the job's record lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from corq.types import JobId, QueueName, TaskName, WorkerId


class EventKind(StrEnum):
    """What happened to a job."""

    ENQUEUED = "enqueued"  #: accepted (queued, scheduled or waiting)
    STARTED = "started"  #: claimed by a worker: an attempt began
    PROGRESS = "progress"  #: the task reported progress
    SUCCEEDED = "succeeded"  #: returned a value
    FAILED = "failed"  #: an attempt raised or timed out (a retry follows: RETRIED)
    RETRIED = "retried"  #: queued again for another attempt (backoff ended, dead retried)
    SNOOZED = "snoozed"  #: `raise corq.Snooze(...)`, a struck task or an open breaker
    DEAD = "dead"  #: out of retries or unrunnable: in the dead letters
    CANCELLED = "cancelled"  #: cancelled (running or not)
    EXPIRED = "expired"  #: not started by its deadline, or dropped over a rate limit
    UPSTREAM_FAILED = "upstream_failed"  #: a dependency ended dead or cancelled
    RELEASED = "released"  #: given back unfinished (shutdown, a lost worker's reclaim)


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One entry of the events log."""

    #: Where this event is in the log: pass it back to read what came after.
    cursor: str
    #: When it happened (the clock of the step that wrote it).
    at_ms: int
    kind: EventKind
    queue: QueueName
    job_id: JobId
    task: TaskName
    #: The job's attempt number at the time (0 before its first start).
    attempt: int = 0
    #: The worker involved (started, ended or released it), if any.
    worker_id: WorkerId | None = None
    #: A short detail: the error line, the progress fraction, the snooze reason.
    detail: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EventPage:
    """What one read of the events log returns."""

    events: list[Event] = field(default_factory=list)
    #: The cursor to read on from (unchanged when nothing new came).
    cursor: str = ""
    #: True when events between the cursor given and the first one returned were trimmed
    #: away by the log's bound (the reader fell behind).
    gap: bool = False


class AttemptOutcome(StrEnum):
    """How one attempt ended."""

    RUNNING = "running"  #: not ended yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"  #: raised or timed out; retried
    DEAD = "dead"  #: raised or timed out with no retries left, or unrunnable
    CANCELLED = "cancelled"
    SNOOZED = "snoozed"
    RELEASED = "released"  #: given back unfinished (shutdown)
    LOST = "lost"  #: its worker died; the job was reclaimed


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempt:
    """One attempt of a job, as its history keeps it."""

    attempt: int
    worker_id: WorkerId | None
    started_at_ms: int
    ended_at_ms: int | None = None
    outcome: AttemptOutcome = AttemptOutcome.RUNNING
    #: The error line of a failed attempt, the reason of a snooze.
    error: str | None = None
