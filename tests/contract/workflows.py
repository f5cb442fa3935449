"""What the workflow contract tests share: workflow and edge makers, and a worker's hands
(claim, succeed, die, retry later) that end jobs at port level and then settle the queues
where the ends happened, as the runtime's writer does.

Workers here keep the broker's clock (``now_ms=None``, as a worker on the system clock
does), so jobs enqueued at ``T0`` are due, and a job meant to stay ``scheduled`` must run
after the real clock (``later_ms``).
"""

from __future__ import annotations

from collections.abc import Sequence

from corq.backends import Backend
from corq.backends.base import (
    BATCH,
    BatchEvent,
    ClaimedJob,
    Completion,
    Edge,
    NewJob,
    NewWorkflow,
    ResultShape,
    WorkflowJob,
)
from corq.job import JobStatus
from tests.contract.jobs import HOUR_MS, T0, Q, failure, lease_of, wall_ms

WF = "wf_1"
#: A second queue, for edges between queues.
Q2 = "other"
TTL_MS = 60_000

#: A parent as a test names it: an id in Q, or a whole edge.
Parent = str | Edge


def edge(parent: str, queue: str = Q, *, allow_failed: bool = False) -> Edge:
    return Edge(parent=parent, queue=queue, allow_failed=allow_failed)


def later_ms() -> int:
    """A run time still ahead of the broker's clock for the whole test."""
    return wall_ms() + HOUR_MS


def wjob(
    job_id: str,
    *parents: Parent,
    queue: str = Q,
    workflow: str | None = WF,
    callback: BatchEvent | None = None,
    inputs: str | None = None,
    run_at_ms: int = T0,
    priority: int = 0,
) -> WorkflowJob:
    """A job of `workflow` enqueued at T0, waiting for `parents` (ids in Q, or edges)."""
    job = NewJob(
        id=job_id,
        task="tasks.add",
        queue=queue,
        payload=b"{}",
        priority=priority,
        enqueued_at_ms=T0,
        run_at_ms=run_at_ms,
        workflow=workflow,
        inputs=inputs,
    )
    edges = tuple(edge(p) if isinstance(p, str) else p for p in parents)
    return WorkflowJob(job=job, parents=edges, callback=callback)


def dag(
    *jobs: WorkflowJob,
    workflow_id: str = WF,
    kind: str = "dag",
    outputs: Sequence[str] | None = None,
    shape: ResultShape = ResultShape.ONE,
    open: bool = False,
) -> NewWorkflow:
    """A workflow of `jobs` (outputs: the last job, unless given)."""
    chosen = tuple(outputs) if outputs is not None else (jobs[-1].job.id,)
    return NewWorkflow(
        id=workflow_id,
        kind=kind,
        jobs=list(jobs),
        outputs=chosen,
        shape=shape,
        open=open,
        created_at_ms=T0,
    )


async def settle(backend: Backend, *queues: str) -> None:
    """Settle the outbox of each queue (default Q); the count returned is not the
    contract's business here (a broker that settles in the end's own step returns 0)."""
    for queue in queues or (Q,):
        await backend.settle_workflows(queue, None)


async def status_of(backend: Backend, job_id: str, queue: str = Q) -> JobStatus | None:
    job = await backend.get_job(job_id, queue)
    return None if job is None else job.status


async def statuses(backend: Backend, *job_ids: str, queue: str = Q) -> dict[str, JobStatus | None]:
    return {job_id: await status_of(backend, job_id, queue) for job_id in job_ids}


async def error_of(backend: Backend, job_id: str, queue: str = Q) -> str | None:
    job = await backend.get_job(job_id, queue)
    assert job is not None, f"no record of {job_id!r}"
    return job.error


def upstream_error(parent: str, state: str, parent_error: str | None) -> str:
    """The error of a job whose parent ended badly (the contract's wording)."""
    return f"upstream_failed: {parent} ended {state}: {parent_error}"


class Hands:
    """One worker's hands on the broker, registered in Q and Q2 under one holder id.

    Every end is followed by a settle of the job's queue unless told otherwise (a crashed
    writer: the end is noted, its settle never ran).
    """

    def __init__(self, backend: Backend, name: str = "w1") -> None:
        self.backend = backend
        self.name = name
        self._registered = False

    async def claim(self, queue: str = Q, count: int = BATCH) -> dict[str, ClaimedJob]:
        """Every job ready in `queue` (up to `count`), now held, by id."""
        if not self._registered:
            await self.backend.register_worker(lease_of(self.name, Q, Q2), None)
            self._registered = True
        batch = await self.backend.claim_jobs(queue, self.name, count, 30_000, None)
        assert not batch.lost, f"{self.name} lost its lease in {queue}"
        return {job.id: job for job in batch.jobs}

    async def claim_one(self, job_id: str, queue: str = Q) -> ClaimedJob:
        """Claim what is ready in `queue`: exactly `job_id`."""
        held = await self.claim(queue)
        assert list(held) == [job_id], f"ready in {queue}: {sorted(held)}, not [{job_id!r}]"
        return held[job_id]

    async def succeed(
        self,
        *jobs: ClaimedJob,
        settled: bool = True,
        ttl_ms: int = TTL_MS,
        at_ms: int = T0 + 9,
    ) -> None:
        """Complete the jobs, each with its own id as its result."""
        done = [
            Completion(
                job_id=j.id,
                queue=j.queue,
                fence=j.fence,
                result=j.id.encode(),
                finished_at_ms=at_ms,
            )
            for j in jobs
        ]
        assert await self.backend.complete_jobs(self.name, done, ttl_ms) == [True] * len(jobs)
        if settled:
            await settle(self.backend, *sorted({j.queue for j in jobs}))

    async def die(self, *jobs: ClaimedJob, error: str = "ValueError: boom") -> None:
        """Fail the jobs for good (dead), then settle."""
        failures = [failure(j, error=error) for j in jobs]
        assert await self.backend.fail_jobs(self.name, failures, TTL_MS) == [True] * len(jobs)
        await settle(self.backend, *sorted({j.queue for j in jobs}))

    async def fail_for_retry(self, job: ClaimedJob, retry_at_ms: int) -> None:
        """A failed attempt that will be retried at `retry_at_ms`, then settle."""
        assert await self.backend.fail_jobs(self.name, [failure(job, retry_at_ms)], TTL_MS) == [
            True
        ]
        await settle(self.backend, job.queue)

    async def run(self, job_id: str, queue: str = Q) -> None:
        """Claim exactly `job_id` from `queue` and complete it."""
        await self.succeed(await self.claim_one(job_id, queue))
