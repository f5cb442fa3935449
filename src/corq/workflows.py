"""Workflow handles: waiting for a workflow's result, its status, cancelling it, and adding
to an open batch.

`WorkflowHandle` waits for results without polling (each output job's done signal),
reports status, and cancels; `BatchHandle` adds jobs to an open batch and closes it. How a
workflow is sent is `corq.workflow_sender`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from corq.backends.base import BATCH, ResultShape, WorkflowNode, WorkflowRecord
from corq.backends.base import BatchSummary as StoredSummary
from corq.canvas import Canvas, Node
from corq.errors import ArgumentError, BrokerDataError, ResultTimeoutError, WorkflowNotFoundError
from corq.job import TERMINAL_STATES, JobStatus
from corq.producer_checks import check_timeout
from corq.types import JobId, QueueName, TaskName
from corq.workflow import BatchSummary, Callback, WorkflowState, workflow_state

if TYPE_CHECKING:  # for annotations only: the client is the layer above
    from corq.client import Client, JobHandle

log = logging.getLogger(__name__)
R = TypeVar("R")
#: A handle's result type: covariant, like a spec's.
R_co = TypeVar("R_co", covariant=True)

#: Output jobs waited for at once by ``result()`` (each wait holds a broker subscription).
_WAITERS = 16
#: Longest pause between two reads of a workflow whose jobs all ended but that is not
#: finished yet (an open batch, or the last end still being settled).
_FINISH_POLL_MAX_S = 0.5


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowJobInfo:
    """One job of a workflow, as ``status()`` reports it."""

    id: JobId
    task: TaskName
    queue: QueueName
    #: Its record's state; None when the record is gone (expired or purged).
    state: JobStatus | None
    #: The jobs it waits for, in edge order.
    parents: tuple[JobId, ...]
    #: Its error; an upstream_failed job's names the parent that failed it.
    error: str | None
    #: When it runs, for a batch callback; None for other jobs.
    callback: Callback | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowStatus:
    """Where a workflow is: as a whole, counted, and (when asked) job by job."""

    id: str
    #: What built it: ``chain``, ``group``, ``chord``, ``dag``, ``batch``, ``depends``.
    kind: str
    state: WorkflowState
    #: Jobs in it (callbacks included) and how many have ended.
    total: int
    ended: int
    #: Ends by terminal state (only states seen).
    counts: dict[str, int]
    #: An open batch not closed yet.
    open: bool
    created_at_ms: int
    finished_at_ms: int | None
    #: The first job that ended dead, cancelled or upstream_failed, and its error.
    first_failure: tuple[JobId, str] | None
    #: Every job, in the order they were added (empty when not asked for).
    jobs: tuple[WorkflowJobInfo, ...] = ()


class WorkflowHandle(Generic[R_co]):
    """A reference to a workflow, returned by enqueueing one; R is what ``result()``
    returns (a chain's and a chord's: its last job's; a group's: the list of its members')."""

    __slots__ = ("_client", "_jobs", "_node_steps", "id")

    def __init__(
        self,
        client: Client,
        workflow_id: str,
        *,
        jobs: Sequence[JobHandle[Any]] = (),
        node_steps: Sequence[Sequence[int]] = (),
    ) -> None:
        self._client = client
        #: ``wf_<hex>``, or the dependent job's id for a plain ``depends_on``.
        self.id = workflow_id
        self._jobs = tuple(jobs)
        self._node_steps = tuple(tuple(s) for s in node_steps)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id}>"

    @property
    def jobs(self) -> tuple[JobHandle[Any], ...]:
        """Handles on its jobs, in the order the workflow was planned (only on the handle
        that sent it; ``status()`` lists them for any handle)."""
        return self._jobs

    def job(self, node: Node[R]) -> JobHandle[R]:
        """The job made for a spec added to the `Workflow` this handle sent."""
        steps = self._steps_of(node)
        if len(steps) != 1:
            raise ArgumentError(f"{node!r} is a canvas of {len(steps)} jobs: use jobs_of(node)")
        handle: JobHandle[R] = self._jobs[steps[0]]
        return handle

    def jobs_of(self, node: Node[Any]) -> list[JobHandle[Any]]:
        """The jobs made for a node of the `Workflow` this handle sent, in plan order."""
        return [self._jobs[i] for i in self._steps_of(node)]

    def _steps_of(self, node: Node[Any]) -> tuple[int, ...]:
        given: object = node  # any value: a caller may pass a handle by mistake
        if not isinstance(given, Node) or not 0 <= given.index < len(self._node_steps):
            raise ArgumentError(f"{node!r} is not a node of the workflow this handle sent")
        return self._node_steps[node.index]

    async def result(self, timeout: float | None = None) -> R_co:
        """Wait for its output jobs and return the workflow's result; raise as
        ``JobHandle.result`` does for the first output found to have failed
        (JobFailedError, UpstreamFailedError naming the job that failed first,
        JobCancelledError), or ResultTimeoutError.

        It returns as soon as the outputs have ended: batch callbacks may still run, and
        the workflow's own counts (``status()``) follow once the last end is settled, a
        moment later on Redis. ``wait()`` waits for the workflow as a whole."""
        record = await self._record()
        limit_s = check_timeout(timeout)
        if record.shape is ResultShape.ONE:
            if len(record.outputs) != 1:
                raise BrokerDataError(
                    f"workflow {self.id} has {len(record.outputs)} outputs for one result"
                )
            job_id, queue = record.outputs[0]
            one: R_co = await self._client.wait_result(job_id, queue, timeout=limit_s)
            return one
        values: R_co = await self._outputs(record.outputs, limit_s)  # type: ignore[assignment]  # a list for a LIST shape
        return values

    async def _outputs(
        self, outputs: Sequence[tuple[JobId, QueueName]], limit_s: float | None
    ) -> list[Any]:
        """Every output's result, in order; the first failure seen is raised at once.

        The outputs are read a page of 1,000 at a time (``output_outcomes``): a succeeded
        one is decoded from that read, and only the others (not ended yet, or ended badly:
        the error needs the full record) are each read and waited for on their own."""
        values: list[Any] = [None] * len(outputs)
        tasks = await self._tasks()
        rest: list[int] = []
        for at in range(0, len(outputs), BATCH):
            page = await self._client.backend.output_outcomes(self.id, at, BATCH)
            known = {o.job_id: o for o in page}
            for n, (job_id, _) in enumerate(outputs[at : at + BATCH], start=at):
                got = known.get(job_id)
                if got is not None and got.status is JobStatus.SUCCEEDED and job_id in tasks:
                    values[n] = self._client.result_of(job_id, tasks[job_id], got.result)
                else:
                    rest.append(n)
        waited = await self._waited([outputs[n] for n in rest], limit_s)
        for n, value in zip(rest, waited, strict=True):
            values[n] = value
        return values

    async def _tasks(self) -> dict[JobId, TaskName]:
        """Each job's task (a succeeded result is decoded as its task's return hint says):
        known to the handle that sent the workflow, else read from its nodes."""
        known = {job.id: job.task for job in self._jobs if job.task}
        if known or self._jobs:
            return known
        tasks: dict[JobId, TaskName] = {}
        while True:
            page = await self._client.backend.workflow_nodes(self.id, len(tasks), BATCH)
            tasks.update((node.job_id, node.task) for node in page)
            if len(page) < BATCH:
                return tasks

    async def _waited(
        self, outputs: Sequence[tuple[JobId, QueueName]], limit_s: float | None
    ) -> list[Any]:
        """Each output's result, waited for on its own; the first failure seen is raised."""
        if not outputs:
            return []
        gate = asyncio.Semaphore(_WAITERS)
        loop = asyncio.get_running_loop()
        deadline = None if limit_s is None else loop.time() + limit_s

        async def one(job_id: JobId, queue: QueueName) -> Any:
            async with gate:
                job = await self._client.get_job(job_id, queue)
                if job is not None and job.status in TERMINAL_STATES:
                    return self._client.outcome(job)
                left = None if deadline is None else max(0.0, deadline - loop.time())
                return await self._client.wait_result(job_id, queue, timeout=left)

        waits = [asyncio.ensure_future(one(job_id, queue)) for job_id, queue in outputs]
        try:
            while True:
                _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_EXCEPTION)
                failed = [w for w in waits if w.done() and w.exception() is not None]
                if failed:
                    raise failed[0].exception()  # type: ignore[misc]  # checked not None
                if not pending:
                    return [w.result() for w in waits]
        finally:
            for wait in waits:
                wait.cancel()

    async def wait(self, timeout: float | None = None, *, jobs: bool = False) -> WorkflowStatus:
        """Wait until every job has ended (an open batch: and it is closed), failed or not,
        and return the status; ResultTimeoutError after `timeout` seconds.

        The jobs not ended yet are found by reading the workflow's nodes (1,000 a call, from
        the first unended one on), and the last of them is waited for on its done signal:
        in a group or a chain that is the one to end last, so most workflows cost one wait
        and a few reads. Only once every job has ended and the broker has not marked the
        workflow finished yet (an open batch, or its last end still being settled) is its
        record read again at growing intervals, up to half a second.
        """
        limit_s = check_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if limit_s is None else loop.time() + limit_s
        offset, pause = 0, 0.01
        while True:
            record = await self._record()
            if record.finished_at_ms is not None:
                return await self.status(jobs=jobs)
            offset, last = await self._unended(offset)
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise ResultTimeoutError(f"workflow {self.id} still running after {timeout}s")
            if last is not None:
                pause = 0.01
                wait_s = 60.0 if left is None else min(left, 60.0)
                await self._client.backend.wait_for_job(last.job_id, last.queue, wait_s)
                continue
            await asyncio.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, _FINISH_POLL_MAX_S)

    async def _unended(self, offset: int) -> tuple[int, WorkflowNode | None]:
        """The position of the first job from `offset` on that has not ended (or the end),
        and the last such job (None when every one has ended)."""
        first, last = None, None
        position = offset
        while True:
            page = await self._client.backend.workflow_nodes(self.id, position, BATCH)
            for at, node in enumerate(page, start=position):
                if node.status is not None and node.status not in TERMINAL_STATES:
                    first = at if first is None else first
                    last = node
            position += len(page)
            if len(page) < BATCH:
                return (position if first is None else first), last

    async def status(self, *, jobs: bool = True) -> WorkflowStatus:
        """The workflow's state and counts, and each job's (read in pages of 1,000; pass
        ``jobs=False`` for the counts alone, one cheap read)."""
        record = await self._record()
        infos: tuple[WorkflowJobInfo, ...] = ()
        if jobs:
            infos = tuple(_info(node) for node in await self._nodes())
        return WorkflowStatus(
            id=record.id,
            kind=record.kind,
            state=workflow_state(finished=record.finished_at_ms is not None, counts=record.counts),
            total=record.total,
            ended=record.ended,
            counts=dict(record.counts),
            open=record.open,
            created_at_ms=record.created_at_ms,
            finished_at_ms=record.finished_at_ms,
            first_failure=record.first_failure,
            jobs=infos,
        )

    async def cancel(self) -> int:
        """Cancel every job that has not ended (and batch callbacks not yet released);
        their dependents end upstream_failed, and running ones are stopped on their
        workers (see ``Client.cancel``). Returns how many jobs were cancelled."""
        running = [n for n in await self._nodes() if n.status is JobStatus.RUNNING]
        cancelled = await self._client.backend.cancel_workflow(self.id, self._client.clock.now_ms())
        for node in running:  # one that started meanwhile: its worker's reconciliation
            await self._client.stop_on_worker(node.job_id, node.queue)
        return cancelled

    async def _record(self) -> WorkflowRecord:
        record = await self._client.backend.get_workflow(self.id)
        if record is None:
            raise WorkflowNotFoundError(
                f"workflow {self.id} not found (finished and expired, or never created)"
            )
        return record

    async def _nodes(self) -> list[WorkflowNode]:
        nodes: list[WorkflowNode] = []
        while True:
            page = await self._client.backend.workflow_nodes(self.id, len(nodes), BATCH)
            nodes += page
            if len(page) < BATCH:
                return nodes


class BatchHandle(WorkflowHandle[BatchSummary]):
    """An open batch: ``add`` jobs until ``close``; its callbacks then run once every job
    has ended. Its result is the summary the callbacks get."""

    __slots__ = ()

    async def add(self, *items: Canvas[Any]) -> list[JobHandle[Any]]:
        """Add specs or canvases (in one broker call); returns a handle per job added, in
        plan order. WorkflowError once the batch is closed."""
        return await self._client.add_to_batch(self.id, items)

    async def close(self) -> bool:
        """No more jobs: the callbacks may run (at once, if every job has ended). False
        when it was closed already."""
        return await self._client.backend.close_workflow(self.id, self._client.clock.now_ms())

    async def summary(self) -> BatchSummary:
        """How its jobs have ended so far."""
        stored = await self._client.backend.batch_summary(self.id)
        if stored is None:
            raise WorkflowNotFoundError(f"batch {self.id} not found")
        return as_summary(stored)

    async def result(self, timeout: float | None = None) -> BatchSummary:
        """Wait until the batch is closed and every job ended; the summary (never raises
        for failed jobs: the summary counts them)."""
        await self.wait(timeout)
        return await self.summary()


def as_summary(stored: StoredSummary) -> BatchSummary:
    """The summary as plain data, the way a batch callback gets it."""
    return BatchSummary(
        total=stored.total,
        counts=dict(stored.counts),
        failed_ids=list(stored.failed_ids),
        failed=stored.failed,
    )


def _info(node: WorkflowNode) -> WorkflowJobInfo:
    return WorkflowJobInfo(
        id=node.job_id,
        task=node.task,
        queue=node.queue,
        state=node.status,
        parents=tuple(edge.parent for edge in node.parents),
        error=node.error,
        callback=None if node.callback is None else Callback(node.callback.value),
    )
