"""What the contract tests share: a fixed clock origin, the queue, a lease, job and outcome
makers, and the few steps most tests take (register, claim, read a record)."""

from __future__ import annotations

import time

from corq.backends import Backend
from corq.backends.base import ClaimedJob, Completion, Failure, NewJob, Release, WorkerLease
from corq.job import Job

T0 = 1_700_000_000_000
Q = "default"
LEASE_MS = 30_000
#: Time enough for any lease taken before it to pass.
LATER = LEASE_MS + 1


def new_job(
    job_id: str, *, queue: str = Q, priority: int = 0, delay_ms: int = 0, payload: bytes = b"{}"
) -> NewJob:
    """A job enqueued at T0, due `delay_ms` later."""
    return NewJob(
        id=job_id,
        task="tasks.add",
        queue=queue,
        payload=payload,
        priority=priority,
        enqueued_at_ms=T0,
        run_at_ms=T0 + delay_ms,
    )


def wall_ms() -> int:
    """This machine's clock, which is also the broker's (the test's redis-server and SQLite
    file are local): for tests that let the broker keep the time (now_ms=None)."""
    return time.time_ns() // 1_000_000


def lease_of(
    worker: str, *queues: str, lease_ms: int = LEASE_MS, holder: str | None = None
) -> WorkerLease:
    """A lease on `queues` (default Q), held as `holder` in each when given."""
    names = list(queues or [Q])
    holders = dict.fromkeys(names, holder) if holder is not None else {}
    return WorkerLease(worker_id=worker, queues=names, lease_ms=lease_ms, holders=holders)


async def register(
    backend: Backend, worker: str, now_ms: int | None = T0, *, queue: str = Q
) -> WorkerLease:
    lease = lease_of(worker, queue)
    await backend.register_worker(lease, now_ms)
    return lease


async def claim(
    backend: Backend,
    worker: str,
    now_ms: int | None = T0,
    *,
    count: int = 10,
    suspects: int = 0,
    queue: str = Q,
) -> list[ClaimedJob]:
    batch = await backend.claim_jobs(queue, worker, count, LEASE_MS, now_ms, suspects=suspects)
    assert not batch.lost, f"{worker} is not registered in {queue}"
    return batch.jobs


async def record(backend: Backend, job_id: str, queue: str = Q) -> Job:
    job = await backend.get_job(job_id, queue)
    assert job is not None, f"no record of {job_id!r}"
    return job


def completion(job: ClaimedJob, *, result: bytes = b"ok", at_ms: int = T0 + 9) -> Completion:
    return Completion(
        job_id=job.id, queue=job.queue, fence=job.fence, result=result, finished_at_ms=at_ms
    )


def failure(
    job: ClaimedJob,
    retry_at_ms: int | None = None,
    *,
    error: str = "ValueError: boom",
    died: bool = False,
    at_ms: int = T0 + 7,
) -> Failure:
    return Failure(
        job_id=job.id,
        queue=job.queue,
        fence=job.fence,
        error=error,
        traceback=None,
        retry_at_ms=retry_at_ms,
        finished_at_ms=at_ms,
        died=died,
    )


def release(
    job: ClaimedJob, *, died: bool = False, suspect: bool = False, unstarted: bool = False
) -> Release:
    return Release(
        job_id=job.id,
        queue=job.queue,
        fence=job.fence,
        died=died,
        suspect=suspect,
        unstarted=unstarted,
    )


async def kill(
    backend: Backend, job_ids: list[str], *, worker: str = "killer", at_ms: int = T0
) -> None:
    """Enqueue the jobs and run them into the dead letters, 1 ms apart from `at_ms`, in the
    order given (on a queue where no other job is ready)."""
    await backend.enqueue_jobs([new_job(job_id) for job_id in job_ids])
    await register(backend, worker)
    held: dict[str, ClaimedJob] = {}
    while len(held) < len(job_ids):
        jobs = await claim(backend, worker, count=1000)
        assert jobs, "fewer jobs to claim than were enqueued"
        assert {j.id for j in jobs} <= set(job_ids), "another job was ready"
        held.update((j.id, j) for j in jobs)
    failures = [
        failure(held[job_id], error=f"RuntimeError: {job_id}", at_ms=at_ms + n)
        for n, job_id in enumerate(job_ids)
    ]
    assert await backend.fail_jobs(worker, failures, 60_000) == [True] * len(job_ids)
