"""Broker contract: retrying every dead letter, and the bounds of the dead letters.

``retry_dead(queue, None, now)`` moves each job that was dead when the call began, once,
even while jobs die again during the call. A queue's dead letters keep at most `dead_max`
jobs and none older than `dead_ttl_ms` (options of the backend; 0: unbounded), trimmed
whenever jobs join them, the trimmed records deleted.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from corq.backends import Backend
from corq.backends.base import BATCH, ClaimedJob
from corq.job import JobStatus
from tests.contract.conftest import Broker, Damage
from tests.contract.jobs import (
    LATER,
    T0,
    Q,
    claim,
    failure,
    kill,
    new_job,
    record,
    register,
    wall_ms,
)

HOUR_MS = 3_600_000


async def dead_ids(backend: Backend) -> list[str]:
    return [job.id for job in await backend.list_dead(Q, limit=10_000)]


async def die(backend: Backend, worker: str, jobs: list[ClaimedJob], at_ms: int) -> None:
    """The jobs' attempts fail for good, at `at_ms` by the worker's clock."""
    failures = [failure(j, None, error="RuntimeError: again", at_ms=at_ms) for j in jobs]
    assert await backend.fail_jobs(worker, failures, 60_000) == [True] * len(jobs)


async def test_retry_all_moves_each_dead_job_once_while_jobs_die_again(
    backend: Backend, broker: Broker
) -> None:
    """The reproduced Redis bug: `dead retry --all` went on picking jobs from the live dead
    letters, so the jobs that died again during the command were retried again (9,000
    moves for 6,000 dead letters)."""
    # Given dead letters for several steps of the broker
    n = 3 * BATCH
    job_ids = [f"j{i}" for i in range(n)]
    await kill(backend, job_ids)
    # and a worker that, while the retry runs, claims each retried job and lets it die again
    worker = broker.open()
    await register(worker, "w1", T0 + 100)
    runs: Counter[str] = Counter()

    async def run_and_kill_retried_jobs(retry: asyncio.Task[int]) -> None:
        while True:
            jobs = await claim(worker, "w1", T0 + 100, count=50)
            if not jobs:
                if retry.done():
                    return
                await asyncio.sleep(0)
                continue
            runs.update(j.id for j in jobs)
            await die(worker, "w1", jobs, T0 + 200)

    # When an operator retries every dead letter
    retry = asyncio.create_task(backend.retry_dead(Q, None, T0 + 100))
    await run_and_kill_retried_jobs(retry)
    moved = await retry

    # Then each job dead at the start moved once, and ran once: none that died again during
    # the call was moved a second time
    assert moved <= n
    assert max(runs.values()) == 1
    assert sum(runs.values()) == moved
    assert moved == n
    assert sorted(await dead_ids(backend)) == sorted(job_ids)


async def test_dead_max_keeps_the_newest_dead_letters(broker: Broker) -> None:
    # Given a backend keeping at most 3 dead letters per queue
    backend = broker.open(dead_max=3)

    # When five jobs die, one after the other
    await kill(backend, ["a", "b", "c", "d", "e"])

    # Then the three newest are kept, the older records deleted
    assert await dead_ids(backend) == ["e", "d", "c"]
    assert await backend.get_job("a", Q) is None
    assert await backend.get_job("b", Q) is None
    (stats,) = await backend.queue_stats([Q])
    assert stats.dead == 3

    # And the bound holds as more join
    await kill(backend, ["f"], worker="w2", at_ms=T0 + 10)
    assert await dead_ids(backend) == ["f", "e", "d"]
    assert await backend.get_job("c", Q) is None


async def test_dead_max_bounds_every_way_into_the_dead_letters(
    broker: Broker, damage: Damage
) -> None:
    # Given a backend keeping one dead letter, and a job that failed for good at T0 + 1
    backend = broker.open(dead_max=1)
    await kill(backend, ["failed"])

    # When a damaged record is dead-lettered by a claim at T0 + 100
    await backend.enqueue_jobs([new_job("damaged")])
    await damage.set_field(Q, "damaged", "attempt", "seven")
    await register(backend, "w1", T0 + 100)
    assert await claim(backend, "w1", T0 + 100) == []
    # Then only the newest is kept
    assert await dead_ids(backend) == ["damaged"]
    assert await backend.get_job("failed", Q) is None

    # When a job reaches the backstop (max_deaths=1: 3 deaths), its last worker dying later
    await backend.enqueue_jobs([new_job("backstop")])
    now = T0 + 200
    for n in range(3):
        await register(backend, f"k{n}", now)
        assert [j.id for j in await claim(backend, f"k{n}", now, suspects=1)] == ["backstop"]
        now += LATER
        await backend.reclaim_stalled_jobs(Q, now, max_deaths=1)
    # Then it is the one dead letter kept
    assert await dead_ids(backend) == ["backstop"]
    assert await backend.get_job("damaged", Q) is None


async def test_dead_ttl_drops_old_dead_letters_as_new_ones_join(broker: Broker) -> None:
    # Given a backend keeping dead letters for an hour
    backend = broker.open(dead_ttl_ms=HOUR_MS)
    now = wall_ms()
    await backend.enqueue_jobs([new_job(job_id) for job_id in ("old1", "old2", "recent", "new")])
    await register(backend, "w1", None)
    held = {j.id: j for j in await claim(backend, "w1", None)}

    # When two jobs died two hours ago, one a minute ago, and then one dies now
    await die(backend, "w1", [held["old1"], held["old2"]], now - 2 * HOUR_MS)
    await die(backend, "w1", [held["recent"]], now - 60_000)
    await die(backend, "w1", [held["new"]], now)

    # Then the ones older than an hour are gone, records and all
    assert await dead_ids(backend) == ["new", "recent"]
    assert await backend.get_job("old1", Q) is None
    assert await backend.get_job("old2", Q) is None
    assert (await record(backend, "recent")).status == JobStatus.DEAD


async def test_dead_letters_are_unbounded_by_default(backend: Backend) -> None:
    job_ids = [f"j{i}" for i in range(50)]

    await kill(backend, job_ids)

    assert sorted(await dead_ids(backend)) == sorted(job_ids)
