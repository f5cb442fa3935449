"""Weighted queues and the one-round-trip fetch path, on each broker: what a user sees of
the shares of started jobs, and of the worker's concurrency while jobs are handed over."""

from __future__ import annotations

import asyncio

import pytest

import corq
from corq.backends.base import ClaimedJob
from corq.worker.observer import WorkerObserver
from tests.waiting import until

WEIGHTS = {"high": 5, "default": 2, "low": 1}


class Starts(WorkerObserver):
    """The queue of every job the worker started, in order."""

    def __init__(self) -> None:
        self.queues: list[str] = []

    def job_started(self, job: ClaimedJob) -> None:
        self.queues.append(job.queue)


@pytest.mark.slow
async def test_started_jobs_follow_the_queue_weights_under_load(app: corq.App) -> None:
    release = asyncio.Event()

    @app.task
    async def work(n: int) -> None:
        await release.wait()

    # Given three queues kept full (more jobs each than the measured starts)
    for queue in WEIGHTS:
        await work.with_options(queue=queue).enqueue_many([(n,) for n in range(400)])
    starts = Starts()
    # When a worker with 4 slots serves them by weight and its jobs end one at a time
    worker = corq.Worker(app, queues=WEIGHTS, concurrency=4, observers=[starts], scheduler=False)
    async with worker:
        await until(lambda: len(starts.queues) >= 4, what="the first claims")
        while len(starts.queues) < 404:
            seen = len(starts.queues)
            release.set()
            release.clear()  # every waiting job ends; the freed slots are claimed again
            await until(lambda seen=seen: len(starts.queues) > seen, what="more starts")
        release.set()
        await worker.stop(0)
    # Then each queue's share of the first 400 starts after the first claim is its weight's
    measured = starts.queues[4:404]
    for queue, weight in WEIGHTS.items():
        share = measured.count(queue) / len(measured)
        assert share == pytest.approx(weight / 8, rel=0.10), (queue, share)


async def test_an_empty_queue_gives_its_share_to_the_others(app: corq.App) -> None:
    @app.task
    async def noop(n: int) -> int:
        return n

    # Given a heavy queue with nothing in it and a light one with work
    handles = await noop.with_options(queue="low").enqueue_many([(n,) for n in range(50)])
    starts = Starts()
    async with corq.Worker(
        app, queues={"high": 100, "low": 1}, concurrency=5, observers=[starts], scheduler=False
    ):
        # Then the light queue's jobs all run (nothing waits on the empty one's share)
        assert [await h.result(timeout=10) for h in handles] == list(range(50))
    assert starts.queues == ["low"] * 50


async def test_jobs_handed_to_an_idle_worker_never_exceed_its_concurrency(app: corq.App) -> None:
    running = 0
    most = 0

    @app.task
    async def tick(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)  # the job's own work, so that starts overlap if they can
        running -= 1
        return n

    # Given an idle worker with 2 slots (its claim listed it idle, holding one back)
    async with corq.Worker(app, queues=["default"], concurrency=2, scheduler=False) as worker:
        await until(lambda: worker.leases.lease is not None, what="the worker serving")
        # When jobs arrive one by one and in bursts while it waits
        handles = [await tick.enqueue(n) for n in range(10)]
        handles += await tick.enqueue_many([(n,) for n in range(10, 40)])
        # Then they all run, never more than 2 at once
        assert [await h.result(timeout=20) for h in handles] == list(range(40))
    assert most == 2


def test_queue_weights_must_be_positive_integers(app: corq.App) -> None:
    for bad in (0, -1, 1.5, "2", True, 1001):
        with pytest.raises(corq.FlowRuleError, match="weight of queue 'high'"):
            corq.Worker(app, queues={"high": bad})  # type: ignore[dict-item]  # the point
    with pytest.raises(corq.ConfigError, match="not the str"):
        corq.Worker(app, queues="high")
    assert corq.Worker(app, queues=["a", "b", "a"]).weights == {"a": 1, "b": 1}
    assert corq.Worker(app, queues={"a": 3}).queues == ["a"]
