"""How a workflow becomes the one broker call that stores it.

`WorkflowSender` turns a `corq.workflow_plan.Plan` into a ``NewWorkflow``: each step is
checked and encoded like any enqueue (its task's signature, with the value its parents give
it prepended; the payload limit), dependencies on existing jobs given by bare id are
located (the dependent's queue first, then every known queue), and the whole is sent with
``enqueue_workflow``, retried while the broker is unreachable (the call is idempotent by
workflow id). A refusal raises before anything is written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from corq.backends.base import (
    BatchEvent,
    Edge,
    NewJob,
    NewWorkflow,
    ResultShape,
    WorkflowJob,
)
from corq.canvas import Batch, Canvas, Flow
from corq.errors import WorkflowError
from corq.flow import Outcome
from corq.spec import Dependency, JobSpec
from corq.types import JobId, QueueName
from corq.workflow_plan import Link, Plan, plan, plan_addition, plan_batch
from corq.workflows import BatchHandle, WorkflowHandle

if TYPE_CHECKING:  # for annotations only: the client is the layer above
    from corq.client import Client, JobHandle

#: Job ids looked up at once in the known queues when a dependency is given as a bare id.
_LOOKUPS = 16


class WorkflowSender:
    """Plans, checks and sends workflows for one client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def send(self, flow: Flow) -> WorkflowHandle[Any]:
        """One call stores the whole workflow (or nothing, raising why)."""
        planned = plan(flow)
        workflow_id, handles = await self._store(planned)
        return WorkflowHandle(self.client, workflow_id, jobs=handles, node_steps=planned.node_steps)

    async def open(self, batch: Batch) -> BatchHandle:
        workflow_id, handles = await self._store(plan_batch(batch))
        return BatchHandle(self.client, workflow_id, jobs=handles)

    async def _store(self, planned: Plan) -> tuple[str, list[JobHandle[Any]]]:
        """Store a new workflow from its plan: its id and a handle per job."""
        workflow_id = _new_workflow_id()
        jobs = await self._workflow_jobs(planned, workflow_id)
        await self._create(planned, workflow_id, jobs)
        return workflow_id, [
            self.client.job(j.job.id, j.job.queue, j.job.task, Outcome.CREATED) for j in jobs
        ]

    async def add(self, workflow_id: str, items: Sequence[Canvas[Any]]) -> list[JobHandle[Any]]:
        planned = plan_addition(list(items))
        jobs = await self._workflow_jobs(planned, workflow_id)
        client = self.client
        await client.store_rules([j.job for j in jobs])
        await client.with_retry(
            lambda: client.backend.add_to_workflow(workflow_id, jobs, client.clock.now_ms()),
            "add to a batch",
        )
        return [client.job(j.job.id, j.job.queue, j.job.task, Outcome.CREATED) for j in jobs]

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
        await client.store_rules([job])
        await client.with_retry(
            lambda: client.backend.enqueue_workflow(workflow, client.clock.now_ms()), "enqueue"
        )
        return client.job(job.id, job.queue, job.task, Outcome.CREATED)

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
        await client.store_rules(by_index)
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
