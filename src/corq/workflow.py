"""The vocabulary of workflows: how a job's parents feed it, when batch callbacks run, a
workflow's state, and how a parent that did not succeed is handed to its child.

The canvases that build workflows are in `corq.canvas`, their compilation to one graph in
`corq.workflow_plan`; the broker's side is the ``Workflows`` port (``corq.backends.base``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

from corq.errors import CorqError
from corq.job import JobStatus
from corq.types import JobId, QueueName


class Inputs(StrEnum):
    """How a job's parents' results feed its arguments (stored in its record)."""

    #: Its one parent's result is prepended to its arguments (a chain's link).
    FIRST = "first"
    #: The list of its parents' results, in edge order, is prepended (a chord's callback,
    #: the link after a group).
    LIST = "list"
    #: The batch summary (a `BatchSummary`) is prepended (a batch callback).
    SUMMARY = "summary"


class Callback(StrEnum):
    """When a batch callback runs (the values of ``corq.backends.base.BatchEvent``)."""

    #: Once every member succeeded.
    SUCCESS = "success"
    #: Once every member ended, whatever its state.
    COMPLETE = "complete"
    #: Once the first member ends dead.
    FAILURE = "failure"


class WorkflowState(StrEnum):
    """Where a workflow is, as a whole."""

    #: Some job has not ended yet (or an open batch is not closed).
    RUNNING = "running"
    #: Every job succeeded.
    SUCCEEDED = "succeeded"
    #: Every job ended, and some ended dead or upstream_failed.
    FAILED = "failed"
    #: Every job ended, some were cancelled, and none ended dead.
    CANCELLED = "cancelled"


def workflow_state(*, finished: bool, counts: Mapping[str, int]) -> WorkflowState:
    """The state of a workflow from its ends counted by terminal state.

    A dead job makes it failed even when it was then cancelled, since the failure is what
    someone must look at; cancelled jobs without a dead one mean somebody stopped it (an
    upstream_failed job then only follows from the cancel).
    """
    if not finished:
        return WorkflowState.RUNNING
    if counts.get(JobStatus.DEAD, 0):
        return WorkflowState.FAILED
    if counts.get(JobStatus.CANCELLED, 0):
        return WorkflowState.CANCELLED
    if counts.get(JobStatus.UPSTREAM_FAILED, 0):
        return WorkflowState.FAILED
    return WorkflowState.SUCCEEDED


class BatchSummary(TypedDict):
    """What a batch callback gets as its first argument: how the members ended."""

    #: Members (the batch's jobs that are not callbacks).
    total: int
    #: Ends so far by terminal state (``succeeded``, ``dead``...), only states seen.
    counts: dict[str, int]
    #: Members that ended dead, cancelled or upstream_failed (the first 1,000).
    failed_ids: list[JobId]
    #: How many members did, in all.
    failed: int


class UpstreamError(CorqError):
    """A parent of this job did not succeed.

    Never raised by corq: it is the value a failed parent has in ``parent_results()`` (and
    in an ``inputs`` list on an ``allow_failed`` edge), the way ``asyncio.gather`` with
    ``return_exceptions=True`` hands back exceptions, so a job can look at every parent and
    ``raise`` one if it wants to fail too.
    """

    def __init__(
        self,
        job_id: JobId,
        queue: QueueName,
        status: JobStatus | None,
        error: str | None,
    ) -> None:
        if status is None:
            message = f"parent job {job_id} ({queue}) has no record any more (expired or purged)"
        else:
            message = f"parent job {job_id} ({queue}) ended {status}: {error or 'no error'}"
        super().__init__(message)
        #: The parent's id and queue.
        self.job_id = job_id
        self.queue = queue
        #: How it ended; None when its record is gone.
        self.status = status
        #: Its error, as stored.
        self.error = error

    def __reduce__(self) -> tuple[type[UpstreamError], tuple[Any, ...]]:
        return (type(self), (self.job_id, self.queue, self.status, self.error))


@dataclass(frozen=True, kw_only=True, slots=True)
class ParentOutcome:
    """How one parent of the running job ended (``current_job().parents()``)."""

    job_id: JobId
    queue: QueueName
    #: None when its record is gone (its result expired, or it was purged).
    status: JobStatus | None
    #: Its decoded result when it succeeded, else None.
    result: Any = None
    #: Its error when it did not succeed.
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    def value(self) -> Any:
        """Its result, or an `UpstreamError` describing why there is none."""
        if self.succeeded:
            return self.result
        return UpstreamError(self.job_id, self.queue, self.status, self.error)
