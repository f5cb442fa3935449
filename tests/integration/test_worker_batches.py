"""Batched tasks on each broker: many jobs, one call, each job its own id, state and result."""

from __future__ import annotations

import asyncio

import pytest

import corq
from corq.testing import run_worker
from tests.waiting import until


async def test_250_jobs_run_in_three_calls_each_with_its_own_result(app: corq.App) -> None:
    calls: list[int] = []

    @app.task(batch_size=100, batch_wait=0.2)
    async def double(rows: list[int]) -> list[int]:
        calls.append(len(rows))
        return [row * 2 for row in rows]

    # Given 250 jobs waiting
    handles = await double.enqueue_many([(n,) for n in range(250)])
    # When a worker with room for a full batch runs them
    async with run_worker(app, concurrency=100):
        results = [await h.result(timeout=20) for h in handles]
    # Then every job succeeded with its own result, in at most a few calls of at most 100
    assert results == [n * 2 for n in range(250)]
    assert sum(calls) == 250
    assert len(calls) <= 4
    assert max(calls) == 100
    assert {(await h.info()).status for h in handles} == {corq.JobStatus.SUCCEEDED}


async def test_a_plain_function_batch_returning_none_succeeds_every_job(app: corq.App) -> None:
    seen: list[str] = []

    @app.task(batch_size=10)
    def store(rows: list[str]) -> None:
        seen.extend(rows)

    handles = await store.enqueue_many([(f"r{n}",) for n in range(25)])
    async with run_worker(app, concurrency=10):
        assert [await h.result(timeout=20) for h in handles] == [None] * 25
    assert sorted(seen) == sorted(f"r{n}" for n in range(25))


async def test_a_call_that_raises_retries_each_of_its_jobs(app: corq.App) -> None:
    calls: list[list[int]] = []

    @app.task(batch_size=5, batch_wait=0.2, retries=2, backoff=0)
    async def flaky(rows: list[int]) -> list[int]:
        calls.append(sorted(rows))
        if len(calls) == 1:
            raise RuntimeError("the bulk write failed")
        return rows

    # Given 5 jobs whose first call raises
    handles = await flaky.enqueue_many([(n,) for n in range(5)])
    async with run_worker(app, concurrency=5):
        results = [await h.result(timeout=20) for h in handles]
    # Then each job was retried on its own and succeeded on its second attempt
    assert results == list(range(5))
    assert calls[0] == list(range(5))
    infos = [await h.info() for h in handles]
    assert [i.attempt for i in infos] == [2] * 5
    assert sum(len(c) for c in calls[1:]) == 5


async def test_a_result_of_the_wrong_shape_fails_every_job(app: corq.App) -> None:
    @app.task(batch_size=3, batch_wait=0.2)
    async def short(rows: list[int]) -> list[int]:
        return rows[:1]

    handles = await short.enqueue_many([(n,) for n in range(3)])
    async with run_worker(app, concurrency=3):
        for handle in handles:
            with pytest.raises(corq.JobFailedError, match="one result per job"):
                await handle.result(timeout=20)


async def test_shutdown_gives_buffered_jobs_back_unstarted(app: corq.App) -> None:
    called = asyncio.Event()

    @app.task(batch_size=100, batch_wait=3600)
    async def slow_batch(rows: list[int]) -> list[int]:
        called.set()
        return rows

    # Given 3 jobs buffered, waiting for more (the batch is far from full, the wait long)
    handles = await slow_batch.enqueue_many([(n,) for n in range(3)])
    async with run_worker(app, concurrency=10) as worker:
        await until(lambda: len(worker.registry) == 3, what="three jobs buffered")
    # Then, stopped, the worker never called the function and gave them back unstarted
    assert not called.is_set()
    infos = [await h.info() for h in handles]
    assert {i.status for i in infos} == {corq.JobStatus.QUEUED}
    assert [i.attempt for i in infos] == [0] * 3
    # and the next worker runs them
    async with run_worker(app, concurrency=3):
        assert [await h.result(timeout=20) for h in handles] == [0, 1, 2]


async def test_a_batch_is_called_when_no_slot_is_left(app: corq.App) -> None:
    sizes: list[int] = []

    @app.task(batch_size=100, batch_wait=3600)
    async def fill(rows: list[int]) -> list[int]:
        sizes.append(len(rows))
        return rows

    # Given fewer slots than the batch size and a wait that never ends
    handles = await fill.enqueue_many([(n,) for n in range(8)])
    async with run_worker(app, concurrency=4):
        # Then each batch is called once the slots are full, not after the wait
        assert [await h.result(timeout=20) for h in handles] == list(range(8))
    assert sizes == [4, 4]
