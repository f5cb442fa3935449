"""What a running task can know about its own job (for idempotence: job_id and attempt),
and, in a workflow, how its parents ended (``current_job().parent_results()``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from corq.errors import ArgumentError, CorqError, JobCancelledError
from corq.types import JobId, QueueName, TaskName
from corq.workflow import ParentOutcome

T = TypeVar("T")


class CancelFlag:
    """Raised once when an operator cancels a job; read by its thread (an attribute read
    is atomic, and a job costs a few dozen bytes, not an Event's lock and condition)."""

    __slots__ = ("raised",)

    def __init__(self) -> None:
        self.raised = False


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
    #: The schedule that fired it (None for a job sent otherwise).
    schedule: str | None = None
    #: The tick it was fired for, aware in UTC (None for a job sent otherwise); the same
    #: on every attempt and every scheduler, so a task can key its effects on it.
    tick: datetime | None = None
    #: The workflow it belongs to (a plain ``depends_on`` job's is its own id), or None.
    workflow: str | None = None
    #: Reads its parents (the worker's, bound to this job); None outside a worker.
    _parents: Callable[[], Coroutine[Any, Any, list[ParentOutcome]]] | None = field(
        default=None, repr=False, compare=False
    )
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False, compare=False)
    _cancel: CancelFlag | None = field(default=None, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """True once an operator cancelled this job: a plain function should return soon
        (its thread is abandoned after ``cancel_grace_s``); a coroutine is cancelled."""
        return self._cancel is not None and self._cancel.raised

    def check_cancelled(self) -> None:
        """Raise JobCancelledError when the job was cancelled (a plain function's way out
        of a loop: ``for row in rows: current_job().check_cancelled(); ...``)."""
        if self.cancelled:
            raise JobCancelledError(f"job {self.job_id} was cancelled")

    async def parents(self) -> list[ParentOutcome]:
        """How each job this one depends on ended, in edge order (a chain link's one
        parent; a chord callback's header, in order; a ``depends_on`` list, in order),
        with its decoded result. Read from the broker 1,000 at a time; empty for a job
        outside a workflow."""
        if self.workflow is None:
            return []
        if self._parents is None:
            raise CorqError("parents() is only available inside a task run by a worker")
        return await self._parents()

    async def parent_results(self) -> dict[JobId, Any]:
        """``{parent job id: its result}``; a parent that did not succeed (reached on an
        ``allow_failed`` edge) or whose record is gone maps to an `UpstreamError` saying
        how it ended, never raised (as ``asyncio.gather(return_exceptions=True)`` does)."""
        return {parent.job_id: parent.value() for parent in await self.parents()}

    def parents_sync(self) -> list[ParentOutcome]:
        """`parents` for plain (thread pool) tasks."""
        return self._run_sync(self.parents())

    def parent_results_sync(self) -> dict[JobId, Any]:
        """`parent_results` for plain (thread pool) tasks."""
        return self._run_sync(self.parent_results())

    def _run_sync(self, call: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            call.close()
            raise CorqError("parents_sync() is only available inside a task run by a worker")
        return asyncio.run_coroutine_threadsafe(call, self._loop).result(PARENTS_TIMEOUT_S)


#: The running job as a plain tuple: id, task, queue, attempt, enqueued_at_ms, schedule,
#: tick_ms, workflow.
JobTuple = tuple[str, str, str, int, int, str | None, int | None, str | None]
#: Records progress for the job given: one per worker, not one per job (it is on the hot
#: path), so it is told which job reports.
Reporter = Callable[[JobTuple, float], Coroutine[Any, Any, bool]]
#: Reads the parents of the job given (one per worker, like the reporter).
ParentsReader = Callable[[JobTuple], Coroutine[Any, Any, list[ParentOutcome]]]
#: The running job, how it reports progress, the worker's loop, and how it reads its
#: parents. One ContextVar set per job: it is on the hot path.
_Current = tuple[
    JobTuple,
    Reporter | None,
    asyncio.AbstractEventLoop | None,
    ParentsReader | None,
    CancelFlag | None,
]
_current: ContextVar[_Current] = ContextVar("corq_current_job")


def current_job() -> JobContext:
    """The job being run by this task call; raises CorqError outside a job."""
    try:
        job, _, loop, parents, cancel = _current.get()
    except LookupError:
        raise CorqError("current_job() is only available inside a task run by a worker") from None
    job_id, task, queue, attempt, enqueued_at_ms, schedule, tick_ms, workflow = job
    return JobContext(
        job_id=job_id,
        task=task,
        queue=queue,
        attempt=attempt,
        enqueued_at_ms=enqueued_at_ms,
        schedule=schedule,
        tick=None if tick_ms is None else datetime.fromtimestamp(tick_ms / 1000, UTC),
        workflow=workflow,
        _parents=None if parents is None else functools.partial(parents, job),
        _loop=loop,
        _cancel=cancel,
    )


def bind_job(
    job: JobTuple,
    report: Reporter | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    parents: ParentsReader | None = None,
    cancel: CancelFlag | None = None,
) -> None:
    """Called by the worker before running a task body (`cancel`: set when an operator
    cancels the job)."""
    _current.set((job, report, loop, parents, cancel))


def _progress_call(progress: object) -> tuple[Coroutine[Any, Any, bool], asyncio.AbstractEventLoop]:
    if not isinstance(progress, int | float) or not 0.0 <= progress <= 1.0:
        raise ArgumentError(f"progress must be a number from 0.0 to 1.0, got {progress!r}")
    try:
        job, report, loop, _, _ = _current.get()
    except LookupError:
        report = loop = None
    if report is None or loop is None:
        raise CorqError("set_progress() is only available inside a task run by a worker")
    return report(job, float(progress)), loop


#: Longest a plain function waits for its progress report to be recorded.
PROGRESS_TIMEOUT_S = 10.0
#: Longest a plain function waits for its parents to be read.
PARENTS_TIMEOUT_S = 60.0


async def set_progress(progress: float) -> bool:
    """Record how far the current job has got (0.0 to 1.0); shown by `corq job` and the API.

    Progress is telemetry and never fails the job: returns False when it was not recorded
    (the broker is unreachable, or the worker no longer holds the job)."""
    call, _ = _progress_call(progress)
    return await call


def set_progress_sync(progress: float) -> bool:
    """`set_progress` for plain (thread pool) tasks; False when not recorded in time."""
    call, loop = _progress_call(progress)
    future = asyncio.run_coroutine_threadsafe(call, loop)
    try:
        return future.result(timeout=PROGRESS_TIMEOUT_S)
    except Exception:  # timed out, loop closed, broker down: telemetry, not the job's failure
        future.cancel()
        return False
