"""Broker contract: progress reports of running jobs (fenced like outcomes)."""

from __future__ import annotations

from corq.backends import Backend
from corq.backends.base import ClaimedJob, Completion, Release, WorkerLease
from corq.job import Job, JobStatus
from tests.contract.jobs import LEASE_MS, T0, Q, new_job


async def held_by(backend: Backend, worker: str, job_id: str) -> ClaimedJob:
    await backend.enqueue_jobs([new_job(job_id)])
    await backend.register_worker(WorkerLease(worker_id=worker, queues=[Q], lease_ms=LEASE_MS), T0)
    (claimed,) = (await backend.claim_jobs(Q, worker, 1, LEASE_MS, T0)).jobs
    assert claimed.id == job_id
    return claimed


async def record(backend: Backend, job_id: str) -> Job:
    job = await backend.get_job(job_id, Q)
    assert job is not None
    return job


async def test_a_new_job_has_no_progress_and_no_death_log(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])

    job = await record(backend, "a")

    assert (job.progress, job.death_log) == (None, ())
    any_queue = await backend.get_job("a")
    assert any_queue is not None
    assert (any_queue.progress, any_queue.death_log) == (None, ())


async def test_the_holder_records_progress(backend: Backend) -> None:
    claimed = await held_by(backend, "w1", "a")

    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.25) is True
    assert (await record(backend, "a")).progress == 0.25
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 1.0) is True

    job = await record(backend, "a")
    assert (job.status, job.progress) == (JobStatus.RUNNING, 1.0)


async def test_progress_is_fenced(backend: Backend) -> None:
    # Given a job held by w1 that reported 0.5
    claimed = await held_by(backend, "w1", "a")
    await backend.register_worker(WorkerLease(worker_id="w2", queues=[Q], lease_ms=LEASE_MS), T0)
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.5) is True

    # When a wrong fence, another worker, another queue or an unknown job reports
    assert await backend.set_progress("a", Q, "w1", claimed.fence + 1, 0.9) is False
    assert await backend.set_progress("a", Q, "w2", claimed.fence, 0.9) is False
    assert await backend.set_progress("a", "other", "w1", claimed.fence, 0.9) is False
    assert await backend.set_progress("missing", Q, "w1", claimed.fence, 0.9) is False

    # Then nothing changed
    job = await record(backend, "a")
    assert (job.status, job.worker_id, job.progress) == (JobStatus.RUNNING, "w1", 0.5)


async def test_no_progress_once_the_attempt_is_over(backend: Backend) -> None:
    # Given a job that reported progress and then completed
    claimed = await held_by(backend, "w1", "a")
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.75) is True
    completion = Completion(
        job_id="a", queue=Q, fence=claimed.fence, result=b"r", finished_at_ms=T0 + 1
    )
    assert await backend.complete_jobs("w1", [completion], 60_000) == [True]

    # When its old holder reports again, it is refused, and the last progress is kept
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.9) is False
    job = await record(backend, "a")
    assert (job.status, job.progress) == (JobStatus.SUCCEEDED, 0.75)


async def test_no_progress_for_a_job_that_is_not_running(backend: Backend) -> None:
    # Given a job that was released back to the queue
    claimed = await held_by(backend, "w1", "a")
    release = Release(job_id="a", queue=Q, fence=claimed.fence)
    assert await backend.release_jobs("w1", [release]) == [True]

    # Then the worker that released it may not report on it
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.5) is False
    job = await record(backend, "a")
    assert (job.status, job.progress) == (JobStatus.QUEUED, None)
