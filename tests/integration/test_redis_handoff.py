"""Redis: one round trip to start a job. An idle holder's claim lists it; the next job made
ready is claimed for it and waits in its inbox, held and running, for ``await_jobs``.

The broker keeps the time here (now_ms=None): an enqueue has no caller's clock, so the
hand-over checks leases on the broker's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from corq.backends.base import Release, WorkerLease
from corq.backends.redis import RedisBackend
from corq.backends.redis.keys import RedisKeys
from corq.flow import TaskRules
from corq.job import JobStatus
from tests.contract.jobs import LEASE_MS, Q, completion, lease_of, new_job, record, wall_ms

WAIT_S = 5.0


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


async def idle_holder(backend: RedisBackend, worker: str, now_ms: int | None = None) -> WorkerLease:
    """`worker` registered, its claim finding nothing and listing it idle."""
    lease = lease_of(worker)
    await backend.register_worker(lease, now_ms)
    batch = await backend.claim_jobs(Q, worker, 10, LEASE_MS, now_ms, idle=True)
    assert batch.jobs == []
    assert batch.idle
    assert not batch.lost
    return lease


async def test_a_job_enqueued_to_an_idle_holder_arrives_held_running_and_fenced(
    backend: RedisBackend,
) -> None:
    # Given an idle holder
    await idle_holder(backend, "w1")

    # When a job is enqueued, and the holder awaits
    await backend.enqueue_jobs([new_job("a")])
    jobs = await backend.await_jobs(Q, "w1", WAIT_S)

    # Then it arrives claimed for it: running, attempt 1, its fence
    assert jobs is not None
    assert [j.id for j in jobs] == ["a"]
    job = jobs[0]
    assert (job.attempt, job.fence, job.payload, job.task) == (1, 1, b"{}", "tasks.add")
    stored = await record(backend, "a")
    assert (stored.status, stored.worker_id) == (JobStatus.RUNNING, "w1")
    # And its outcome is accepted under that fence
    assert await backend.complete_jobs("w1", [completion(job)], 60_000) == [True]
    assert (await record(backend, "a")).status is JobStatus.SUCCEEDED


async def test_two_idle_holders_each_get_one_of_two_jobs(backend: RedisBackend) -> None:
    # Given two idle holders
    await idle_holder(backend, "w1")
    await idle_holder(backend, "w2")

    # When two jobs are enqueued in one call
    await backend.enqueue_jobs([new_job("a"), new_job("b")])

    # Then each holder is handed one, and neither holds both
    first = await backend.await_jobs(Q, "w1", WAIT_S)
    second = await backend.await_jobs(Q, "w2", WAIT_S)
    assert first is not None
    assert second is not None
    assert sorted(j.id for j in first + second) == ["a", "b"]
    assert len(first) == len(second) == 1
    assert await backend.count_held_jobs(Q, "w1") == 1
    assert await backend.count_held_jobs(Q, "w2") == 1


async def test_a_holder_whose_lease_passed_is_handed_nothing(backend: RedisBackend) -> None:
    # Given a holder listed idle whose lease has passed (it was not reclaimed yet)
    await idle_holder(backend, "w1", now_ms=wall_ms() - 2 * LEASE_MS)

    # When a job is enqueued
    await backend.enqueue_jobs([new_job("a")])

    # Then nothing reaches its inbox; the job stays queued and wakes the wake list instead
    assert await backend.await_jobs(Q, "w1", 0.2) is None
    assert (await record(backend, "a")).status is JobStatus.QUEUED
    assert await backend.wait_for_jobs(Q, 0.2)


async def test_deregister_gives_jobs_in_the_inbox_back_unstarted(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given a job handed to an idle holder that never took it
    lease = await idle_holder(backend, "w1")
    await backend.enqueue_jobs([new_job("a")])
    assert (await record(backend, "a")).status is JobStatus.RUNNING

    # When the holder deregisters
    await backend.deregister_worker(lease, None)

    # Then the job is queued again, its attempt not counted, and the inbox is gone
    job = await record(backend, "a")
    assert (job.status, job.attempt, job.worker_id) == (JobStatus.QUEUED, 0, None)
    assert await raw.exists(RedisKeys(prefix).queue(Q).inbox("w1")) == 0
    # And another worker claims it as a first attempt
    await backend.register_worker(lease_of("w2"), None)
    batch = await backend.claim_jobs(Q, "w2", 10, LEASE_MS, None)
    assert [(j.id, j.attempt) for j in batch.jobs] == [("a", 1)]


async def test_a_reclaimed_idle_holder_loses_nothing(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given a job handed to an idle holder that then died
    await idle_holder(backend, "w1")
    await backend.enqueue_jobs([new_job("a")])

    # When its lease passes and it is reclaimed
    reclaimed = await backend.reclaim_stalled_jobs(Q, wall_ms() + 2 * LEASE_MS, max_deaths=3)

    # Then the job comes back unstarted (it never ran: no death), and the holder is gone
    assert [(r.job_id, r.released, r.dead) for r in reclaimed] == [("a", True, False)]
    job = await record(backend, "a")
    assert (job.status, job.attempt, job.deaths) == (JobStatus.QUEUED, 0, 0)
    keys = RedisKeys(prefix).queue(Q)
    assert await raw.exists(keys.inbox("w1")) == 0
    assert await raw.zscore(keys.idle, "w1") is None


async def test_a_new_delayed_head_wakes_an_idle_holder_without_a_job(
    backend: RedisBackend,
) -> None:
    # Given an idle holder
    await idle_holder(backend, "w1")

    # When a job is enqueued to run later
    await backend.enqueue_jobs([new_job("later", delay_ms=60_000)])

    # Then the holder is woken with nothing (it claims, and learns the new due time)
    assert await backend.await_jobs(Q, "w1", WAIT_S) == []
    assert (await record(backend, "later")).status is JobStatus.SCHEDULED


async def test_a_claim_without_idle_lists_nobody(backend: RedisBackend) -> None:
    # Given a holder whose plain claim found nothing
    await backend.register_worker(lease_of("w1"), None)
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None)
    assert (batch.jobs, batch.idle) == ([], False)

    # When a job is enqueued
    await backend.enqueue_jobs([new_job("a")])

    # Then it is not handed over: it waits ready, a wake token is pushed, a claim takes it
    assert await backend.await_jobs(Q, "w1", 0.2) is None
    assert await backend.wait_for_jobs(Q, 0.2)
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None)
    assert [(j.id, j.attempt) for j in batch.jobs] == [("a", 1)]


async def test_a_claim_that_takes_something_unlists_the_holder(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given an idle holder that then claims a job put in place behind the scripts' back
    await idle_holder(backend, "w1")
    keys = RedisKeys(prefix).queue(Q)
    await raw.zrem(keys.idle, "w1")
    await backend.enqueue_jobs([new_job("a")])
    await raw.zadd(keys.idle, {"w1": 1})
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None, idle=True)
    assert [j.id for j in batch.jobs] == ["a"]
    assert not batch.idle

    # When another job is enqueued
    await backend.enqueue_jobs([new_job("b")])

    # Then it is not handed to the busy holder
    assert await raw.zscore(keys.idle, "w1") is None
    assert await backend.await_jobs(Q, "w1", 0.2) is None
    assert (await record(backend, "b")).status is JobStatus.QUEUED


async def test_a_released_job_is_handed_to_an_idle_holder(backend: RedisBackend) -> None:
    # Given w1 holding a job and w2 idle
    await backend.register_worker(lease_of("w1"), None)
    await backend.enqueue_jobs([new_job("a")])
    (held,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, None)).jobs
    await idle_holder(backend, "w2")

    # When w1 gives it back unstarted
    release = Release(job_id="a", queue=Q, fence=held.fence, unstarted=True)
    assert await backend.release_jobs("w1", [release]) == [True]

    # Then w2 is handed it
    jobs = await backend.await_jobs(Q, "w2", WAIT_S)
    assert jobs is not None
    assert [(j.id, j.attempt) for j in jobs] == [("a", 1)]
    assert (await record(backend, "a")).worker_id == "w2"


async def test_a_job_over_its_task_limit_is_not_handed_over(backend: RedisBackend) -> None:
    # Given a task limited to one running job, w1 running one, and w2 idle
    await backend.set_rules(Q, [TaskRules(task="tasks.add", concurrency=1)])
    await backend.register_worker(lease_of("w1"), None)
    await backend.enqueue_jobs([new_job("a")])
    assert [j.id for j in (await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None)).jobs] == ["a"]
    await idle_holder(backend, "w2")

    # When a second job of that task is enqueued
    await backend.enqueue_jobs([new_job("b")])

    # Then w2 is woken without it (a bare wake), and it waits queued for a free slot
    assert await backend.await_jobs(Q, "w2", WAIT_S) == []
    assert (await record(backend, "b")).status is JobStatus.QUEUED
    assert (await backend.claim_jobs(Q, "w2", 10, LEASE_MS, None, idle=True)).jobs == []


async def test_a_freed_slot_hands_the_waiting_job_to_an_idle_holder(
    backend: RedisBackend,
) -> None:
    # Given a task limited to one running job, w1 running one, one more waiting, w2 idle
    await backend.set_rules(Q, [TaskRules(task="tasks.add", concurrency=1)])
    await backend.register_worker(lease_of("w1"), None)
    await backend.enqueue_jobs([new_job("a")])
    (running,) = (await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None)).jobs
    await backend.enqueue_jobs([new_job("b")])
    await idle_holder(backend, "w2")

    # When w1 completes its job (the slot frees)
    assert await backend.complete_jobs("w1", [completion(running)], 60_000) == [True]

    # Then the waiting job is handed to w2 under the limit
    jobs = await backend.await_jobs(Q, "w2", WAIT_S)
    assert jobs is not None
    assert [j.id for j in jobs] == ["b"]
    assert (await record(backend, "b")).worker_id == "w2"
