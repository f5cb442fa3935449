"""Redis reclaim in bounded steps: a holder taken out at the first step stays out.

Reproduced before: with more than BATCH held jobs, the stalled holder's heartbeat landing
between two reclaim calls renewed its lease, so it kept running the jobs the first call had
already handed to others (1,000 jobs on two workers). These tests drive the script one step
at a time to put the heartbeat exactly there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from corq.backends.base import BATCH, Completion, Release, WorkerLease, backstop_deaths
from corq.backends.redis import RedisBackend
from corq.backends.redis.keys import RedisKeys
from corq.backends.redis.replies import StalledBatch
from corq.backends.redis.scripts import Scripts
from corq.job import JobStatus
from tests.contract.jobs import LATER, LEASE_MS, T0, Q, new_job

JOBS = 2 * BATCH + 500


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


def lease(worker: str, holder: str) -> WorkerLease:
    return WorkerLease(worker_id=worker, queues=[Q], lease_ms=LEASE_MS, holders={Q: holder})


async def hold_all(backend: RedisBackend, holder: str, count: int, now_ms: int) -> dict[str, int]:
    """`holder` claims `count` ready jobs; returns their fences by id."""
    fences: dict[str, int] = {}
    while len(fences) < count:
        batch = await backend.claim_jobs(
            Q, holder, min(BATCH, count - len(fences)), LEASE_MS, now_ms
        )
        assert batch.jobs, "fewer ready jobs than expected"
        fences.update((j.id, j.fence) for j in batch.jobs)
    return fences


async def reclaim_step(raw: Redis, prefix: str, now_ms: int) -> StalledBatch:
    """One bounded reclaim call, as RedisBackend.reclaim_stalled_jobs makes them."""
    scripts = Scripts(raw)
    call = scripts.reclaim_stalled_jobs(
        RedisKeys(prefix).queue(Q),
        now_ms=now_ms,
        max_deaths=3,
        backstop=backstop_deaths(3),
        ended_only=False,
    )
    return await scripts.run(call)


async def test_a_holder_stalled_over_many_reclaim_steps_learns_at_once_it_is_lost(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given holder a~1 holding more than two batches of jobs, stalled past its lease
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(JOBS)])
    stalled = lease("a", "a~1")
    await backend.register_worker(stalled, T0)
    held_by_a = await hold_all(backend, "a~1", JOBS, T0)
    now = T0 + LATER

    # When a reclaim takes its first bounded step
    first = await reclaim_step(raw, prefix, now)
    assert not first.done
    assert len(first.jobs) == BATCH

    # Then the stalled holder, waking between two steps, is told at once it is lost
    assert await backend.heartbeat(stalled, now) == [Q]
    assert (await backend.claim_jobs(Q, "a~1", 10, LEASE_MS, now)).lost
    assert await backend.count_held_jobs(Q, "a~1") == 0
    # (a job it still runs and that no one else got yet may still be finished by it)
    untaken = next(job_id for job_id in held_by_a if job_id not in {j.job_id for j in first.jobs})
    done = Completion(
        job_id=untaken, queue=Q, fence=held_by_a[untaken], result=b"", finished_at_ms=now
    )
    assert await backend.complete_jobs("a~1", [done], 60_000) == [True]

    # And a live holder takes the jobs given back while the reclaim goes on
    await backend.register_worker(lease("b", "b~1"), now)
    held_by_b = await hold_all(backend, "b~1", BATCH, now)
    assert set(held_by_b) == {j.job_id for j in first.jobs}
    steps = [first]
    while not steps[-1].done:
        steps.append(await reclaim_step(raw, prefix, now))
    assert len(steps) == 3

    # Then every job was taken back from a~1 exactly once, and none is held by two holders
    taken = [j.job_id for step in steps for j in step.jobs]
    assert len(taken) == len(set(taken)) == JOBS - 1
    assert {j.holder for step in steps for j in step.jobs} == {"a~1"}
    assert await backend.heartbeat(stalled, now) == [Q]
    b_listed = {h.job_id for h in await backend.list_held_jobs(Q, "b~1")}
    assert b_listed == set(held_by_b)
    (stats,) = await backend.queue_stats([Q])
    assert (stats.in_flight, stats.ready) == (BATCH, JOBS - 1 - BATCH)
    for job_id in held_by_a:
        job = await backend.get_job(job_id, Q)
        assert job is not None
        if job_id == untaken:
            assert job.status == JobStatus.SUCCEEDED
        elif job_id in held_by_b:
            assert (job.status, job.worker_id) == (JobStatus.RUNNING, "b~1")
        else:
            assert (job.status, job.worker_id, job.deaths) == (JobStatus.QUEUED, None, 1)


async def test_a_reused_holder_id_keeps_what_it_claims_while_its_old_jobs_are_taken_back(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    """Tools and tests register by hand under a fixed id: a new registration of an id being
    reclaimed must not lose the jobs it claims to the reclaim of the old one."""
    # Given w1 holding 1,500 jobs, stalled, and a first reclaim step taken
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(BATCH + 500)])
    old = lease("w1", "w1")
    await backend.register_worker(old, T0)
    fences = await hold_all(backend, "w1", BATCH + 500, T0)
    now = T0 + LATER
    first = await reclaim_step(raw, prefix, now)
    assert not first.done
    # and the stalled process gives back one job the reclaim did not reach yet
    given_back = next(job_id for job_id in fences if job_id not in {j.job_id for j in first.jobs})
    release = Release(job_id=given_back, queue=Q, fence=fences[given_back])
    assert await backend.release_jobs("w1", [release]) == [True]

    # When w1 registers again under the same id and claims every ready job, that one too
    await backend.register_worker(old, now)
    again = await hold_all(backend, "w1", BATCH + 1, now)
    assert given_back in again
    while not (await reclaim_step(raw, prefix, now)).done:
        pass

    # Then the new registration still holds everything it claimed, under its new fences
    listed = {h.job_id: h.fence for h in await backend.list_held_jobs(Q, "w1")}
    assert listed == again
    job = await backend.get_job(given_back, Q)
    assert job is not None
    assert (job.status, job.worker_id, job.deaths) == (JobStatus.RUNNING, "w1", 0)
    done = Completion(
        job_id=given_back, queue=Q, fence=again[given_back], result=b"", finished_at_ms=now
    )
    assert await backend.complete_jobs("w1", [done], 60_000) == [True]
    assert await backend.heartbeat(old, now) == []


async def test_many_stalled_holders_are_taken_in_bounded_steps(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given more stalled holders than one step takes, each holding one job
    holders = [f"h{i}" for i in range(BATCH + 10)]
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(len(holders))])
    for holder in holders:
        await backend.register_worker(lease(holder, holder), T0)
        await hold_all(backend, holder, 1, T0)

    # When the broker reclaims
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=3)

    # Then every job came back once, and no holder is left registered
    assert sorted(r.job_id for r in reclaimed) == sorted(f"j{i}" for i in range(len(holders)))
    assert not await raw.exists(RedisKeys(prefix).queue(Q).workers)
    assert not await raw.exists(RedisKeys(prefix).queue(Q).reclaiming)
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.in_flight, stats.workers) == (len(holders), 0, 0)
