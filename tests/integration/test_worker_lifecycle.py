"""One lifecycle for every worker (`async with`, start, stop(timeout)), its observers, and the
registry the heartbeat reads; on both brokers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

import corq
from corq.backends.base import ClaimedJob, Completion, Failure, Release
from corq.worker.observer import WorkerObserver
from tests.waiting import until


async def _until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    await until(predicate, timeout, what, interval=0.01)


@dataclass
class Recorder(WorkerObserver):
    """Writes down every hook call as (hook, job id)."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def job_started(self, job: ClaimedJob) -> None:
        self.calls.append(("started", job.id))

    def job_succeeded(self, job: ClaimedJob, completion: Completion) -> None:
        assert completion.job_id == job.id
        self.calls.append(("succeeded", job.id))

    def job_retried(self, job: ClaimedJob, failure: Failure) -> None:
        assert failure.retry_at_ms is not None
        self.calls.append(("retried", job.id))

    def job_dead(self, job: ClaimedJob, failure: Failure) -> None:
        self.calls.append(("dead", job.id))

    def job_released(self, job: ClaimedJob, release: Release) -> None:
        self.calls.append(("released", job.id))

    def job_lost(self, job: ClaimedJob) -> None:
        self.calls.append(("lost", job.id))

    def of(self, job_id: str) -> list[str]:
        return [hook for hook, jid in self.calls if jid == job_id]


class Raising(WorkerObserver):
    """Every hook raises."""

    def job_started(self, job: ClaimedJob) -> None:
        raise RuntimeError("observer bug")

    def job_succeeded(self, job: ClaimedJob, completion: Completion) -> None:
        raise RuntimeError("observer bug")


# -- lifecycle ---------------------------------------------------------------------------
async def test_stop_with_a_timeout_releases_the_jobs_still_running(app: corq.App) -> None:
    @app.task
    async def forever() -> None:
        await asyncio.sleep(3600)

    # Given a started worker running three jobs that never end
    handles = await forever.enqueue_many([() for _ in range(3)])
    worker = corq.Worker(app, grace_s=30)
    await worker.start()
    await _until(lambda: worker.running_count == 3, what="three jobs running")
    # When it is stopped with a short timeout (not its 30 s grace)
    began = time.monotonic()
    await worker.stop(timeout=0.2)
    # Then it stops soon, and the jobs are back in their queue, the attempt uncounted
    assert time.monotonic() - began < 10
    assert worker.stopped
    for handle in handles:
        record = await handle.info()
        assert (record.status, record.attempt) == (corq.JobStatus.QUEUED, 1)
    assert worker.counts.released == 3


async def test_leaving_the_block_on_an_exception_stops_the_worker_and_releases(
    app: corq.App,
) -> None:
    @app.task
    async def forever() -> None:
        await asyncio.sleep(3600)

    handle = await forever.enqueue()
    worker = corq.Worker(app, grace_s=0.1)

    async def block() -> None:
        async with worker:
            await _until(lambda: worker.running_count == 1, what="the job to run")
            raise ValueError("the block failed")

    # When the block raises while the worker runs a job
    with pytest.raises(ValueError, match="the block failed"):
        await block()
    # Then the exception goes through, the worker stopped, and the job went back
    assert worker.stopped
    assert (await handle.status()) == corq.JobStatus.QUEUED


async def test_a_worker_starts_once(app: corq.App) -> None:
    worker = corq.Worker(app)
    await worker.start()
    with pytest.raises(RuntimeError, match="started already"):
        await worker.start()
    await worker.stop()
    with pytest.raises(RuntimeError, match="started already"):
        await worker.start()
    await worker.stop()  # stopping again is harmless


async def test_a_worker_never_started_has_nothing_to_stop(app: corq.App) -> None:
    worker = corq.Worker(app)
    await worker.stop()
    assert not worker.stopped
    with pytest.raises(RuntimeError, match="not started"):
        await worker.wait()


async def test_an_immediate_stop_writes_nothing(app: corq.App) -> None:
    @app.task
    async def forever() -> None:
        await asyncio.sleep(3600)

    handle = await forever.enqueue()
    async with corq.Worker(app) as worker:
        await _until(lambda: worker.running_count == 1, what="the job to run")
        await worker.stop(immediate=True)
        # Then the job is still held by the (as if dead) worker: its lease will expire
        assert (await handle.status()) == corq.JobStatus.RUNNING
        assert worker.counts.lost == 1


async def test_cancelling_a_wait_stops_the_worker_at_once(app: corq.App) -> None:
    worker = corq.Worker(app)
    await worker.start()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(worker.wait(), 0.2)
    assert worker.stopped


async def test_a_start_that_cannot_reach_the_broker_can_be_given_up() -> None:
    app = corq.App("redis://127.0.0.1:1/0", socket_timeout_s=0.2)
    worker = corq.Worker(app)
    # When the start is abandoned while it retries the unreachable broker
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(worker.start(), 0.5)
    # Then the worker is stopped, with no task left behind
    assert worker.stopped
    await worker.stop()
    await app.aclose()


async def test_a_burst_worker_runs_until_the_queues_are_empty(app: corq.App) -> None:
    @app.task
    async def echo(x: int) -> int:
        return x

    await echo.enqueue_many([(n,) for n in range(20)])
    worker = corq.Worker(app, burst=True, grace_s=0)
    await asyncio.wait_for(worker.run(), 30)
    assert (worker.counts.started, worker.counts.succeeded) == (20, 20)


# -- observers ---------------------------------------------------------------------------
async def test_observers_hear_each_outcome(app: corq.App) -> None:
    attempts: dict[str, int] = {}

    @app.task
    async def ok() -> str:
        return "ok"

    @app.task(retries=1, backoff=0.05, jitter=False)
    async def flaky() -> str:
        n = attempts["flaky"] = attempts.get("flaky", 0) + 1
        if n == 1:
            raise ValueError("first attempt fails")
        return "ok"

    @app.task(retries=0)
    async def broken() -> None:
        raise ValueError("always")

    @app.task
    async def forever() -> None:
        await asyncio.sleep(3600)

    recorder = Recorder()
    worker = corq.Worker(app, observers=[recorder], grace_s=0)
    async with worker:
        a, b, c, d = (
            await ok.enqueue(),
            await flaky.enqueue(),
            await broken.enqueue(),
            await forever.enqueue(),
        )
        assert await a.result(timeout=10) == "ok"
        assert await b.result(timeout=10) == "ok"
        with pytest.raises(corq.JobFailedError):
            await c.result(timeout=10)
        await _until(lambda: recorder.of(d.id) == ["started"], what="forever to start")
    assert recorder.of(a.id) == ["started", "succeeded"]
    assert recorder.of(b.id) == ["started", "retried", "started", "succeeded"]
    assert recorder.of(c.id) == ["started", "dead"]
    assert recorder.of(d.id) == ["started", "released"]
    counts = worker.counts
    assert (counts.started, counts.succeeded, counts.retried, counts.dead, counts.released) == (
        5,
        2,
        1,
        1,
        1,
    )
    assert counts.failed == 2


async def test_observers_hear_of_jobs_lost_with_the_lease(
    fake_app: tuple[corq.App, corq.FakeClock],
) -> None:
    app, _ = fake_app
    gate = asyncio.Event()

    @app.task
    async def wait_gate() -> None:
        await gate.wait()

    recorder = Recorder()
    async with corq.Worker(app, observers=[recorder]) as worker:
        handle = await wait_gate.enqueue()
        await _until(lambda: worker.running_count == 1, what="the job to run")
        # When the queue's lease is lost, Then the job is stopped, nothing written
        await worker.leases.recover_lost([("default", worker.lease.holder("default"))])
        await _until(lambda: worker.running_count == 0, what="the job to stop")
    assert recorder.of(handle.id) == ["started", "lost"]


async def test_an_observer_that_raises_does_not_break_the_worker(
    app: corq.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    async def echo(x: int) -> int:
        return x

    recorder = Recorder()
    with caplog.at_level(logging.ERROR, logger="corq"):
        async with corq.Worker(app, observers=[Raising(), recorder]) as worker:
            handles = await echo.enqueue_many([(n,) for n in range(3)])
            assert [await h.result(timeout=10) for h in handles] == [0, 1, 2]
            await _until(lambda: worker.counts.succeeded == 3, what="outcomes settled")
    # Then the observers after it heard everything, and the failure was logged once per hook
    assert sorted(h for h, _ in recorder.calls) == ["started"] * 3 + ["succeeded"] * 3
    failures = [r.getMessage() for r in caplog.records if "observer Raising" in r.getMessage()]
    assert sorted(failures) == [
        "observer Raising raised in job_started; ignored (not logged again for this hook)",
        "observer Raising raised in job_succeeded; ignored (not logged again for this hook)",
    ]


# -- the registry the heartbeat reads ----------------------------------------------------
async def test_the_registry_knows_which_job_a_task_runs(app: corq.App) -> None:
    seen: list[str | None] = []

    @app.task
    async def whoami() -> None:
        running = worker.registry.running_in(asyncio.current_task())
        seen.append(None if running is None else running.job.id)

    worker = corq.Worker(app)
    async with worker:
        handle = await whoami.enqueue()
        await handle.result(timeout=10)
    assert seen == [handle.id]
    assert worker.registry.running_in(asyncio.current_task()) is None
