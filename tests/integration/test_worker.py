"""Worker + client end to end, in process, on a real Redis."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import corq
from corq.backends.base import NewJob
from corq.testing import drain, run_worker
from tests.waiting import until

FakeApp = tuple[corq.App, corq.FakeClock]


async def test_async_and_sync_tasks_return_results(app: corq.App) -> None:
    @app.task
    async def double(x: int) -> int:
        return x * 2

    @app.task
    def shout(word: str) -> str:
        assert threading.current_thread() is not threading.main_thread()
        return word.upper()

    async with run_worker(app):
        a = await double.enqueue(21)
        b = await shout.enqueue("hi")
        assert await a.result(timeout=5) == 42
        assert await b.result(timeout=5) == "HI"
        assert await a.status() == corq.JobStatus.SUCCEEDED


def square(x: int) -> int:
    return x * x


async def test_process_task_runs_in_another_process(app: corq.App) -> None:
    import os

    @app.task(process=True)
    def pid_of_worker() -> int:
        return os.getpid()

    # The pool child finds functions by module path, so register a module-level one too.
    sq = app.task(process=True)(square)
    async with run_worker(app):
        job = await pid_of_worker.enqueue()
        other = await sq.enqueue(7)
        assert await other.result(timeout=30) == 49
        with pytest.raises(corq.JobFailedError):
            # A function defined inside a test is not importable by the child: a clear failure.
            await job.result(timeout=30)


async def test_thousand_sleeping_jobs_at_concurrency_100(app: corq.App) -> None:
    @app.task
    async def nap() -> None:
        await asyncio.sleep(0.1)

    # Given 1,000 jobs that each sleep 0.1 s
    handles = await nap.enqueue_many([() for _ in range(1000)])
    # When one worker runs them 100 at a time
    started = time.monotonic()
    worker = await drain(app, concurrency=100, timeout=30)
    elapsed = time.monotonic() - started
    # Then all succeed in about 1 s (10 waves), well under 10 s
    assert worker.counts.succeeded == 1000
    assert elapsed < 5, elapsed
    assert await handles[-1].status() == corq.JobStatus.SUCCEEDED


async def test_failed_job_is_retried_then_dead_with_traceback(fake_app: FakeApp) -> None:
    app, clock = fake_app
    calls: list[int] = []

    @app.task(retries=2, backoff=10, jitter=False)
    async def flaky() -> None:
        calls.append(corq.current_job().attempt)
        raise ValueError("boom")

    async with run_worker(app):
        job = await flaky.enqueue()
        await _until(lambda: len(calls) == 1)
        await _until_status(job, corq.JobStatus.FAILED)
        # Backoff is 10 s then 20 s: nothing happens until the clock moves.
        clock.advance(9.9)
        await asyncio.sleep(0.2)
        assert calls == [1]
        clock.advance(0.1)
        await _until(lambda: len(calls) == 2)
        clock.advance(20)
        await _until(lambda: len(calls) == 3)
        with pytest.raises(corq.JobFailedError, match="ValueError: boom") as info:
            await job.result(timeout=5)
        assert info.value.traceback is not None
        assert "raise ValueError" in info.value.traceback
        record = await job.info()
        assert (record.status, record.attempt, record.failures) == ("dead", 3, 3)


async def test_retry_on_limits_which_errors_are_retried(app: corq.App) -> None:
    @app.task(retries=5, retry_on=(ConnectionError,))
    async def picky() -> None:
        raise KeyError("not retried")

    async with run_worker(app):
        job = await picky.enqueue()
        with pytest.raises(corq.JobFailedError, match="KeyError"):
            await job.result(timeout=5)
        assert (await job.info()).attempt == 1


async def test_task_can_ask_for_a_retry_with_a_delay(fake_app: FakeApp) -> None:
    app, clock = fake_app

    @app.task(retries=1)
    async def later() -> str:
        if corq.current_job().attempt == 1:
            raise corq.Retry("not yet", delay=60)
        return "done"

    async with run_worker(app):
        job = await later.enqueue()
        await _until_status(job, corq.JobStatus.FAILED)
        clock.advance(60)
        assert await job.result(timeout=5) == "done"


async def test_timeout_cancels_the_attempt_and_counts_it(app: corq.App) -> None:
    cancelled = asyncio.Event()

    @app.task(timeout=0.2)
    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with run_worker(app):
        job = await slow.enqueue()
        with pytest.raises(corq.JobFailedError, match=r"exceeded the task's 0\.2s timeout"):
            await job.result(timeout=5)
        assert cancelled.is_set()


async def test_unknown_task_goes_dead_and_the_worker_goes_on(app: corq.App) -> None:
    @app.task
    async def known() -> str:
        return "ok"

    async with run_worker(app):
        ghost = await app.client().enqueue("no_such_task", [1])
        with pytest.raises(corq.JobFailedError, match="unknown task 'no_such_task'"):
            await ghost.result(timeout=5)
        assert await (await known.enqueue()).result(timeout=5) == "ok"
    dead = await app.client().list_dead("default")
    assert [j.id for j in dead] == [ghost.id]


async def test_corrupted_payload_sends_only_that_job_to_dead_letters(app: corq.App) -> None:
    @app.task
    async def echo(x: int) -> int:
        return x

    now = app.clock.now_ms()
    bad = NewJob(
        id="bad1",
        task="echo",
        queue="default",
        payload=b"\xff\x00not json",
        enqueued_at_ms=now,
        run_at_ms=now,
    )
    await app.client().backend.enqueue_jobs([bad])
    async with run_worker(app):
        good = await echo.enqueue(5)
        assert await good.result(timeout=5) == 5
        with pytest.raises(corq.JobFailedError, match="corrupted job payload"):
            await app.job("bad1").result(timeout=5)


async def test_oversized_payload_is_refused_at_enqueue(broker_url: str, prefix: str) -> None:
    app = corq.App(broker_url, prefix=prefix, max_payload_bytes=1000)

    @app.task
    async def store(blob: str) -> None: ...

    with pytest.raises(corq.PayloadTooLargeError, match="over the limit of 1,000"):
        await store.enqueue("x" * 2000)
    assert await app.client().queue_stats() == []
    await app.aclose()


async def test_bad_arguments_are_refused_at_enqueue(app: corq.App) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(corq.ArgumentError, match="argument 'a'"):
        await add.enqueue("one", 2)  # type: ignore[arg-type]  # refused at run time too


async def test_cli_style_enqueue_with_bad_args_fails_at_execution(app: corq.App) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    # A producer without the task registered (like `corq enqueue`) cannot check the args.
    producer = corq.App(app.settings.url, prefix=app.settings.prefix)
    async with run_worker(app):
        job = await producer.client().enqueue("add", ["one", 2])
        with pytest.raises(corq.JobFailedError, match="argument 'a'"):
            await app.job(job.id).result(timeout=5)
    await producer.aclose()


async def test_delayed_job_starts_at_its_time(app: corq.App) -> None:
    started: list[float] = []

    @app.task
    async def mark() -> None:
        started.append(time.time())

    async with run_worker(app):
        await asyncio.sleep(0.1)  # the worker is idle, blocked on the wake list
        due = time.time() + 0.5
        job = await mark.with_options(delay=0.5).enqueue()
        assert await job.status() == corq.JobStatus.SCHEDULED
        await job.result(timeout=5)
    # The bench measures this precisely; here only that it is on time, not a poll late.
    assert 0 <= started[0] - due < 0.1, started[0] - due


async def test_priority_runs_first(app: corq.App) -> None:
    order: list[int] = []

    @app.task
    async def note(n: int) -> None:
        order.append(n)

    await note.enqueue(1)
    await note.with_options(priority=10).enqueue(2)
    await note.enqueue(3)
    await drain(app, concurrency=1)
    assert order == [2, 1, 3]


async def test_enqueue_sync_from_plain_code(app: corq.App) -> None:
    @app.task
    async def hello(name: str) -> str:
        return f"hello {name}"

    handle = await asyncio.to_thread(hello.enqueue_sync, "sync")
    async with run_worker(app):
        assert await app.job(handle.id).result(timeout=5) == "hello sync"


async def test_same_job_id_is_enqueued_once(app: corq.App) -> None:
    runs: list[str] = []

    @app.task
    async def once(x: str) -> None:
        runs.append(x)

    await once.with_options(job_id="unique-1").enqueue("a")
    await once.with_options(job_id="unique-1").enqueue("b")
    await drain(app)
    assert runs == ["a"]


async def test_blocking_task_is_named_in_the_log_and_keeps_its_lease(
    broker_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = corq.App(
        broker_url, prefix=prefix, heartbeat_s=0.1, lease_s=0.5, reclaim_s=0.1, loop_lag_warn_s=0.2
    )

    @app.task
    async def hog() -> str:
        time.sleep(1.2)  # noqa: ASYNC251  # blocks the loop on purpose: the mistake we report
        return "done"

    with caplog.at_level(logging.WARNING, logger="corq"):
        async with run_worker(app) as worker:
            job = await hog.enqueue()
            assert await job.result(timeout=10) == "done"
            assert worker.counts.lost == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("event loop was blocked" in m and "task 'hog'" in m for m in messages), messages
    assert not any("lease lost" in m for m in messages)
    await app.aclose()


async def test_graceful_stop_requeues_jobs_still_running_after_grace(app: corq.App) -> None:
    @app.task
    async def forever() -> None:
        await asyncio.sleep(3600)

    handles = await forever.enqueue_many([() for _ in range(5)])
    worker = corq.Worker(app, grace_s=0.2)
    task = asyncio.create_task(worker.run())
    await _until(lambda: worker.running_count == 5)
    worker.request_stop()
    await task
    for handle in handles:
        record = await handle.info()
        assert record.status == corq.JobStatus.QUEUED
        assert record.attempt == 1
    assert worker.counts.released == 5


async def _until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    await until(predicate, timeout, interval=0.01)


async def _until_status(handle: corq.JobHandle[Any], status: corq.JobStatus) -> None:
    deadline = time.monotonic() + 5
    while await handle.status() != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"job never reached {status}")
        await asyncio.sleep(0.01)


async def test_retry_after_a_short_backoff_starts_on_time(app: corq.App) -> None:
    attempts: list[float] = []

    @app.task(retries=1, backoff=0.2, jitter=False)
    async def once_flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        return "ok"

    async with run_worker(app):
        job = await once_flaky.enqueue()
        assert await job.result(timeout=5) == "ok"
    # The worker knows when the retry is due; it must not wait for its idle re-check (2 s).
    assert attempts[1] - attempts[0] < 0.6, attempts[1] - attempts[0]


async def test_fake_clock_fast_forwards_claim_expiry(fake_app: FakeApp) -> None:
    app, clock = fake_app
    started = asyncio.Event()
    runs: list[int] = []

    @app.task
    async def hang_once() -> str:
        runs.append(corq.current_job().attempt)
        if len(runs) == 1:
            started.set()
            await asyncio.sleep(3600)  # its worker "dies" while it runs
        return "done"

    # Given worker A holding the job, then vanishing without a word (no writes, no deregister)
    job = await hang_once.enqueue()
    a = corq.Worker(app)
    a_task = asyncio.create_task(a.run())
    await asyncio.wait_for(started.wait(), 5)
    a.request_stop(immediate=True)
    await a_task
    # When worker B runs and the clock passes A's lease
    async with run_worker(app):
        clock.advance(app.settings.lease_s + app.settings.reclaim_s + 1)
        # Then B takes the job back and runs it, with the death counted
        assert await job.result(timeout=5) == "done"
    record = await job.info()
    assert (record.attempt, record.deaths) == (2, 1)


async def test_damaged_record_goes_dead_instead_of_vanishing(app: corq.App) -> None:
    if not app.settings.url.startswith("redis"):
        pytest.skip("damages a Redis hash by hand")
    import redis.asyncio as aioredis

    from corq.backends.redis.keys import RedisKeys

    @app.task
    async def echo(x: int) -> int:
        return x

    # Given a queued job whose record lost its task name (damaged by hand)
    job = await echo.enqueue(1)
    raw = aioredis.Redis.from_url(app.settings.url)
    await raw.hdel(RedisKeys(app.settings.prefix).queue("default").job(job.id), "task")
    await raw.aclose()
    # When a worker claims it, Then it ends in the dead letters with a clear error
    async with run_worker(app):
        with pytest.raises(corq.JobFailedError, match="corrupted job record"):
            await job.result(timeout=5)
