"""What a running task can know about its own job (for idempotence: job_id and attempt)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from corq.errors import CorqError
from corq.types import JobId, QueueName, TaskName


@dataclass(frozen=True, kw_only=True, slots=True)
class JobContext:
    """The job the current task call belongs to."""

    #: Job id: the same across attempts, so tasks can make their effects idempotent.
    job_id: JobId
    #: Task name.
    task: TaskName
    #: Queue it came from.
    queue: QueueName
    #: This attempt's number, from 1.
    attempt: int
    #: When it was enqueued (ms since the epoch).
    enqueued_at_ms: int


_current: ContextVar[JobContext] = ContextVar("corq_current_job")


def current_job() -> JobContext:
    """The job being run by this task call; raises CorqError outside a job."""
    try:
        return _current.get()
    except LookupError:
        raise CorqError("current_job() is only available inside a task run by a worker") from None


def set_current_job(context: JobContext) -> None:
    _current.set(context)
