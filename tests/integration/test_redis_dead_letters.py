"""Redis dead letters: ``retry_dead`` of all works through a snapshot; bounds are trimmed.

Reproduced before: ``dead retry --all`` popped from the live dead letters batch by batch, so
jobs that died again during the command were retried again (9,000 moves for 6,000 dead
letters). These tests drive the script one step at a time to kill jobs between two steps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import pytest
from redis.asyncio import Redis

from corq.backends.base import BATCH, Failure
from corq.backends.redis import RedisBackend
from corq.backends.redis.keys import RedisKeys
from corq.backends.redis.scripts import SNAPSHOT_TTL_MS, Scripts
from corq.job import JobStatus
from tests.contract.jobs import LEASE_MS, T0, Q, kill

DEAD = 2 * BATCH + 500


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


async def claim_and_kill(backend: RedisBackend, count: int, now_ms: int) -> set[str]:
    """Worker "killer" (registered by kill()) claims `count` ready jobs and fails each for
    good."""
    batch = await backend.claim_jobs(Q, "killer", count, LEASE_MS, now_ms)
    failures = [
        Failure(
            job_id=j.id,
            queue=Q,
            fence=j.fence,
            error="RuntimeError: again",
            traceback=None,
            retry_at_ms=None,
            finished_at_ms=now_ms,
        )
        for j in batch.jobs
    ]
    assert await backend.fail_jobs("killer", failures, 60_000) == [True] * len(failures)
    return {j.id for j in batch.jobs}


async def test_retry_all_moves_each_job_dead_at_the_start_once_while_jobs_die_again(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given more than two batches of dead letters
    await kill(backend, [f"d{i}" for i in range(DEAD)])
    keys = RedisKeys(prefix).queue(Q)
    scripts = Scripts(raw)
    snapshot = keys.retrying("test")

    def step(first: bool) -> Awaitable[tuple[int, int]]:
        """One bounded call, as RedisBackend.retry_dead makes them."""
        return scripts.run(
            scripts.retry_dead_jobs(
                keys, job_ids=(), now_ms=T0 + 10, snapshot=snapshot, take_snapshot=first
            )
        )

    # When the first step has queued a batch, and those jobs all die again at once
    assert await step(True) == (BATCH, BATCH)
    assert 0 < await raw.pttl(snapshot) <= SNAPSHOT_TTL_MS
    died_again = await claim_and_kill(backend, BATCH, T0 + 20)
    assert len(died_again) == BATCH

    # and the retry goes on to the end
    moved = [await step(False)]
    while moved[-1][1] == BATCH:
        moved.append(await step(False))

    # Then each job dead at the start moved once, and the ones that died again stay dead
    assert BATCH + sum(m for m, _ in moved) == DEAD
    dead = {j.id for j in await backend.list_dead(Q, limit=10 * BATCH)}
    assert dead == died_again
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.dead) == (DEAD - BATCH, BATCH)
    assert not await raw.exists(snapshot)


async def test_retry_all_leaves_no_snapshot_behind(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await kill(backend, [f"d{i}" for i in range(BATCH)])  # exactly one batch: one more step

    assert await backend.retry_dead(Q, None, T0 + 10) == BATCH

    assert await raw.keys(f"{prefix}:*retrying*") == []
    job = await backend.get_job("d0", Q)
    assert job is not None
    assert (job.status, job.run_at_ms, job.failures) == (JobStatus.QUEUED, T0 + 10, 0)


async def test_trimmed_dead_letters_lose_their_records(redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, dead_max=3)
    try:
        await kill(backend, [f"d{i}" for i in range(5)])

        assert [j.id for j in await backend.list_dead(Q)] == ["d4", "d3", "d2"]
        assert await backend.get_job("d0", Q) is None
        assert await backend.get_job("d1", Q) is None
    finally:
        await backend.close()
