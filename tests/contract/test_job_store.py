"""Broker contract, producer side: enqueue, read back, delays, cancel, waiting for a result."""

from __future__ import annotations

import asyncio
import time

from corq.backends import Backend
from corq.backends.base import Completion, Failure, WorkerLease
from corq.job import JobStatus
from tests.contract.jobs import T0, Q, new_job


async def register(backend: Backend, worker: str = "w1", queue: str = Q) -> WorkerLease:
    lease = WorkerLease(worker_id=worker, queues=[queue], lease_ms=30_000)
    await backend.register_worker(lease, T0)
    return lease


async def test_enqueue_stores_a_queued_job(backend: Backend) -> None:
    assert await backend.enqueue_jobs([new_job("a", priority=3, payload=b"\x00\xffargs")]) == [True]

    job = await backend.get_job("a", Q)

    assert job is not None
    assert (job.id, job.task, job.queue, job.status) == ("a", "tasks.add", Q, JobStatus.QUEUED)
    assert (job.payload, job.priority, job.attempt, job.failures, job.deaths) == (
        b"\x00\xffargs",
        3,
        0,
        0,
        0,
    )
    assert (job.enqueued_at_ms, job.run_at_ms) == (T0, T0)
    assert job.started_at_ms is None
    assert job.finished_at_ms is None
    assert job.worker_id is None
    assert job.result is None


async def test_enqueue_an_existing_id_leaves_it_untouched(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a", payload=b"first")])

    created = await backend.enqueue_jobs([new_job("a", payload=b"second"), new_job("b")])

    assert created == [False, True]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.payload == b"first"


async def test_a_repeated_id_in_one_batch_is_created_once(backend: Backend) -> None:
    created = await backend.enqueue_jobs([new_job("a", payload=b"1"), new_job("a", payload=b"2")])

    assert created == [True, False]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.payload == b"1"


async def test_enqueue_spans_queues_and_get_job_searches_them(backend: Backend) -> None:
    created = await backend.enqueue_jobs([new_job("a", queue="q1"), new_job("b", queue="q2")])

    assert created == [True, True]
    found = await backend.get_job("b")
    assert found is not None
    assert found.queue == "q2"
    assert await backend.get_job("b", "q1") is None
    assert await backend.get_job("nope") is None
    assert {"q1", "q2"} <= set(await backend.list_queues())


async def test_many_jobs_in_one_call(backend: Backend) -> None:
    jobs = [new_job(f"j{i}") for i in range(2500)]

    assert await backend.enqueue_jobs(jobs) == [True] * 2500

    (stats,) = await backend.queue_stats([Q])
    assert stats.ready == 2500


async def test_delayed_job_waits_until_promoted_at_its_time(backend: Backend) -> None:
    # Given a job due in 5 s and a registered worker
    await backend.enqueue_jobs([new_job("later", delay_ms=5000)])
    await register(backend)
    job = await backend.get_job("later", Q)
    assert job is not None
    assert job.status == JobStatus.SCHEDULED

    # When the worker claims before its time, it gets nothing but learns when it is due
    early = await backend.claim_jobs(Q, "w1", 10, 30_000, T0 + 4999)
    assert early.jobs == []
    assert early.next_due_ms == T0 + 5000

    # Then promotion before its time keeps it scheduled, and at its time makes it queued
    assert await backend.promote_due_jobs(Q, T0 + 4999) == T0 + 5000
    job = await backend.get_job("later", Q)
    assert job is not None
    assert job.status == JobStatus.SCHEDULED
    assert await backend.promote_due_jobs(Q, T0 + 5000) is None
    job = await backend.get_job("later", Q)
    assert job is not None
    assert job.status == JobStatus.QUEUED

    batch = await backend.claim_jobs(Q, "w1", 10, 30_000, T0 + 5000)
    assert [j.id for j in batch.jobs] == ["later"]
    assert batch.jobs[0].run_at_ms == T0 + 5000
    assert batch.next_due_ms is None


async def test_claim_promotes_due_jobs_itself(backend: Backend) -> None:
    await backend.enqueue_jobs(
        [new_job("soon", delay_ms=1000), new_job("much-later", delay_ms=9000)]
    )
    await register(backend)

    batch = await backend.claim_jobs(Q, "w1", 10, 30_000, T0 + 1000)

    assert [j.id for j in batch.jobs] == ["soon"]
    assert batch.next_due_ms == T0 + 9000


async def test_cancel_queued_and_scheduled_jobs(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("now"), new_job("later", delay_ms=5000), new_job("kept")])
    await register(backend)

    assert await backend.cancel_job("now", Q, T0 + 1) is True
    assert await backend.cancel_job("later", Q, T0 + 2) is True

    cancelled = await backend.get_job("now", Q)
    assert cancelled is not None
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.finished_at_ms == T0 + 1
    batch = await backend.claim_jobs(Q, "w1", 10, 30_000, T0 + 10_000)
    assert [j.id for j in batch.jobs] == ["kept"]
    assert batch.next_due_ms is None


async def test_cancel_a_failed_job_waiting_for_its_retry(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, 30_000, T0)).jobs
    failure = Failure(
        job_id="a",
        queue=Q,
        fence=claimed.fence,
        error="E: x",
        traceback=None,
        retry_at_ms=T0 + 1000,
        finished_at_ms=T0,
    )
    await backend.fail_jobs("w1", [failure], 60_000)

    assert await backend.cancel_job("a", Q, T0 + 10) is True

    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.status == JobStatus.CANCELLED
    batch = await backend.claim_jobs(Q, "w1", 1, 30_000, T0 + 5000)
    assert batch.jobs == []
    assert batch.next_due_ms is None


async def test_cancel_refuses_running_finished_and_unknown_jobs(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    a, b = (await backend.claim_jobs(Q, "w1", 2, 30_000, T0)).jobs
    done = Completion(job_id=b.id, queue=Q, fence=b.fence, result=b"1", finished_at_ms=T0)
    await backend.complete_jobs("w1", [done], 60_000)

    assert await backend.cancel_job(a.id, Q, T0) is False
    assert await backend.cancel_job(b.id, Q, T0) is False
    assert await backend.cancel_job("missing", Q, T0) is False
    job = await backend.get_job(a.id, Q)
    assert job is not None
    assert job.status == JobStatus.RUNNING


async def test_wait_for_job_returns_as_soon_as_the_job_completes(backend: Backend) -> None:
    # Given a running job and a caller waiting for it
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, 30_000, T0)).jobs
    waiter = asyncio.create_task(backend.wait_for_job("a", Q, timeout_s=10))
    await asyncio.sleep(0.1)
    assert not waiter.done()

    # When the worker completes it
    started = time.perf_counter()
    done = Completion(job_id="a", queue=Q, fence=claimed.fence, result=b"42", finished_at_ms=T0 + 5)
    assert await backend.complete_jobs("w1", [done], 60_000) == [True]
    job = await asyncio.wait_for(waiter, 5)

    # Then the waiter wakes at once with the final record
    assert time.perf_counter() - started < 0.5
    assert job is not None
    assert (job.status, job.result, job.finished_at_ms) == (JobStatus.SUCCEEDED, b"42", T0 + 5)


async def test_wait_for_job_returns_at_once_for_a_finished_or_unknown_job(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await backend.cancel_job("a", Q, T0)

    started = time.perf_counter()
    job = await backend.wait_for_job("a", Q, timeout_s=10)

    assert job is not None
    assert job.status == JobStatus.CANCELLED
    assert await backend.wait_for_job("missing", Q, timeout_s=10) is None
    assert time.perf_counter() - started < 0.5


async def test_wait_for_job_returns_the_live_record_on_timeout(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])

    started = time.perf_counter()
    job = await backend.wait_for_job("a", Q, timeout_s=0.3)

    assert 0.25 <= time.perf_counter() - started < 2
    assert job is not None
    assert job.status == JobStatus.QUEUED


async def test_many_waiters_on_many_jobs(backend: Backend) -> None:
    # Given 200 callers waiting on 100 running jobs (two per job)
    jobs = [new_job(f"j{i}") for i in range(100)]
    await backend.enqueue_jobs(jobs)
    await register(backend)
    claimed = (await backend.claim_jobs(Q, "w1", 100, 30_000, T0)).jobs
    waiters = [
        asyncio.create_task(backend.wait_for_job(job.id, Q, timeout_s=10)) for job in jobs + jobs
    ]
    await asyncio.sleep(0.2)

    # When every job completes
    started = time.perf_counter()
    done = [
        Completion(job_id=c.id, queue=Q, fence=c.fence, result=b"ok", finished_at_ms=T0)
        for c in claimed
    ]
    await backend.complete_jobs("w1", done, 60_000)
    results = await asyncio.wait_for(asyncio.gather(*waiters), 10)

    # Then every waiter gets its job's final record promptly
    assert time.perf_counter() - started < 2
    assert [r.id if r else None for r in results] == [j.id for j in jobs + jobs]
    assert all(r is not None and r.status == JobStatus.SUCCEEDED for r in results)


async def test_an_id_whose_record_expired_can_be_enqueued_again(backend: Backend) -> None:
    """An expired record is gone: its id is free again (SQLite deletes expired rows lazily,
    so an enqueue that meets one must replace it)."""
    # Given a job that succeeded with its result kept for 1 ms (by this machine's clock,
    # the broker's too)
    now = time.time_ns() // 1_000_000
    await backend.enqueue_jobs([new_job("a")])
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=30_000), None)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, 30_000, None)).jobs
    done = Completion(job_id="a", queue=Q, fence=claimed.fence, result=b"1", finished_at_ms=now)
    assert await backend.complete_jobs("w1", [done], 1) == [True]

    # When its record has expired
    deadline = time.monotonic() + 5
    while await backend.get_job("a", Q) is not None:
        assert time.monotonic() < deadline, "the record never expired"
        await backend.promote_due_jobs(Q, None)  # brings the broker's time along
        await asyncio.sleep(0.01)

    # Then the same id can be enqueued again, as a new job
    assert await backend.enqueue_jobs([new_job("a", payload=b"again")]) == [True]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.payload, job.attempt) == (JobStatus.QUEUED, b"again", 0)
