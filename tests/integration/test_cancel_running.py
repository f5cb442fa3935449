"""Cancelling running jobs in a worker: a coroutine is cancelled, a thread sees its flag
(and is abandoned after ``cancel_grace_s``), a child process is killed. The state is
cancelled and nothing the worker does afterwards brings the job back."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import psutil
import pytest

import corq
from corq.testing import run_worker
from tests.integration import cancel_tasks
from tests.waiting import until


async def status_of(handle: corq.JobHandle[object]) -> corq.JobStatus:
    return await handle.status()


async def test_a_running_coroutine_is_cancelled_at_once(app: corq.App) -> None:
    started, stopped_at = asyncio.Event(), []

    @app.task(retries=3)
    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped_at.append(time.monotonic())
            raise

    async with run_worker(app) as worker:
        job = await forever.enqueue()
        await asyncio.wait_for(started.wait(), 10)

        asked = time.monotonic()
        assert await job.cancel() is True

        await until(lambda: worker.counts.cancelled == 1, what="the worker stopped it")
        assert stopped_at
        assert stopped_at[0] - asked < 0.5
        assert await status_of(job) is corq.JobStatus.CANCELLED
        assert (worker.counts.retried, worker.counts.lost) == (0, 0)
        with pytest.raises(corq.JobCancelledError):
            await job.result(timeout=1)
        assert await job.cancel() is False  # once


async def test_a_running_thread_sees_its_flag_and_stops(app: corq.App) -> None:
    saw = threading.Event()

    @app.task
    def loop_until_cancelled() -> None:
        while True:
            if corq.current_job().cancelled:
                saw.set()
            corq.current_job().check_cancelled()  # raises JobCancelledError once cancelled
            time.sleep(0.005)

    async with run_worker(app) as worker:
        job = await loop_until_cancelled.enqueue()
        await until(lambda: worker.counts.started == 1 and worker.registry.executing())
        assert await job.cancel() is True

        await until(lambda: worker.counts.cancelled == 1, what="the thread returned")
        assert saw.is_set()
        assert await status_of(job) is corq.JobStatus.CANCELLED
        assert worker.counts.failed == 0


async def test_a_thread_that_ignores_its_flag_is_abandoned_after_the_grace(
    broker_url: str, prefix: str
) -> None:
    app = corq.App(broker_url, prefix=prefix, cancel_grace_s=0.2, lease_s=2, heartbeat_s=0.2)
    release = threading.Event()

    @app.task
    def stubborn() -> None:
        release.wait(30)

    try:
        async with run_worker(app) as worker:
            job = await stubborn.enqueue()
            await until(lambda: bool(worker.registry.executing()) and worker.counts.started == 1)
            await until(lambda: all(r.started for r in worker.registry.executing()))
            assert await job.cancel() is True

            await until(lambda: worker.counts.cancelled == 1, what="its slot given up")
            assert not worker.registry.executing()
            assert await status_of(job) is corq.JobStatus.CANCELLED
            release.set()
    finally:
        release.set()
        await app.aclose()


async def test_a_running_process_job_is_killed(app: corq.App, tmp_path: Path) -> None:
    sleeper = app.task(process=True)(cancel_tasks.sleep_in_child)
    pid_path = tmp_path / "child.pid"

    async with run_worker(app) as worker:
        job = await sleeper.enqueue(str(pid_path))
        await until(lambda: pid_path.exists() and pid_path.read_text() != "", timeout=30)
        pid = int(pid_path.read_text())

        assert await job.cancel() is True

        await until(lambda: worker.counts.cancelled == 1, what="the child killed")
        await until(lambda: _gone(pid), what=f"child {pid} gone")
        assert await status_of(job) is corq.JobStatus.CANCELLED


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def test_a_worker_that_missed_the_message_stops_the_job_at_reconciliation(
    app: corq.App,
) -> None:
    started = asyncio.Event()

    @app.task
    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with run_worker(app) as worker:
        job = await forever.enqueue()
        await asyncio.wait_for(started.wait(), 10)
        # The broker cancels it, but no message is sent (as if the worker was cut off)
        assert await app.client().backend.cancel_job(job.id, job.queue, None) is True

        # (its next round, asked for now rather than in reconcile_s)
        assert worker._parts is not None
        worker._parts.reconciler.request_round()
        await until(lambda: worker.counts.cancelled == 1, what="reconciliation stopped it")
        assert await status_of(job) is corq.JobStatus.CANCELLED


async def test_a_cancelling_duplicate_stops_the_running_job(app: corq.App) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    @app.task(on_duplicate="cancel")
    async def render(version: str) -> str:
        runs.append(version)
        if version == "old":
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                stopped.set()
                raise
        return version

    async with run_worker(app) as worker:
        old = await render.with_options(unique_key="page").enqueue("old")
        await asyncio.wait_for(started.wait(), 10)

        new = await render.with_options(unique_key="page").enqueue("new")

        await asyncio.wait_for(stopped.wait(), 10)
        assert await new.result(timeout=10) == "new"
        assert await status_of(old) is corq.JobStatus.CANCELLED
        assert runs == ["old", "new"]
        assert worker.counts.cancelled == 1


async def test_cancelling_one_job_of_a_running_batch_lets_the_others_finish(
    app: corq.App,
) -> None:
    called, release = asyncio.Event(), asyncio.Event()

    @app.task(batch_size=2, batch_wait=5)
    async def bulk(items: list[int]) -> list[int]:
        called.set()
        await release.wait()
        return [i * 10 for i in items]

    async with run_worker(app) as worker:
        one, two = await bulk.enqueue_many([(1,), (2,)])
        await asyncio.wait_for(called.wait(), 10)

        assert await one.cancel() is True
        await until(lambda: _told(worker, one.id), what="the worker heard of the cancel")
        release.set()

        assert await two.result(timeout=10) == 20
        await until(lambda: worker.counts.cancelled == 1, what="the cancelled one dropped")
        assert await status_of(one) is corq.JobStatus.CANCELLED


def _told(worker: corq.Worker, job_id: str) -> bool:
    running = worker.registry.find(job_id)
    return running is not None and running.cancel_flag.raised
