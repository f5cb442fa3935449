"""A worker's published facts as operators read them (`app.admin().workers()`)."""

from __future__ import annotations

import asyncio
import os
import socket

import corq
from corq.testing import run_worker
from corq.worker.facts import TTL_LEASES
from corq.worker_info import MAX_RUNNING_LISTED, WorkerState
from tests.waiting import until


async def test_a_worker_publishes_its_facts_and_the_job_it_runs(
    fake_app: tuple[corq.App, corq.FakeClock],
) -> None:
    app, clock = fake_app
    gate = asyncio.Event()

    @app.task(timeout=30)
    async def slow(n: int) -> int:
        await gate.wait()
        return n

    @app.task
    def quick() -> str:
        return "ok"

    admin = app.admin()
    async with run_worker(app, queues={"default": 3}, concurrency=7) as worker:
        # Given a worker that ran one plain function and now runs a coroutine job
        await (await quick.enqueue()).result(timeout=5)
        handle = await slow.enqueue(1)
        await until(lambda: worker.running_count == 1, what="the job to start")

        # When a heartbeat interval passes
        clock.advance(app.settings.heartbeat_s)

        async def published() -> bool:
            infos = await admin.workers()
            return bool(infos) and len(infos[0].running) == 1

        await until(published, what="facts listing the running job")

        # Then its facts say who it is, what it serves and what it runs
        (info,) = await admin.workers()
        assert info.worker_id == worker.worker_id
        assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
        assert info.version == corq.__version__
        assert dict(info.queues) == {"default": 3}
        assert info.concurrency == 7
        assert info.state is WorkerState.ALIVE
        assert info.rss_bytes > 1_000_000
        assert info.heartbeat_at_ms == clock.now_ms()
        (job,) = info.running
        assert info.in_flight == 1
        assert (job.job_id, job.queue, job.task) == (handle.id, "default", slow.name)
        assert (job.attempt, job.timeout_ms, job.executor) == (1, 30_000, "async")
        assert info.counts["succeeded"] == 1
        assert info.queue_counts == {"default": {"succeeded": 1, "failed": 0}}
        assert info.durations[quick.name].count == 1
        # And the operator's view of running jobs has it, with its run time so far
        clock.advance(3)
        (view,) = await admin.running()
        assert (view.worker_id, view.job.job_id, view.run_ms) == (
            worker.worker_id,
            handle.id,
            clock.now_ms() - job.started_at_ms,
        )
        assert not view.is_stuck
        gate.set()
        await handle.result(timeout=5)

    # And a clean stop removes it from the registry
    assert await admin.workers() == []


async def test_a_killed_worker_is_lost_after_its_lease_then_removed(
    fake_app: tuple[corq.App, corq.FakeClock],
) -> None:
    # Given a worker that published and then died (nothing more written)
    app, clock = fake_app
    admin = app.admin()
    worker = corq.Worker(app)
    await worker.start()
    await until(admin.workers, what="the worker's first facts")
    await worker.stop(immediate=True)
    (info,) = await admin.workers()
    assert info.state is WorkerState.ALIVE

    # When its lease passes, it is shown as lost
    clock.advance(app.settings.lease_s + 0.001)
    assert [i.state for i in await admin.workers()] == [WorkerState.LOST]

    # Then once its ttl has passed, it is gone
    clock.advance(app.settings.lease_s * (TTL_LEASES - 1))
    assert await admin.workers() == []


async def test_a_stopping_worker_says_so_while_it_drains(app: corq.App) -> None:
    gate = asyncio.Event()

    @app.task
    async def held() -> None:
        await gate.wait()

    admin = app.admin()
    worker = corq.Worker(app, grace_s=30)
    await worker.start()
    await held.enqueue()
    await until(lambda: worker.running_count == 1, what="the job to start")

    # When the worker is asked to stop while a job still runs
    worker.request_stop()

    async def stopping() -> bool:
        return [i.state for i in await admin.workers()] == [WorkerState.STOPPING]

    # Then its facts say it is stopping, and it leaves the registry once stopped
    await until(stopping, what="the stopping state")
    gate.set()
    await worker.wait()
    assert await admin.workers() == []


async def test_a_busy_worker_lists_its_oldest_jobs_and_counts_them_all(
    fake_app: tuple[corq.App, corq.FakeClock],
) -> None:
    app, clock = fake_app
    gate = asyncio.Event()

    @app.task
    async def wait() -> None:
        await gate.wait()

    admin = app.admin()
    total = MAX_RUNNING_LISTED + 200
    async with run_worker(app, concurrency=total) as worker:
        # Given more running jobs than the facts list
        handles = await wait.enqueue_many([() for _ in range(total)])
        await until(lambda: worker.running_count == total, what="every job to start")

        # When a heartbeat passes
        clock.advance(app.settings.heartbeat_s)

        async def counted() -> bool:
            return [i.in_flight for i in await admin.workers()] == [total]

        # Then they are all counted, the oldest claims listed
        await until(counted, what="facts counting every job")
        (info,) = await admin.workers()
        assert len(info.running) == MAX_RUNNING_LISTED
        assert {j.job_id for j in info.running} <= {h.id for h in handles}
        gate.set()


async def test_a_job_cancelled_by_an_operator_leaves_the_facts_and_is_counted(
    app: corq.App,
) -> None:
    @app.task
    async def forever() -> None:
        await asyncio.Event().wait()

    admin = app.admin()
    async with run_worker(app) as worker:
        # Given a running job listed in the worker's facts
        handle = await forever.enqueue()

        async def listed(count: int) -> bool:
            return [len(i.running) for i in await admin.workers()] == [count]

        await until(lambda: listed(1), what="the job in the facts")

        # When an operator cancels it
        await admin.cancel(handle.id)

        # Then the next heartbeats list nothing and count it cancelled
        await until(lambda: listed(0), what="the job gone from the facts")
        (info,) = await admin.workers()
        assert info.counts["cancelled"] == 1
        assert worker.running_count == 0
