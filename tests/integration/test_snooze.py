"""`raise corq.Snooze(delay)` from a coroutine, a thread and a process task, on both
brokers: the job waits again without using an attempt; a bad delay fails the attempt with a
clear error; `corq job ID` shows the job scheduled with its reason."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import corq
from corq.backends.base import ClaimedJob, Failure
from corq.cli import cli
from corq.testing import run_worker
from corq.worker.observer import WorkerObserver
from tests.waiting import until

FakeApp = tuple[corq.App, corq.FakeClock]
S = corq.JobStatus


def snooze_until_file(path: str) -> str:
    """Polls for a file (a process task: found by its module path)."""
    if not Path(path).exists():
        raise corq.Snooze(30, "no file yet")
    return "found"


async def _status_is(job: corq.JobHandle[Any], status: corq.JobStatus) -> bool:
    return await job.status() == status


@pytest.mark.parametrize("kind", ["async", "thread", "process"])
async def test_a_snooze_waits_without_using_an_attempt(
    fake_app: FakeApp, tmp_path: Path, kind: str
) -> None:
    app, clock = fake_app
    ready = tmp_path / "ready"
    if kind == "async":

        @app.task(retries=0)
        async def poll_async(path: str) -> str:
            return snooze_until_file(path)

        task: corq.Task[[str], str] = poll_async
    elif kind == "thread":
        task = app.task(retries=0)(snooze_until_file)
    else:
        task = app.task(retries=0, process=True)(snooze_until_file)

    async with run_worker(app) as worker:
        # Given a task with no retries that snoozes until a file exists
        job = await task.enqueue(str(ready))

        # When it snoozes
        await until(lambda: _status_is(job, S.SCHEDULED), what="the first snooze")

        # Then it waits 30 s with its reason, its attempt not used
        info = await job.info()
        assert (info.attempt, info.failures, info.error) == (0, 0, "no file yet")
        assert info.run_at_ms == clock.now_ms() + 30_000
        assert worker.counts.snoozed == 1
        # and runs again when its time comes, as its first attempt still
        ready.touch()
        clock.advance(30)
        assert await job.result(timeout=20) == "found"
        info = await job.info()
        assert (info.attempt, info.failures) == (1, 0)
        assert (worker.counts.snoozed, worker.counts.failed) == (1, 0)


@pytest.mark.parametrize("delay", [-1, float("nan"), float("inf"), 1e12, "soon", True])
async def test_a_bad_snooze_delay_fails_the_attempt_clearly(app: corq.App, delay: Any) -> None:
    @app.task(retries=0)
    async def confused() -> None:
        raise corq.Snooze(delay)

    async with run_worker(app):
        job = await confused.enqueue()
        with pytest.raises(corq.JobFailedError, match="SnoozeError: Snooze\\(delay=") as info:
            await job.result(timeout=5)
        assert "the delay must be a number of seconds" in str(info.value)
        assert (await job.info()).failures == 1


def snooze_in_child(delay: Any) -> None:
    raise corq.Snooze(delay)


async def test_a_bad_snooze_delay_in_a_process_task_fails_it_clearly(app: corq.App) -> None:
    task = app.task(retries=0, process=True)(snooze_in_child)
    async with run_worker(app):
        job = await task.enqueue(-5)
        with pytest.raises(corq.JobFailedError, match="SnoozeError: Snooze\\(delay=-5\\)"):
            await job.result(timeout=20)


async def test_a_snooze_without_a_reason_says_how_long(fake_app: FakeApp) -> None:
    app, _ = fake_app

    @app.task
    async def later() -> None:
        raise corq.Snooze(2.5)

    async with run_worker(app):
        job = await later.enqueue()
        await until(lambda: _status_is(job, S.SCHEDULED), what="the snooze")
        assert (await job.info()).error == "snoozed for 2.5s"


class SnoozeCounter(WorkerObserver):
    def __init__(self) -> None:
        self.snoozed: list[tuple[str, str]] = []

    def job_snoozed(self, job: ClaimedJob, failure: Failure) -> None:
        self.snoozed.append((job.id, failure.error))


async def test_observers_hear_a_snooze(fake_app: FakeApp) -> None:
    app, _ = fake_app
    observer = SnoozeCounter()

    @app.task
    async def later() -> None:
        raise corq.Snooze(10, "upstream busy")

    async with run_worker(app, observers=[observer]):
        job = await later.enqueue()
        await until(lambda: observer.snoozed, what="the hook")
    assert observer.snoozed == [(job.id, "upstream busy")]


def test_corq_job_shows_a_snoozed_job_scheduled_with_its_reason(
    broker_url: str, prefix: str
) -> None:
    app = corq.App(broker_url, prefix=prefix)

    @app.task
    async def poll() -> None:
        raise corq.Snooze(3600, "waiting for the bank")

    async def make() -> str:
        try:
            async with run_worker(app):
                job = await poll.enqueue()
                await until(lambda: _status_is(job, S.SCHEDULED), what="the snooze")
            return job.id
        finally:
            await app.aclose()

    job_id = asyncio.run(make())
    result = CliRunner().invoke(
        cli, ["job", job_id, "--url", broker_url], env={"CORQ_PREFIX": prefix}
    )

    assert result.exit_code == 0, result.output
    assert "scheduled" in result.output
    assert "snoozed" in result.output
    assert "waiting for the bank" in result.output
