"""Whatever a task does, its job ends with a stored outcome and the worker goes on.

Each test here reproduces a way a job was left ``running`` for ever, or the worker stopped,
before the runner and writer were made total.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import corq
from corq.limits import MAX_DELAY_S, MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS
from corq.testing import run_worker


async def _ended(handle: corq.JobHandle[Any], timeout: float = 10.0) -> corq.Job:
    """Wait until the job leaves running (dead, failed awaiting a retry, or succeeded)."""
    deadline = time.monotonic() + timeout
    while True:
        job = await handle.info()
        if job.status not in (corq.JobStatus.QUEUED, corq.JobStatus.RUNNING):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {handle.id} still {job.status}")
        await asyncio.sleep(0.02)


async def _worker_still_runs_jobs(task: corq.Task[..., str]) -> None:
    probe = await task.enqueue()
    assert await probe.result(timeout=10) == "alive"


async def test_plain_task_raising_stop_iteration_fails_and_frees_its_slot(app: corq.App) -> None:
    @app.task
    def stops() -> None:
        raise StopIteration

    @app.task
    def alive() -> str:
        return "alive"

    async with run_worker(app, concurrency=1):
        job = await _ended(await stops.enqueue())
        assert job.status == corq.JobStatus.DEAD
        assert job.error == "StopIteration"
        await _worker_still_runs_jobs(alive)


async def test_coroutine_raising_cancelled_error_itself_is_a_failure(app: corq.App) -> None:
    @app.task
    async def cancels() -> None:
        raise asyncio.CancelledError("the task's own doing")

    @app.task
    async def alive() -> str:
        return "alive"

    async with run_worker(app, concurrency=1):
        job = await _ended(await cancels.enqueue())
        assert job.status == corq.JobStatus.DEAD
        assert job.error == "CancelledError: the task's own doing"
        await _worker_still_runs_jobs(alive)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_exception_whose_str_raises_is_recorded(app: corq.App) -> None:
    @app.task
    async def hostile() -> None:
        raise Unprintable

    @app.task
    def hostile_sync() -> None:
        raise Unprintable

    async with run_worker(app):
        for task in (hostile, hostile_sync):
            job = await _ended(await task.enqueue())
            assert job.status == corq.JobStatus.DEAD
            assert job.error == "Unprintable: <unprintable Unprintable: str() raised RuntimeError>"


@pytest.mark.parametrize("delay", [float("inf"), 1e17, float("nan"), -5.0])
async def test_retry_with_an_absurd_delay_is_clamped(app: corq.App, delay: float) -> None:
    @app.task(retries=1)
    async def later() -> None:
        raise corq.Retry(delay=delay)

    @app.task
    async def alive() -> str:
        return "alive"

    async with run_worker(app):
        before = app.clock.now_ms()
        job = await _ended(await later.enqueue())
        # NaN and negative delays retry at once: the retry may already have run.
        assert job.status in (corq.JobStatus.FAILED, corq.JobStatus.DEAD), job
        if delay > 0:
            assert job.status == corq.JobStatus.FAILED
            assert job.run_at_ms <= before + MAX_DELAY_S * 1000 + 60_000
            assert job.run_at_ms >= before + MAX_DELAY_S * 1000 - 60_000
        await _worker_still_runs_jobs(alive)


async def test_message_with_a_lone_surrogate_is_stored_escaped(app: corq.App) -> None:
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")  # as os.listdir gives it

    @app.task
    async def opens() -> None:
        raise FileNotFoundError(f"no such file: {name}")

    @app.task
    def opens_sync() -> None:
        raise FileNotFoundError(f"no such file: {name}")

    async with run_worker(app):
        for task in (opens, opens_sync):
            job = await _ended(await task.enqueue())
            assert job.status == corq.JobStatus.DEAD
            assert job.error == "FileNotFoundError: no such file: caf\\udce9.txt"
            assert job.traceback is not None
            assert "caf\\udce9.txt" in job.traceback


async def test_huge_errors_and_tracebacks_are_cut_to_their_limits(app: corq.App) -> None:
    @app.task
    async def shouts() -> None:
        raise ValueError("x" * (5 * 1024 * 1024))

    async with run_worker(app):
        job = await _ended(await shouts.enqueue())
    assert job.status == corq.JobStatus.DEAD
    assert job.error is not None
    assert job.traceback is not None
    assert job.error.startswith("ValueError: xxx")
    assert len(job.error) <= MAX_ERROR_CHARS
    assert len(job.traceback) <= MAX_TRACEBACK_CHARS
    assert "characters cut" in job.traceback
    assert job.traceback.rstrip().endswith("x")  # the tail, where the error is, is kept


async def test_result_over_the_limit_sends_the_job_to_the_dead_letters(
    broker_url: str, prefix: str
) -> None:
    app = corq.App(broker_url, prefix=prefix, max_result_bytes=1000)

    @app.task
    async def big() -> str:
        return "y" * 2000

    @app.task
    async def alive() -> str:
        return "alive"

    try:
        async with run_worker(app):
            job = await _ended(await big.enqueue())
            assert job.status == corq.JobStatus.DEAD
            assert job.error is not None
            assert job.error.startswith("ResultTooLargeError: the result is 2,002 bytes")
            await _worker_still_runs_jobs(alive)
    finally:
        await app.aclose()


async def test_unencodable_result_fails_the_attempt(app: corq.App) -> None:
    @app.task
    async def gives_a_set() -> object:
        return {object()}

    async with run_worker(app):
        job = await _ended(await gives_a_set.enqueue())
    assert job.status == corq.JobStatus.DEAD
    assert job.error is not None
    assert job.error.startswith("cannot encode the result")


async def test_system_exit_in_a_task_does_not_stop_the_worker(app: corq.App) -> None:
    @app.task
    async def exits() -> None:
        raise SystemExit(3)

    @app.task
    def exits_sync() -> None:
        raise KeyboardInterrupt

    @app.task
    async def alive() -> str:
        return "alive"

    async with run_worker(app):
        for task in (exits, exits_sync):
            job = await _ended(await task.enqueue())
            assert job.status == corq.JobStatus.DEAD
        await _worker_still_runs_jobs(alive)
