"""Workflow handles, and how a planned workflow becomes the one broker call storing it.

`WorkflowSender` turns a `corq.workflow.Plan` into a ``NewWorkflow``: each step is checked
and encoded like any enqueue (its task's signature, with the value its parents give it
prepended; the payload limit), dependencies on existing jobs are located, and the whole is
sent with ``enqueue_workflow`` (retried while the broker is unreachable: the call is
idempotent by workflow id). A refusal raises before anything is written.

`WorkflowHandle` waits for results without polling (each output job's done signal),
reports status, and cancels; `BatchHandle` adds jobs to an open batch and closes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from corq.backends.base import (
    BATCH,
    BatchEvent,
    Edge,
    NewJob,
    NewWorkflow,
    ResultShape,
    WorkflowJob,
    WorkflowNode,
    WorkflowRecord,
)
from corq.backends.base import BatchSummary as StoredSummary
from corq.errors import (
    ArgumentError,
    BrokerDataError,
    ResultTimeoutError,
    WorkflowError,
    WorkflowNotFoundError,
)
from corq.job import TERMINAL_STATES, JobStatus
from corq.spec import Dependency, JobSpec
from corq.types import JobId, QueueName, TaskName
from corq.workflow import (
    Batch,
    BatchSummary,
    Callback,
    Canvas,
    Flow,
    Link,
    Node,
    Plan,
    WorkflowState,
    plan,
    plan_addition,
    plan_batch,
    workflow_state,
)

if TYPE_CHECKING:  # for annotations only: the client is the layer above
    from corq.client import Client, JobHandle

log = logging.getLogger(__name__)
R = TypeVar("R")
#: A handle's result type: covariant, like a spec's.
R_co = TypeVar("R_co", covariant=True)

#: Output jobs waited for at once by ``result()`` (each wait holds a broker subscription).
_WAITERS = 16
#: Job ids looked up at once in the known queues when a dependency is given as a bare id.
_LOOKUPS = 16
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
        JobCancelledError), or ResultTimeoutError."""
        record = await self._record()
        limit_s = _timeout_s(timeout)
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
        """Every output's result, in order; the first failure seen is raised at once."""
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
        limit_s = _timeout_s(timeout)
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
        """Cancel every job that has not started (and batch callbacks not yet released);
        their dependents end upstream_failed. Jobs already running finish: stopping a
        running job is not possible yet (it needs the control channel of a later
        release). Returns how many jobs were cancelled."""
        return await self._client.backend.cancel_workflow(self.id, self._client.clock.now_ms())

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


def _timeout_s(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise ArgumentError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)


# -- sending ------------------------------------------------------------------------------
class WorkflowSender:
    """Plans, checks and sends workflows for one client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def send(self, flow: Flow) -> WorkflowHandle[Any]:
        """One call stores the whole workflow (or nothing, raising why)."""
        planned = plan(flow)
        workflow_id = _new_workflow_id()
        jobs = await self._workflow_jobs(planned, workflow_id)
        await self._create(planned, workflow_id, jobs)
        return WorkflowHandle(
            self.client,
            workflow_id,
            jobs=[self.client.job(j.job.id, j.job.queue, j.job.task) for j in jobs],
            node_steps=planned.node_steps,
        )

    async def open(self, batch: Batch) -> BatchHandle:
        planned = plan_batch(batch)
        workflow_id = _new_workflow_id()
        jobs = await self._workflow_jobs(planned, workflow_id)
        await self._create(planned, workflow_id, jobs)
        return BatchHandle(
            self.client,
            workflow_id,
            jobs=[self.client.job(j.job.id, j.job.queue, j.job.task) for j in jobs],
        )

    async def add(self, workflow_id: str, items: Sequence[Canvas[Any]]) -> list[JobHandle[Any]]:
        planned = plan_addition(list(items))
        jobs = await self._workflow_jobs(planned, workflow_id)
        client = self.client
        await client.with_retry(
            lambda: client.backend.add_to_workflow(workflow_id, jobs, client.clock.now_ms()),
            "add to a batch",
        )
        return [client.job(j.job.id, j.job.queue, j.job.task) for j in jobs]

    async def send_dependent(self, spec: JobSpec[Any], job: NewJob) -> JobHandle[Any]:
        """A plain ``depends_on`` enqueue: a workflow of one job, named by the job's id."""
        client = self.client
        links = tuple(Link(d, spec.options.allow_failed) for d in spec.options.depends_on)
        parents = await self._edges(links, [], job.queue)
        workflow = NewWorkflow(
            id=job.id,
            kind="depends",
            jobs=[WorkflowJob(job=dataclasses.replace(job, workflow=job.id), parents=parents)],
            outputs=(job.id,),
            created_at_ms=client.clock.now_ms(),
        )
        await client.with_retry(
            lambda: client.backend.enqueue_workflow(workflow, client.clock.now_ms()), "enqueue"
        )
        return client.job(job.id, job.queue, job.task)

    async def _create(self, planned: Plan, workflow_id: str, jobs: list[WorkflowJob]) -> None:
        client = self.client
        by_index = [j.job for j in jobs]
        workflow = NewWorkflow(
            id=workflow_id,
            kind=planned.kind,
            jobs=jobs,
            outputs=tuple(by_index[i].id for i in planned.outputs),
            shape=ResultShape.LIST if planned.many else ResultShape.ONE,
            open=planned.open,
            created_at_ms=client.clock.now_ms(),
        )
        # A retry after an outage may find the workflow written by the first try (False):
        # the id is new, so that can only be this call's own.
        await client.with_retry(
            lambda: client.backend.enqueue_workflow(workflow, client.clock.now_ms()), "enqueue"
        )

    async def _workflow_jobs(self, planned: Plan, workflow_id: str) -> list[WorkflowJob]:
        """Every step checked and encoded, with its edges; WorkflowError or another
        EnqueueError before anything is sent."""
        limit = self.client.max_workflow_jobs
        if len(planned) > limit:
            raise WorkflowError(
                f"this workflow has {len(planned):,} jobs, over the limit of {limit:,} "
                "(settings.max_workflow_jobs / CORQ_MAX_WORKFLOW_JOBS)"
            )
        new_jobs = self.client.encode_specs(
            [(step.spec, step.inputs) for step in planned.steps], workflow=workflow_id
        )
        _check_unique_ids(new_jobs)
        jobs = []
        for step, job in zip(planned.steps, new_jobs, strict=True):
            parents = await self._edges(step.parents, new_jobs, job.queue)
            callback = None if step.callback is None else BatchEvent(step.callback.value)
            jobs.append(WorkflowJob(job=job, parents=parents, callback=callback))
        return jobs

    async def _edges(
        self, links: Sequence[Link], jobs: Sequence[NewJob], queue: QueueName
    ) -> tuple[Edge, ...]:
        edges = []
        for link in links:
            if isinstance(link.parent, int):
                parent = jobs[link.parent]
                edges.append(
                    Edge(parent=parent.id, queue=parent.queue, allow_failed=link.allow_failed)
                )
            else:
                found = await self._locate(link.parent, queue)
                edges.append(
                    Edge(parent=link.parent.job_id, queue=found, allow_failed=link.allow_failed)
                )
        return tuple(edges)

    async def _locate(self, dependency: Dependency, queue: QueueName) -> QueueName:
        """The queue of a job given by id: the dependent's own queue first, then every known
        queue (in several: a WorkflowError asking for a handle)."""
        if dependency.queue is not None:
            return dependency.queue
        job_id = dependency.job_id
        client = self.client
        if await client.get_job(job_id, queue) is not None:
            return queue
        others = [q for q in await client.backend.list_queues() if q != queue]
        found: list[QueueName] = []
        for start in range(0, len(others), _LOOKUPS):
            chunk = others[start : start + _LOOKUPS]
            records = await asyncio.gather(*(client.get_job(job_id, q) for q in chunk))
            found += [q for q, record in zip(chunk, records, strict=True) if record is not None]
        if not found:
            raise WorkflowError(
                f"depends_on: no job {job_id!r} in queue {queue!r} nor in any other known queue"
            )
        if len(found) > 1:
            raise WorkflowError(
                f"depends_on: job id {job_id!r} is in several queues ({', '.join(found)}): "
                "pass its handle (or client.job(id, queue)) to say which"
            )
        return found[0]


def _new_workflow_id() -> str:
    return f"wf_{uuid.uuid4().hex}"


def _check_unique_ids(jobs: Sequence[NewJob]) -> None:
    seen: set[JobId] = set()
    for job in jobs:
        if job.id in seen:
            raise WorkflowError(f"job id {job.id!r} is given to two jobs of this workflow")
        seen.add(job.id)
