"""Broker contract: what a holder holds, as a worker reconciling with the broker sees it.

Every job is added to the holder's held set as it is claimed, so ``count_held_jobs`` (cheap)
and ``list_held_jobs`` (ids with fences, in bounded steps) always match what the claims
returned and the outcomes took away.
"""

from __future__ import annotations

from corq.backends import Backend
from corq.backends.base import BATCH, ClaimedJob, HeldJob
from tests.contract.conftest import Damage
from tests.contract.jobs import (
    LATER,
    T0,
    Q,
    claim,
    completion,
    failure,
    new_job,
    register,
    release,
)


def as_held(jobs: list[ClaimedJob]) -> list[HeldJob]:
    return sorted((HeldJob(job_id=j.id, fence=j.fence) for j in jobs), key=lambda h: h.job_id)


async def listed(backend: Backend, holder: str, queue: str = Q) -> list[HeldJob]:
    return sorted(await backend.list_held_jobs(queue, holder), key=lambda h: h.job_id)


async def test_held_jobs_follow_claims_and_outcomes(backend: Backend) -> None:
    # Given w1 holding four jobs claimed in two calls, and w2 one
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(5)])
    await register(backend, "w1")
    await register(backend, "w2")
    jobs = await claim(backend, "w1", count=3)
    jobs += await claim(backend, "w1", count=1)
    other = await claim(backend, "w2", count=1)

    # Then the broker says so, with the fences the claims handed out
    assert await backend.count_held_jobs(Q, "w1") == 4
    assert await listed(backend, "w1") == as_held(jobs)
    assert await listed(backend, "w2") == as_held(other)

    # When w1 completes one, releases one and fails one (to be retried)
    j0, j1, j2, j3 = jobs
    assert await backend.complete_jobs("w1", [completion(j0)], 60_000) == [True]
    assert await backend.release_jobs("w1", [release(j1)]) == [True]
    assert await backend.fail_jobs("w1", [failure(j2, T0 + 1_000)], 60_000) == [True]

    # Then only the last one is still held
    assert await backend.count_held_jobs(Q, "w1") == 1
    assert await listed(backend, "w1") == as_held([j3])


async def test_held_jobs_are_counted_per_holder_and_queue(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a", queue="q1"), new_job("b", queue="q2")])
    await register(backend, "w1", queue="q1")
    await register(backend, "w1", queue="q2")
    (a,) = await claim(backend, "w1", queue="q1")

    assert await backend.count_held_jobs("q1", "w1") == 1
    assert await listed(backend, "w1", "q1") == as_held([a])
    assert await backend.count_held_jobs("q2", "w1") == 0
    assert await backend.list_held_jobs("q2", "w1") == []
    assert await backend.count_held_jobs("q1", "stranger") == 0
    assert await backend.list_held_jobs("q1", "stranger") == []


async def test_every_job_of_a_big_holder_is_listed(backend: Backend) -> None:
    n = 2 * BATCH + 500
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(n)])
    await register(backend, "w1")
    jobs: list[ClaimedJob] = []
    while len(jobs) < n:
        jobs += await claim(backend, "w1", count=BATCH)

    assert await backend.count_held_jobs(Q, "w1") == n
    assert await listed(backend, "w1") == as_held(jobs)


async def test_a_reclaimed_holder_holds_nothing(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend, "w1")
    await claim(backend, "w1")

    await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=3)

    assert await backend.count_held_jobs(Q, "w1") == 0
    assert await backend.list_held_jobs(Q, "w1") == []


async def test_listing_drops_ids_whose_record_no_longer_says_they_are_held(
    backend: Backend, damage: Damage
) -> None:
    # Given w1 holding a, b and c, when b's record is deleted and c's is rewritten to say
    # another worker holds it (by another program)
    await backend.enqueue_jobs([new_job("a"), new_job("b"), new_job("c")])
    await register(backend, "w1")
    a, _, _ = await claim(backend, "w1")
    await damage.delete_record(Q, "b")
    await damage.set_field(Q, "c", "worker_id", "someone-else")

    # Then w1 is said to hold only a, and from then on the cheap count agrees
    assert await listed(backend, "w1") == as_held([a])
    assert await backend.count_held_jobs(Q, "w1") == 1
