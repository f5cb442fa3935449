"""Broker contract, worker side: claims, fencing, outcomes, release, leases and reclaim."""

from __future__ import annotations

import asyncio
import contextlib
import time

from corq.backends import Backend
from corq.backends.base import Completion, Failure, NewJob, Reclaimed, Release, WorkerLease
from corq.job import JobStatus
from tests.contract.jobs import LEASE_MS, T0, Q, new_job


def lease_of(worker: str, *queues: str) -> WorkerLease:
    return WorkerLease(worker_id=worker, queues=list(queues or [Q]), lease_ms=LEASE_MS)


async def register(backend: Backend, worker: str = "w1", now_ms: int = T0) -> WorkerLease:
    lease = lease_of(worker)
    await backend.register_worker(lease, now_ms)
    return lease


async def claim_ids(
    backend: Backend, worker: str = "w1", count: int = 10, now: int = T0
) -> list[str]:
    return [job.id for job in (await backend.claim_jobs(Q, worker, count, LEASE_MS, now)).jobs]


def done(job_id: str, fence: int, *, result: bytes = b"r", queue: str = Q) -> Completion:
    return Completion(job_id=job_id, queue=queue, fence=fence, result=result, finished_at_ms=T0 + 9)


def failed(job_id: str, fence: int, retry_at_ms: int | None, *, counted: bool = True) -> Failure:
    return Failure(
        job_id=job_id,
        queue=Q,
        fence=fence,
        error="ValueError: boom",
        traceback="Traceback (most recent call last): ...",
        retry_at_ms=retry_at_ms,
        finished_at_ms=T0 + 7,
        counted=counted,
    )


async def test_claim_takes_higher_priority_first_then_oldest(backend: Backend) -> None:
    await backend.enqueue_jobs(
        [new_job("a"), new_job("b", priority=5), new_job("c"), new_job("d", priority=-1)]
    )
    await backend.enqueue_jobs([new_job("e", priority=5), new_job("f", priority=100)])
    await register(backend)

    assert await claim_ids(backend, count=10) == ["f", "b", "e", "a", "c", "d"]


async def test_claim_takes_at_most_count(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(5)])
    await register(backend)

    assert await claim_ids(backend, count=2) == ["j0", "j1"]
    assert await claim_ids(backend, count=10) == ["j2", "j3", "j4"]
    assert await claim_ids(backend, count=10) == []


async def test_claimed_job_is_running_under_the_worker(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a", priority=2)])
    await register(backend)

    batch = await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0 + 3)

    (claimed,) = batch.jobs
    assert not batch.lost
    assert (claimed.task, claimed.queue, claimed.payload, claimed.priority) == (
        "tasks.add",
        Q,
        b"{}",
        2,
    )
    assert (claimed.attempt, claimed.failures, claimed.deaths) == (1, 0, 0)
    assert (claimed.enqueued_at_ms, claimed.run_at_ms) == (T0, T0)
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.worker_id, job.attempt, job.started_at_ms) == (
        JobStatus.RUNNING,
        "w1",
        1,
        T0 + 3,
    )


async def test_unregistered_worker_is_told_it_is_lost_and_claims_nothing(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])

    batch = await backend.claim_jobs(Q, "stranger", 10, LEASE_MS, T0)

    assert batch.lost
    assert batch.jobs == []
    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.status == JobStatus.QUEUED


async def test_completion_is_fenced(backend: Backend) -> None:
    # Given a job held by w1
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    await register(backend, "w2")
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    # When a wrong fence or another worker completes it, nothing changes
    assert await backend.complete_jobs("w1", [done("a", claimed.fence + 1)], 60_000) == [False]
    assert await backend.complete_jobs("w2", [done("a", claimed.fence)], 60_000) == [False]
    assert await backend.fail_jobs("w2", [failed("a", claimed.fence, None)], 60_000) == [False]
    assert await backend.release_jobs("w2", [Release(job_id="a", queue=Q, fence=1)]) == [False]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.worker_id, job.result) == (JobStatus.RUNNING, "w1", None)

    # Then the holder completes it once, and only once
    assert await backend.complete_jobs("w1", [done("a", claimed.fence, result=b"7")], 60_000) == [
        True
    ]
    assert await backend.complete_jobs("w1", [done("a", claimed.fence)], 60_000) == [False]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.result, job.finished_at_ms) == (JobStatus.SUCCEEDED, b"7", T0 + 9)
    assert await backend.complete_jobs("w1", [done("missing", 1)], 60_000) == [False]


async def test_outcomes_of_a_batch_across_queues_come_back_in_order(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a", queue="q1"), new_job("b", queue="q2")])
    lease = lease_of("w1", "q1", "q2")
    await backend.register_worker(lease, T0)
    (a,) = (await backend.claim_jobs("q1", "w1", 1, LEASE_MS, T0)).jobs
    (b,) = (await backend.claim_jobs("q2", "w1", 1, LEASE_MS, T0)).jobs

    outcome = await backend.complete_jobs(
        "w1",
        [done("b", b.fence, queue="q2"), done("x", 1, queue="q1"), done("a", a.fence, queue="q1")],
        60_000,
    )

    assert outcome == [True, False, True]


async def test_failure_with_a_retry_waits_then_runs_again(backend: Backend) -> None:
    # Given a job that failed once with a retry in 10 s
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (first,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    assert await backend.fail_jobs("w1", [failed("a", first.fence, T0 + 10_000)], 60_000) == [True]

    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.failures, job.error) == (JobStatus.FAILED, 1, "ValueError: boom")
    assert job.traceback == "Traceback (most recent call last): ..."

    # When a worker claims before and then at the retry time
    early = await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0 + 9_999)
    assert early.jobs == []
    assert early.next_due_ms == T0 + 10_000
    (second,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0 + 10_000)).jobs

    # Then it runs as the second attempt, under a new fence
    assert (second.attempt, second.failures) == (2, 1)
    assert second.fence != first.fence
    assert await backend.complete_jobs("w1", [done("a", first.fence)], 60_000) == [False]
    assert await backend.complete_jobs("w1", [done("a", second.fence)], 60_000) == [True]


async def test_uncounted_failure_keeps_the_retry_budget(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    await backend.fail_jobs("w1", [failed("a", claimed.fence, T0 + 1, counted=False)], 60_000)

    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.failures) == (JobStatus.FAILED, 0)


async def test_failure_without_a_retry_is_dead(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    assert await backend.fail_jobs("w1", [failed("a", claimed.fence, None)], 60_000) == [True]

    job = await backend.wait_for_job("a", Q, timeout_s=5)
    assert job is not None
    assert (job.status, job.failures, job.finished_at_ms) == (JobStatus.DEAD, 1, T0 + 7)
    assert [j.id for j in await backend.list_dead(Q)] == ["a"]
    assert await claim_ids(backend, now=T0 + 99_999) == []


async def test_release_puts_the_job_back_at_the_head(backend: Backend) -> None:
    # Given two jobs, the first held by w1
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    (a,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    # When w1 releases it after starting it
    assert await backend.release_jobs("w1", [Release(job_id="a", queue=Q, fence=a.fence)]) == [True]

    # Then it is queued ahead of b, and the attempt it made counts
    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.status == JobStatus.QUEUED
    (again,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    assert (again.id, again.attempt) == ("a", 2)


async def test_release_of_an_unstarted_job_does_not_count_the_attempt(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    (a,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    release = Release(job_id="a", queue=Q, fence=a.fence, unstarted=True)
    assert await backend.release_jobs("w1", [release]) == [True]

    (again,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    assert (again.id, again.attempt) == ("a", 1)


async def test_heartbeat_keeps_the_lease(backend: Backend) -> None:
    # Given w1 holding a job under a 30 s lease, renewed at +20 s
    await backend.enqueue_jobs([new_job("a")])
    lease = await register(backend)
    await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)
    assert await backend.heartbeat(lease, T0 + 20_000) == []

    # When reclaim runs after the first lease would have expired, nothing is taken
    assert await backend.reclaim_stalled_jobs(Q, T0 + 40_000, max_deaths=3) == []

    # Then after the renewed lease expires, the job is taken back
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + 50_001, max_deaths=3)
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w1", dead=False)]


async def test_reclaim_requeues_at_the_head_and_fences_out_the_old_worker(backend: Backend) -> None:
    # Given w1 holding "a" (b waits behind it) and w1 stops heartbeating
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    old = await register(backend, "w1")
    (a,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    await register(backend, "w2", now_ms=T0 + 20_000)

    # When its lease expires and the broker reclaims
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LEASE_MS + 1, max_deaths=3)

    # Then "a" is queued at the head with one death, and w2 gets it first
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w1", dead=False)]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.deaths, job.worker_id) == (JobStatus.QUEUED, 1, None)
    (again,) = (await backend.claim_jobs(Q, "w2", 1, LEASE_MS, T0 + LEASE_MS + 2)).jobs
    assert (again.id, again.deaths, again.attempt) == ("a", 1, 2)

    # And the old worker can no longer record anything, and learns it is lost
    assert await backend.complete_jobs("w1", [done("a", a.fence)], 60_000) == [False]
    assert await backend.heartbeat(old, T0 + LEASE_MS + 3) == [Q]
    assert (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0 + LEASE_MS + 4)).lost
    assert await backend.reclaim_stalled_jobs(Q, T0 + LEASE_MS + 5, max_deaths=3) == []


async def test_reclaim_never_makes_a_poison_job_before_the_backstop(backend: Backend) -> None:
    # Given a job whose first worker died holding it (max_deaths=2: one death makes a suspect)
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1", now_ms=T0)
    assert await claim_ids(backend, "w1", now=T0) == ["a"]
    now = T0 + LEASE_MS + 1
    assert await backend.reclaim_stalled_jobs(Q, now, max_deaths=2) == [
        Reclaimed(job_id="a", queue=Q, worker_id="w1", dead=False)
    ]
    # When a claim without sandboxes comes, it does not get the suspect; one with a
    # sandbox gets it, flagged
    await register(backend, "w2", now_ms=now)
    busy = await backend.claim_jobs(Q, "w2", 10, LEASE_MS, now)
    assert (busy.jobs, busy.suspects) == ([], 1)
    sandboxed = await backend.claim_jobs(Q, "w2", 10, LEASE_MS, now, suspects=1)
    assert [(j.id, j.suspect) for j in sandboxed.jobs] == [("a", True)]
    assert sandboxed.suspects == 0
    # and that worker dies too (killed from outside: nobody saw the job's own process die)
    now += LEASE_MS + 1
    reclaimed = await backend.reclaim_stalled_jobs(Q, now, max_deaths=2)
    # Then it is not poison (2 deaths, the backstop is 6): a suspect again, deaths on record
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w2", dead=False)]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.deaths, job.death_log, job.error) == (
        JobStatus.QUEUED,
        2,
        ("w1", "w2"),
        None,
    )
    assert await backend.list_dead(Q) == []
    await register(backend, "w3", now_ms=now)
    assert (await backend.claim_jobs(Q, "w3", 10, LEASE_MS, now)).suspects == 1


async def test_reclaim_takes_every_job_of_a_big_stalled_worker(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(2500)])
    await register(backend)
    for _ in range(3):
        await backend.claim_jobs(Q, "w1", 1000, LEASE_MS, T0)

    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LEASE_MS + 1, max_deaths=3)

    assert sorted(r.job_id for r in reclaimed) == sorted(f"j{i}" for i in range(2500))
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.in_flight, stats.workers) == (2500, 0, 0)


async def test_deregistered_worker_is_lost(backend: Backend) -> None:
    lease = await register(backend)

    await backend.deregister_worker(lease, T0)

    assert (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).lost
    assert await backend.heartbeat(lease, T0) == [Q]


async def test_wait_for_jobs_wakes_promptly_on_enqueue(backend: Backend) -> None:
    # Given an idle worker blocked on an empty queue
    waiter = asyncio.create_task(backend.wait_for_jobs("idle", timeout_s=5))
    await asyncio.sleep(0.1)
    assert not waiter.done()

    # When a producer enqueues
    started = time.perf_counter()
    await backend.enqueue_jobs([new_job("a", queue="idle")])

    # Then the worker wakes at once
    assert await asyncio.wait_for(waiter, 5) is True
    assert time.perf_counter() - started < 0.5


async def test_a_cancelled_wait_for_jobs_does_not_swallow_the_next_wake(backend: Backend) -> None:
    # Given a worker that gave up waiting (shutdown) mid-wait
    gone = asyncio.create_task(backend.wait_for_jobs("idle", timeout_s=5))
    await asyncio.sleep(0.1)
    gone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone

    # When a job arrives, then the next waiter is still woken by it
    await backend.enqueue_jobs([new_job("a", queue="idle")])
    assert await backend.wait_for_jobs("idle", timeout_s=2) is True


async def test_an_earlier_delayed_job_or_retry_wakes_an_idle_worker(backend: Backend) -> None:
    # Given an idle worker blocked on an empty queue (it would sleep until its next claim)
    await backend.register_worker(lease_of("w1", "idle"), T0)
    waiter = asyncio.create_task(backend.wait_for_jobs("idle", timeout_s=5))
    await asyncio.sleep(0.1)

    # When a job due in 5 s arrives, the worker wakes and its claim tells it when
    delayed = NewJob(
        id="d", task="t", queue="idle", payload=b"", enqueued_at_ms=T0, run_at_ms=T0 + 5000
    )
    await backend.enqueue_jobs([delayed, new_job("now", queue="idle")])
    assert await asyncio.wait_for(waiter, 2) is True
    batch = await backend.claim_jobs("idle", "w1", 10, LEASE_MS, T0)
    assert batch.next_due_ms == T0 + 5000

    # And when a failure asks for a retry sooner than that, an idle worker wakes again
    while await backend.wait_for_jobs("idle", timeout_s=0):
        pass  # drop leftover wake-ups
    waiter = asyncio.create_task(backend.wait_for_jobs("idle", timeout_s=5))
    await asyncio.sleep(0.1)
    (job,) = batch.jobs
    retry = Failure(
        job_id=job.id,
        queue="idle",
        fence=job.fence,
        error="E: x",
        traceback=None,
        retry_at_ms=T0 + 1000,
        finished_at_ms=T0,
    )
    assert await backend.fail_jobs("w1", [retry], 60_000) == [True]
    assert await asyncio.wait_for(waiter, 2) is True
    assert (await backend.claim_jobs("idle", "w1", 10, LEASE_MS, T0)).next_due_ms == T0 + 1000


async def test_cancelling_a_waiting_worker_always_stops_it(backend: Backend) -> None:
    # A cancel may land at any point of a call, including while a fresh connection is set
    # up; it must always end the caller's loop (never be swallowed).
    async def idle_forever(broker: Backend) -> None:
        while True:
            await broker.wait_for_jobs("idle", timeout_s=1)

    for yields in range(12):
        fresh = backend.clone()
        task = asyncio.create_task(idle_forever(fresh))
        try:
            for _ in range(yields):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=3)
            assert task in done, f"a cancel after {yields} yields was lost"
            assert task.cancelled()
        finally:
            task.cancel()
            await fresh.close()


async def test_wait_for_jobs_times_out_without_work(backend: Backend) -> None:
    started = time.perf_counter()

    assert await backend.wait_for_jobs("empty", timeout_s=0.2) is False
    assert time.perf_counter() - started < 2
