"""Broker contract, operator side: queue stats, dead letters, lifecycle."""

from __future__ import annotations

import asyncio
import threading

from corq.backends import Backend
from corq.backends.base import Completion, Failure, WorkerLease
from corq.job import JobStatus
from tests.contract.jobs import LEASE_MS, T0, Q, new_job


async def kill(backend: Backend, job_ids: list[str], *, worker: str = "w1") -> None:
    """Run the jobs into the dead letters, one millisecond apart (in the order given)."""
    await backend.enqueue_jobs([new_job(job_id) for job_id in job_ids])
    await backend.register_worker(WorkerLease(worker_id=worker, queues=[Q], lease_ms=LEASE_MS), T0)
    claimed = {j.id: j for j in (await backend.claim_jobs(Q, worker, 1000, LEASE_MS, T0)).jobs}
    for n, job_id in enumerate(job_ids):
        failure = Failure(
            job_id=job_id,
            queue=Q,
            fence=claimed[job_id].fence,
            error=f"RuntimeError: {job_id}",
            traceback=None,
            retry_at_ms=None,
            finished_at_ms=T0 + n,
        )
        assert await backend.fail_jobs(worker, [failure], 60_000) == [True]


async def test_queue_stats_counts_each_state(backend: Backend) -> None:
    # Given 2 ready, 1 delayed, 2 in flight, 1 dead and 2 workers
    await kill(backend, ["dead"])
    await backend.enqueue_jobs([new_job(f"r{i}") for i in range(4)] + [new_job("d", delay_ms=9)])
    await backend.register_worker(WorkerLease(worker_id="w2", queues=[Q], lease_ms=LEASE_MS), T0)
    await backend.claim_jobs(Q, "w2", 2, LEASE_MS, T0)

    # When
    (stats,) = await backend.queue_stats([Q])

    # Then
    assert (
        stats.queue,
        stats.ready,
        stats.delayed,
        stats.in_flight,
        stats.dead,
        stats.workers,
    ) == (
        Q,
        2,
        1,
        2,
        1,
        2,
    )
    assert [s.queue for s in await backend.queue_stats()] == await backend.list_queues()


async def test_stats_of_an_unknown_queue_are_zero(backend: Backend) -> None:
    (stats,) = await backend.queue_stats(["nothing-here"])

    assert (stats.ready, stats.delayed, stats.in_flight, stats.dead, stats.workers) == (0,) * 5


async def test_dead_letters_are_listed_newest_first(backend: Backend) -> None:
    await kill(backend, ["a", "b", "c", "d"])

    assert [j.id for j in await backend.list_dead(Q)] == ["d", "c", "b", "a"]
    assert [j.id for j in await backend.list_dead(Q, offset=1, limit=2)] == ["c", "b"]
    (newest,) = await backend.list_dead(Q, limit=1)
    assert (newest.status, newest.error) == (JobStatus.DEAD, "RuntimeError: d")


async def test_retry_dead_queues_chosen_jobs_with_a_fresh_budget(backend: Backend) -> None:
    await kill(backend, ["a", "b", "c"])

    assert await backend.retry_dead(Q, ["a", "c", "not-dead"], T0 + 100) == 2

    assert [j.id for j in await backend.list_dead(Q)] == ["b"]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.failures, job.deaths, job.error) == (
        JobStatus.QUEUED,
        0,
        0,
        "RuntimeError: a",
    )
    again = (await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0 + 100)).jobs
    assert [(j.id, j.failures) for j in again] == [("a", 0), ("c", 0)]


async def test_retry_all_dead(backend: Backend) -> None:
    await kill(backend, ["a", "b"])

    assert await backend.retry_dead(Q, None, T0 + 100) == 2

    assert await backend.list_dead(Q) == []
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.dead) == (2, 0)


async def test_purge_dead_deletes_chosen_then_all(backend: Backend) -> None:
    await kill(backend, ["a", "b", "c"])
    await backend.enqueue_jobs([new_job("alive")])

    assert await backend.purge_dead(Q, ["b", "alive"]) == 1
    assert await backend.get_job("b", Q) is None
    assert await backend.get_job("alive", Q) is not None
    assert await backend.purge_dead(Q, None) == 2
    assert await backend.list_dead(Q) == []
    assert await backend.get_job("a", Q) is None


async def test_a_completed_record_keeps_its_result_until_the_ttl(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=LEASE_MS), T0)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    completion = Completion(
        job_id="a", queue=Q, fence=claimed.fence, result=b"x", finished_at_ms=T0
    )

    await backend.complete_jobs("w1", [completion], 3_600_000)

    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.result == b"x"


async def test_ping_and_a_clone_on_another_thread(backend: Backend) -> None:
    await backend.ping()
    await backend.enqueue_jobs([new_job("a")])
    seen: list[JobStatus | None] = []

    async def read_from_clone(clone: Backend) -> None:
        try:
            job = await clone.get_job("a", Q)
            seen.append(job.status if job else None)
        finally:
            await clone.close()

    thread = threading.Thread(target=asyncio.run, args=(read_from_clone(backend.clone()),))
    thread.start()
    await asyncio.to_thread(thread.join, 10)

    assert seen == [JobStatus.QUEUED]
