"""What a workflow job is given by its parents, read before it runs.

A chain link gets its parent's result prepended to its arguments, a chord callback the
list of its parents' results, a batch callback the batch's summary (the job's ``inputs``).
Parents are read from the broker a page of 1,000 at a time (``parent_outcomes``), so a
10,000-job fan-in never makes one huge call, and each result is decoded with the worker's
serializer.

An input that cannot be built is the job's own dead end, never a crash of the worker: a
parent whose record is gone (its result expired, or it was purged), a result that does not
decode, a batch that no longer exists, or an input bigger than the payload limit (what the
job would be sent with, had a producer sent it) raises `InputError`, which the runner
records as the job's dead letter.

`ParentReader` also serves ``current_job().parents()``: every parent decoded, whatever it
ended as.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from corq.aio import Backoff
from corq.backends.base import BATCH, ClaimedJob, Workflows
from corq.backends.base import ParentOutcome as StoredOutcome
from corq.context import JobTuple
from corq.errors import BrokerDataError, BrokerError, CorqError
from corq.job import JobStatus
from corq.limits import error_line
from corq.serializers import Serializer
from corq.types import JobId, QueueName
from corq.workflow import Inputs, ParentOutcome, UpstreamError
from corq.workflows import as_summary

#: What a result that does not decode raises.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError)


class InputError(CorqError):
    """The input a workflow job is given by its parents cannot be built (the job ends
    dead with this message)."""


#: A parent as a child process gets it: job id, queue, status, result, error.
ParentTuple = tuple[str, str, str | None, bytes | None, str | None]


def decode_parents(
    outcomes: Sequence[StoredOutcome], serializer: Serializer
) -> list[ParentOutcome]:
    """Each parent with its result decoded (BrokerDataError for one that does not)."""
    return [_decoded(o, serializer) for o in outcomes]


def _decoded(stored: StoredOutcome, serializer: Serializer) -> ParentOutcome:
    result = None
    if stored.status is JobStatus.SUCCEEDED:
        try:
            result = serializer.loads(stored.result or b"null")
        except _DECODE_ERRORS as exc:
            raise BrokerDataError(
                f"parent job {stored.job_id} ({stored.queue}) succeeded but its result "
                f"cannot be decoded with the {serializer.name} serializer: {error_line(exc)}"
            ) from exc
    return ParentOutcome(
        job_id=stored.job_id,
        queue=stored.queue,
        status=stored.status,
        result=result,
        error=stored.error,
    )


def as_tuples(outcomes: Sequence[StoredOutcome]) -> tuple[ParentTuple, ...]:
    """Parents as plain data for a child process's message."""
    return tuple(
        (o.job_id, o.queue, None if o.status is None else o.status.value, o.result, o.error)
        for o in outcomes
    )


def from_tuples(parents: Sequence[ParentTuple]) -> list[StoredOutcome]:
    """What `as_tuples` made, back as stored outcomes (in the child)."""
    return [
        StoredOutcome(
            job_id=job_id,
            queue=queue,
            status=None if status is None else JobStatus(status),
            result=result,
            error=error,
        )
        for job_id, queue, status, result, error in parents
    ]


class ParentReader:
    """Reads and decodes a job's parents for one worker."""

    def __init__(self, backend: Workflows, serializer: Serializer, max_payload_bytes: int) -> None:
        self.backend = backend
        self.serializer = serializer
        self.max_payload_bytes = max_payload_bytes

    async def stored(
        self,
        job_id: JobId,
        queue: QueueName,
        *,
        max_bytes: int | None = None,
        workflow: str | None = None,
    ) -> list[StoredOutcome]:
        """Every parent as stored, in edge order; InputError once their results pass
        `max_bytes` (None: no bound). `workflow` (the job's, from its claim) saves the
        broker looking it up."""
        outcomes: list[StoredOutcome] = []
        size = 0
        while True:
            page = await self.backend.parent_outcomes(
                job_id, queue, len(outcomes), BATCH, workflow_id=workflow
            )
            outcomes += page
            if max_bytes is not None:
                size += sum(len(o.result or b"") for o in page)
                if size > max_bytes:
                    raise InputError(
                        f"its parents' results are over {max_bytes:,} bytes "
                        f"(settings.max_payload_bytes / CORQ_MAX_PAYLOAD_BYTES) after "
                        f"{len(outcomes):,} parent(s)"
                    )
            if len(page) < BATCH:
                return outcomes

    async def parents(self, job: JobTuple) -> list[ParentOutcome]:
        """``current_job().parents()`` of a job running in this worker."""
        job_id, _, queue = job[:3]
        return self.decode_all(await self.stored(job_id, queue))

    def decode_all(self, outcomes: Sequence[StoredOutcome]) -> list[ParentOutcome]:
        return decode_parents(outcomes, self.serializer)

    async def input_for(self, job: ClaimedJob, inputs: Inputs) -> Any:
        """The value prepended to the job's arguments; InputError when it cannot be built
        (a refused read included). An outage is waited out: the job is held meanwhile, and
        a shutdown releases it unstarted (its body never began)."""
        backoff = Backoff(f"read the parents of job {job.id}")
        while True:
            try:
                value = await self.input_of(
                    job.id, job.queue, job.workflow, inputs, len(job.payload)
                )
            except BrokerDataError as exc:
                raise InputError(f"cannot read its parents: {exc}") from exc
            except BrokerError as exc:
                await backoff.wait(exc)
                continue
            backoff.reset()
            return value

    async def for_child(self, job: ClaimedJob) -> tuple[ParentTuple, ...] | None:
        """What ``current_job().parents()`` reads in a child process (which has no broker
        connection): read here, up to the payload limit; None beyond it or when the broker
        refuses (the child says so if the task asks)."""
        if job.workflow is None:
            return ()
        backoff = Backoff(f"read the parents of job {job.id}")
        while True:
            try:
                stored = await self.stored(
                    job.id, job.queue, max_bytes=self.max_payload_bytes, workflow=job.workflow
                )
            except (InputError, BrokerDataError):
                return None
            except BrokerError as exc:
                await backoff.wait(exc)
                continue
            backoff.reset()
            return as_tuples(stored)

    async def input_of(
        self, job_id: JobId, queue: QueueName, workflow: str | None, inputs: Inputs, payload: int
    ) -> Any:
        """The value prepended to the job's arguments; InputError when it cannot be built.
        `payload` is the size of the job's own payload (the two together must fit the
        payload limit)."""
        room = self.max_payload_bytes - payload
        if inputs is Inputs.SUMMARY:
            return await self._summary(workflow)
        if inputs is Inputs.FIRST:
            page = await self.backend.parent_outcomes(job_id, queue, 0, 1, workflow_id=workflow)
            if not page:
                raise InputError("it takes its parent's result, but it has no parent")
            return self._value(page[0], room)
        outcomes = await self.stored(job_id, queue, max_bytes=room, workflow=workflow)
        return [self._value(o, room) for o in outcomes]

    async def _summary(self, workflow: str | None) -> Any:
        summary = None if workflow is None else await self.backend.batch_summary(workflow)
        if summary is None:
            raise InputError(f"its batch {workflow} no longer exists, so it has no summary")
        return as_summary(summary)

    def _value(self, stored: StoredOutcome, room: int) -> Any:
        """One parent's contribution: its result, or an UpstreamError when it did not
        succeed (reached only on an allow_failed edge)."""
        if stored.status is None:
            raise InputError(
                f"its parent job {stored.job_id} ({stored.queue}) has no record any more "
                "(its result expired or it was purged), so its input cannot be built"
            )
        if stored.status is not JobStatus.SUCCEEDED:
            return UpstreamError(stored.job_id, stored.queue, stored.status, stored.error)
        if len(stored.result or b"") > room:
            raise InputError(
                f"its input from parent job {stored.job_id} is {len(stored.result or b''):,} "
                f"bytes, over the payload limit of {self.max_payload_bytes:,} with its own "
                "arguments (settings.max_payload_bytes / CORQ_MAX_PAYLOAD_BYTES)"
            )
        try:
            return self.serializer.loads(stored.result or b"null")
        except _DECODE_ERRORS as exc:
            raise InputError(
                f"the result of its parent job {stored.job_id} cannot be decoded with the "
                f"{self.serializer.name} serializer: {error_line(exc)}"
            ) from exc
