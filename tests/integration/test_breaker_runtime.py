"""`@app.task(breaker=corq.Breaker(...))` on both brokers, with a FakeClock: failures open
the circuit, the next jobs wait without using attempts, after the cool-down one probe runs
and its success closes the circuit; timeouts count, snoozes do not."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest

import corq
from corq.control import BreakerState, BreakerStatus
from corq.errors import TaskDefinitionError
from corq.testing import run_worker
from tests.waiting import until

FakeApp = tuple[corq.App, corq.FakeClock]
S = corq.JobStatus
RULE = corq.Breaker(failures=3, window=60, reset=30)


async def _status_is(job: corq.JobHandle[Any], status: corq.JobStatus) -> bool:
    return await job.status() == status


async def _circuit(app: corq.App, task: str) -> BreakerState:
    [state] = await app.client().backend.breaker_states([task], now_ms=app.clock.now_ms())
    return state


def _polled(polls: list[int], n: int) -> bool:
    return len(polls) == n


async def test_failures_open_the_circuit_and_a_probe_closes_it(fake_app: FakeApp) -> None:
    app, clock = fake_app
    calls: list[str] = []
    broken = True

    @app.task(retries=0, breaker=RULE)
    async def fetch(n: int) -> int:
        calls.append(f"fetch {n}")
        if broken:
            raise ConnectionError("the partner API is down")
        return n

    async with run_worker(app, concurrency=1) as worker:
        # Given three failures within the window
        for n in range(3):
            with pytest.raises(corq.JobFailedError):
                await (await fetch.enqueue(n)).result(timeout=10)
        opened = await _circuit(app, fetch.name)
        assert (opened.status, opened.failures, opened.opened) == (BreakerStatus.OPEN, 3, 1)
        assert opened.until_ms == clock.now_ms() + 30_000

        # When more jobs come, they wait for the cool-down without running or using attempts
        later = [await fetch.enqueue(n) for n in (3, 4)]
        for job in later:
            await until(partial(_status_is, job, S.SCHEDULED), what="snoozed")
            info = await job.info()
            assert (info.attempt, info.failures, info.error) == (0, 0, "breaker open")
            assert info.run_at_ms == opened.until_ms
        assert len(calls) == 3

        # When the partner is back and the cool-down ends, a probe runs and closes the
        # circuit; the other job (one slot: it starts after the probe) runs then
        broken = False
        clock.advance(30)
        assert sorted([await job.result(timeout=10) for job in later]) == [3, 4]
        closed = await _circuit(app, fetch.name)
        assert (closed.status, closed.failures, closed.opened) == (BreakerStatus.CLOSED, 0, 1)
        assert len(calls) == 5
        for job in later:
            info = await job.info()
            assert (info.attempt, info.failures) == (1, 0)
        assert worker.counts.failed == 3
        assert worker.counts.snoozed >= 2


async def test_a_failed_probe_opens_the_circuit_again(fake_app: FakeApp) -> None:
    app, clock = fake_app

    @app.task(retries=0, breaker=corq.Breaker(failures=1, window=60, reset=10))
    async def always_down() -> None:
        raise ConnectionError("down")

    async with run_worker(app, concurrency=1):
        with pytest.raises(corq.JobFailedError):
            await (await always_down.enqueue()).result(timeout=10)
        assert (await _circuit(app, always_down.name)).opened == 1

        probe = await always_down.enqueue()
        await until(lambda: _status_is(probe, S.SCHEDULED), what="snoozed")
        clock.advance(10)
        with pytest.raises(corq.JobFailedError):
            await probe.result(timeout=10)

        state = await _circuit(app, always_down.name)
        assert (state.status, state.opened) == (BreakerStatus.OPEN, 2)
        assert state.until_ms == clock.now_ms() + 10_000


async def test_timeouts_count_as_failures(fake_app: FakeApp) -> None:
    app, _ = fake_app
    hang = asyncio.Event()

    @app.task(retries=0, timeout=0.05, breaker=corq.Breaker(failures=2))
    async def slow() -> None:
        await hang.wait()

    async with run_worker(app):
        for _ in range(2):
            with pytest.raises(corq.JobFailedError, match="TimeoutError"):
                await (await slow.enqueue()).result(timeout=10)
        assert (await _circuit(app, slow.name)).status is BreakerStatus.OPEN


async def test_snoozes_are_not_failures(fake_app: FakeApp) -> None:
    app, clock = fake_app
    polls: list[int] = []

    @app.task(retries=0, breaker=corq.Breaker(failures=1))
    async def poll() -> str:
        polls.append(1)
        if len(polls) < 4:
            raise corq.Snooze(5, "not ready")
        return "ready"

    async with run_worker(app):
        job = await poll.enqueue()
        for n in range(1, 4):
            await until(partial(_polled, polls, n), what=f"poll {n}")
            await until(lambda: _status_is(job, S.SCHEDULED), what="snoozed")
            clock.advance(5)
        assert await job.result(timeout=10) == "ready"
    state = await _circuit(app, poll.name)
    assert (state.status, state.failures, state.opened) == (BreakerStatus.CLOSED, 0, 0)


def test_a_breaker_option_is_checked_at_definition() -> None:
    app = corq.App("sqlite:///:memory:")

    async def wrong() -> None: ...

    with pytest.raises(TaskDefinitionError, match=r"breaker must be a corq\.Breaker"):
        app.task(breaker={"failures": 5})(wrong)  # type: ignore[call-overload]  # the mistake tested
    assert "wrong" not in str(list(app.registry))

    with pytest.raises(corq.ConfigError, match="failures must be at least 1"):
        corq.Breaker(failures=0)


async def test_jobs_waiting_for_a_running_probe_start_after_its_permit_lapses(
    fake_app: FakeApp,
) -> None:
    app, clock = fake_app
    release = asyncio.Event()
    calls: list[int] = []

    @app.task(retries=0, breaker=corq.Breaker(failures=1, window=60, reset=20))
    async def call(n: int) -> int:
        calls.append(n)
        if n == 0:
            raise ConnectionError("down")
        if n == 1:
            await release.wait()  # the probe takes its time
        return n

    async with run_worker(app, concurrency=2):
        with pytest.raises(corq.JobFailedError):
            await (await call.enqueue(0)).result(timeout=10)
        probe = await call.enqueue(1)
        await until(lambda: _status_is(probe, S.SCHEDULED), what="snoozed")
        clock.advance(20)
        await until(lambda: calls == [0, 1], what="the probe running")

        # Given a probe running, another job of the task waits for the probe's permit
        other = await call.enqueue(2)
        await until(lambda: _status_is(other, S.SCHEDULED), what="waits for the probe")
        assert (await other.info()).run_at_ms == clock.now_ms() + 20_000

        # When the probe succeeds, the circuit closes; the waiting job runs at its time
        release.set()
        assert await probe.result(timeout=10) == 1
        clock.advance(20)
        assert await other.result(timeout=10) == 2
        assert (await other.info()).attempt == 1


async def test_many_jobs_due_at_once_after_the_cool_down_give_one_probe(
    fake_app: FakeApp,
) -> None:
    app, clock = fake_app
    release = asyncio.Event()
    calls: list[int] = []

    @app.task(retries=0, breaker=corq.Breaker(failures=1, window=60, reset=20))
    async def call(n: int) -> int:
        calls.append(n)
        if n < 0:
            raise ConnectionError("down")
        await release.wait()
        return n

    async with run_worker(app, concurrency=10):
        # Given an open circuit and eight jobs waiting for its cool-down
        with pytest.raises(corq.JobFailedError):
            await (await call.enqueue(-1)).result(timeout=10)
        jobs = await call.enqueue_many([(n,) for n in range(8)])
        for job in jobs:
            await until(partial(_status_is, job, S.SCHEDULED), what="snoozed")

        # When they all come due at once on a worker with room for all of them
        clock.advance(20)
        await until(lambda: len(calls) == 2, what="the probe")

        # Then one runs, as the probe; the seven others wait again, without an attempt
        await until(partial(_count, jobs, S.SCHEDULED, 7), what="seven snoozed again")
        assert await _count(jobs, S.RUNNING, 1)
        assert {(await job.info()).attempt for job in jobs} == {0, 1}
        assert len(calls) == 2
        release.set()


async def _count(jobs: list[corq.JobHandle[int]], status: corq.JobStatus, n: int) -> bool:
    return [await job.status() for job in jobs].count(status) == n
