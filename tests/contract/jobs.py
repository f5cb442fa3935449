"""What the contract tests of several ports share: a fixed clock origin, the queue, a lease,
job and outcome makers, the few steps most tests take (register, hold, claim, read a record,
kill), and the steps of the suspect and damaged-record tests."""

from __future__ import annotations

import time

from corq.backends import Backend
from corq.backends.base import (
    ClaimBatch,
    ClaimedJob,
    Completion,
    Failure,
    NewJob,
    Reclaimed,
    Release,
    WorkerLease,
    damaged_error,
)
from corq.job import Job

T0 = 1_700_000_000_000
Q = "default"
LEASE_MS = 30_000
#: Time enough for any lease taken before it to pass.
LATER = LEASE_MS + 1
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


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
    backend: Backend, worker: str = "w1", now_ms: int | None = T0, *, queue: str = Q
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


async def hold(
    backend: Backend, lease: WorkerLease, job_ids: list[str], now_ms: int = T0, queue: str = Q
) -> list[ClaimedJob]:
    """Register `lease` and claim exactly `job_ids` (just enqueued) in `queue`."""
    await backend.enqueue_jobs([new_job(job_id, queue=queue) for job_id in job_ids])
    await backend.register_worker(lease, now_ms)
    jobs = await claim(backend, lease.holder(queue), now_ms, count=len(job_ids), queue=queue)
    assert [j.id for j in jobs] == job_ids
    return jobs


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


# Suspects (claims, cancel, retry_dead): see the suspects section of test_claims.py.

MAX_DEATHS = 3


async def claim_batch(
    backend: Backend, worker: str, now_ms: int, *, suspects: int = 0, count: int = 10
) -> ClaimBatch:
    """The whole batch (how many suspects still wait, too), not checked for `lost`."""
    return await backend.claim_jobs(Q, worker, count, LEASE_MS, now_ms, suspects=suspects)


def ids(batch: ClaimBatch) -> list[str]:
    return [job.id for job in batch.jobs]


def flagged(batch: ClaimBatch) -> list[tuple[str, bool]]:
    """(id, suspect) of each claimed job, in order."""
    return [(job.id, job.suspect) for job in batch.jobs]


async def run_and_die(
    backend: Backend, worker: str, now_ms: int, max_deaths: int, *, suspects: int = 0
) -> tuple[list[str], list[Reclaimed]]:
    """A fresh worker claims at `now_ms`, then is killed from outside: reclaim once its
    lease has passed. Returns the ids it claimed and what the reclaim reported."""
    await register(backend, worker, now_ms)
    claimed = ids(await claim_batch(backend, worker, now_ms, suspects=suspects))
    reclaimed = await backend.reclaim_stalled_jobs(Q, now_ms + LATER, max_deaths=max_deaths)
    return claimed, reclaimed


async def make_suspects(backend: Backend) -> int:
    """ "innocent" and "poison" both held by w1, then by w2, both killed from outside
    (max_deaths=3): two deaths each make both suspects. Returns the time after the second
    reclaim."""
    await backend.enqueue_jobs([new_job("innocent"), new_job("poison")])
    for n, worker in enumerate(("w1", "w2")):
        claimed, _ = await run_and_die(backend, worker, T0 + n * LATER, MAX_DEATHS)
        assert claimed == ["innocent", "poison"]
    return T0 + 2 * LATER


# Damaged records (every port): see the damaged sections of the port files.

DAMAGED = damaged_error("")  # the prefix every such error starts with


def assert_damaged(job: Job, *names: str) -> None:
    """The record reads as damaged, naming each of `names` (a field, or a value)."""
    assert job.error is not None
    assert job.error.startswith(DAMAGED), job.error
    for name in names:
        assert name in job.error, (name, job.error)


async def dead_ids(backend: Backend) -> set[str]:
    return {job.id for job in await backend.list_dead(Q, limit=1000)}
