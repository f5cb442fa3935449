"""The worker under faults: broker blips, stuck threads, lost claims, outages, shutdowns.

Each test reproduces a case where a job fell out of a worker's hands, ran twice at once, or
was failed for something that was not its fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import corq
from corq.backends import open_backend
from corq.backends.base import WorkerLease
from corq.testing import drain, run_worker
from tests.waiting import until as _until


async def _status(handle: corq.JobHandle[Any], status: corq.JobStatus) -> bool:
    return (await handle.status()) == status


@contextlib.contextmanager
def _blip(app: corq.App) -> Iterator[None]:
    """Make the broker refuse writes for a while: a real outage, not a mock.

    SQLite: another connection holds the write lock (every write waits busy_timeout, then
    fails). Redis: CLIENT PAUSE WRITE longer than the socket timeout.
    """
    url = app.settings.url
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    import redis

    raw = redis.Redis.from_url(url)
    raw.execute_command("CLIENT", "PAUSE", "1500", "WRITE")  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        raw.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        raw.close()


@pytest.fixture
async def touchy_app(broker_url: str, prefix: str) -> AsyncIterator[corq.App]:
    """Short broker timeouts, so a blip is felt at once."""
    application = corq.App(
        broker_url, prefix=prefix, heartbeat_s=0.2, reclaim_s=0.2, lease_s=3, socket_timeout_s=0.3
    )
    yield application
    await application.aclose()


async def test_a_broker_blip_during_set_progress_does_not_fail_the_job(
    touchy_app: corq.App,
) -> None:
    app = touchy_app
    go, reported = threading.Event(), threading.Event()
    recorded: list[bool] = []

    @app.task
    async def reports() -> str:
        while not go.is_set():  # noqa: ASYNC110  # the test thread sets it
            await asyncio.sleep(0.01)
        recorded.append(await corq.set_progress(0.5))
        reported.set()
        return "done"

    async with run_worker(app):
        job = await reports.enqueue()
        await _until(lambda: _status(job, corq.JobStatus.RUNNING), what="the job to run")
        with _blip(app):
            go.set()
            await asyncio.to_thread(reported.wait, 10)
        # Then the report said "not recorded", and the job still succeeds
        assert recorded == [False]
        assert await job.result(timeout=10) == "done"


async def test_timed_out_sync_jobs_do_not_make_later_ones_time_out(
    broker_url: str, prefix: str
) -> None:
    # Given one thread, and a sync job that outlives its timeout (its thread cannot be killed)
    app = corq.App(broker_url, prefix=prefix, threads=1)
    release = threading.Event()

    @app.task(timeout=0.2)
    def stuck() -> None:
        release.wait(10)

    @app.task(timeout=0.5)
    def quick() -> str:
        return "ran"

    try:
        async with run_worker(app, concurrency=4):
            first = await stuck.enqueue()
            second = await quick.enqueue()
            # Then the stuck one times out, and the quick one still gets a thread and runs:
            # its deadline counts from when its body starts, not from when it was claimed
            with pytest.raises(corq.JobFailedError, match="timeout"):
                await first.result(timeout=10)
            assert await second.result(timeout=10) == "ran"
            release.set()
    finally:
        release.set()
        await app.aclose()


def crash_now() -> None:
    import os

    os._exit(7)


def square(x: int) -> int:
    return x * x


async def test_a_crashing_process_job_does_not_fail_the_others(
    broker_url: str, prefix: str
) -> None:
    app = corq.App(broker_url, prefix=prefix, process_pool=2, max_deaths=2)
    crash = app.task(process=True)(crash_now)
    sq = app.task(process=True)(square)
    try:
        async with run_worker(app):
            crasher = await crash.enqueue()
            others = await sq.enqueue_many([(n,) for n in range(6)])
            # Then every other process job succeeds on its first attempt
            assert [await h.result(timeout=60) for h in others] == [n * n for n in range(6)]
            assert {(await h.info()).attempt for h in others} == {1}
            # and the crasher, caught dying in its own process each time, is a poison job
            with pytest.raises(corq.JobFailedError, match="poison job"):
                await crasher.result(timeout=60)
            record = await crasher.info()
            assert (record.deaths, record.failures) == (2, 0)
    finally:
        await app.aclose()


async def test_burst_runs_a_job_enqueued_by_the_last_job(app: corq.App) -> None:
    ran: list[str] = []

    @app.task
    async def second() -> None:
        ran.append("second")

    @app.task
    async def first() -> None:
        await asyncio.sleep(0.05)
        await second.enqueue()
        ran.append("first")

    await first.enqueue()
    await drain(app, timeout=20)
    assert ran == ["first", "second"]


async def test_graceful_stop_logs_no_false_loop_stall(
    app: corq.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    async def nap() -> None:
        await asyncio.sleep(0.05)

    caplog.set_level(logging.WARNING)
    async with run_worker(app):
        await (await nap.enqueue()).result(timeout=5)
    assert "event loop" not in caplog.text


async def test_stray_claims_are_given_back_by_reconciliation(broker_url: str, prefix: str) -> None:
    # Given a running worker, and jobs claimed under its holder id that it never saw (as when
    # a claim's reply is lost to a socket timeout while the broker ran it)
    app = corq.App(broker_url, prefix=prefix, reconcile_s=0.2, heartbeat_s=0.2, lease_s=5)
    gate = asyncio.Event()

    @app.task
    async def wait_gate() -> str:
        await gate.wait()
        return "ok"

    other = open_backend(broker_url, prefix=prefix)
    try:
        async with run_worker(app, concurrency=2) as worker:
            handles = await wait_gate.enqueue_many([() for _ in range(5)])
            holder = worker.lease.holder("default")
            # the worker holds 2; steal 3 more under its holder id, behind its back
            await _until(lambda: worker.running_count == 2, what="two jobs running")
            stolen = await other.claim_jobs("default", holder, 3, 5000, None)
            assert len(stolen.jobs) == 3
            # Then reconciliation gives them back (attempt not counted) and they all run
            gate.set()
            results = [await h.result(timeout=20) for h in handles]
            assert results == ["ok"] * 5
            attempts = sorted([(await h.info()).attempt for h in handles])
            assert attempts == [1] * 5
    finally:
        await other.close()
        await app.aclose()


async def test_a_worker_starting_after_an_outage_does_not_take_live_workers_jobs(
    fake_app: tuple[corq.App, corq.FakeClock], broker_url: str, prefix: str
) -> None:
    app, clock = fake_app

    @app.task
    async def noop() -> None:
        return None

    # Given a live worker "alive" holding a job, whose lease has passed only because the
    # broker was away (as after an outage longer than a lease)
    other = open_backend(broker_url, prefix=prefix)
    try:
        handle = await noop.enqueue()
        lease = WorkerLease(worker_id="alive", queues=["default"], lease_ms=10_000)
        await other.register_worker(lease, clock.now_ms())
        (held,) = (await other.claim_jobs("default", "alive", 1, 10_000, clock.now_ms())).jobs
        clock.advance(30)
        # When a new worker starts right then
        async with run_worker(app) as worker:
            await asyncio.sleep(0.3)
            # Then it does not reclaim at once: the job is still held by "alive"
            job = await handle.info()
            assert (job.status, job.worker_id) == (corq.JobStatus.RUNNING, "alive")
            # and only once it has been in touch for a whole lease (while "alive" stayed
            # silent) does it take the job back
            clock.advance(app.settings.lease_s + 1)
            await _until(lambda: _status(handle, corq.JobStatus.SUCCEEDED), what="reclaim")
            assert worker.counts.succeeded == 1
        assert held.id == handle.id
    finally:
        await other.close()


async def test_stopping_with_a_thread_past_grace_never_runs_the_job_twice(
    fake_app: tuple[corq.App, corq.FakeClock],
) -> None:
    app, clock = fake_app
    release = threading.Event()
    runs: list[tuple[int, str]] = []

    @app.task
    def stubborn() -> str:
        attempt = corq.current_job().attempt
        runs.append((attempt, "start"))
        if attempt == 1:
            release.wait(30)
        runs.append((attempt, "end"))
        return "done"

    # Given a plain function that outlives the grace period of its stopping worker
    handle = await stubborn.enqueue()
    async with run_worker(app, grace_s=0.1):
        await _until(lambda: runs == [(1, "start")], what="the body to start")
    # Then it was not given back while its thread still runs: it is still held (departed)
    assert (await handle.status()) == corq.JobStatus.RUNNING
    async with run_worker(app):
        await asyncio.sleep(0.3)
        assert runs == [(1, "start")]
        # When the thread ends and the departed worker's linger passes
        release.set()
        await _until(lambda: runs == [(1, "start"), (1, "end")], what="the thread to end")
        clock.advance(30)
        # Then another worker runs it again, after the first run ended, without a death
        assert await handle.result(timeout=10) == "done"
    assert runs == [(1, "start"), (1, "end"), (2, "start"), (2, "end")]
    assert (await handle.info()).deaths == 0


@contextlib.contextmanager
def _worker_on_a_thread(app: corq.App) -> Iterator[corq.Worker]:
    """A worker with an event loop of its own, so a task blocking the test's loop does not
    block it too."""
    worker = corq.Worker(app, concurrency=1)
    started = threading.Event()
    done = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    def main() -> None:
        async def go() -> None:
            loops.append(asyncio.get_running_loop())
            try:
                async with worker:
                    started.set()
                    await worker.wait()
            finally:
                await app.aclose_loop_only()

        asyncio.run(go())
        done.set()

    thread = threading.Thread(target=main, name="test-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not started.is_set():
        assert time.monotonic() < deadline, "worker did not start"
        assert not done.is_set(), "worker stopped before it started"
        time.sleep(0.01)
    try:
        yield worker
    finally:
        loops[0].call_soon_threadsafe(worker.request_stop)
        done.wait(30)


async def test_a_blocked_loop_stops_renewing_its_lease_after_the_stall_limit(
    broker_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"heartbeat_s": 0.2, "reclaim_s": 0.2, "lease_s": 1, "max_stall_s": 1.5}
    app = corq.App(broker_url, prefix=prefix, **settings)  # type: ignore[arg-type]
    other = corq.App(broker_url, prefix=prefix, **settings)  # type: ignore[arg-type]

    async def spins() -> str:
        if corq.current_job().attempt == 1:
            time.sleep(4)  # noqa: ASYNC251  # a task that blocks its worker's event loop
        return "rescued"

    task = app.task(name="spins")(spins)
    other.task(name="spins")(spins)
    caplog.set_level(logging.ERROR)
    try:
        # Given two workers on separate event loops, one of which will block on the job
        with _worker_on_a_thread(other):
            async with run_worker(app, concurrency=1):
                await asyncio.sleep(1.2)  # both have been in touch for a whole lease
                handle = await task.enqueue()
                # Then the blocked worker stops renewing its lease after the stall limit
                # and the other one runs the job again
                assert await handle.result(timeout=20) == "rescued"
        assert "no longer renewing the lease" in caplog.text
        assert (await handle.info()).attempt == 2
    finally:
        await app.aclose()


async def test_a_damaged_sqlite_row_costs_only_its_job(tmp_path: Path) -> None:
    db = tmp_path / "corq.db"
    app = corq.App(f"sqlite:///{db}")

    @app.task
    async def echo(x: int) -> int:
        return x

    try:
        handles = await echo.enqueue_many([(n,) for n in range(5)])
        # Given one row whose payload another program stored as TEXT
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE jobs SET payload = 'oops' WHERE id = ?", (handles[2].id,))
        # Then the worker dead-letters that one and runs the others
        async with run_worker(app):
            for n, h in enumerate(handles):
                if n == 2:
                    with pytest.raises(corq.JobFailedError, match="damaged job record"):
                        await h.result(timeout=10)
                else:
                    assert await h.result(timeout=10) == n
    finally:
        await app.aclose()


async def test_register_retries_an_outage_and_stops_on_request(tmp_path: Path) -> None:
    # Given a broker that cannot be reached (nothing listens on that port)
    app = corq.App("redis://127.0.0.1:1/0", socket_timeout_s=0.2)
    worker = corq.Worker(app)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.5)
    assert not task.done()  # retrying, not crashed
    # When a stop is requested, Then it stops promptly
    worker.request_stop()
    await asyncio.wait_for(task, 5)
    await app.aclose()


async def test_redis_key_of_the_wrong_type_is_refused_at_once(redis_url: str, prefix: str) -> None:
    # A permanent error is not an outage: a clear error, not 30 s of retries
    app = corq.App(redis_url, prefix=prefix)

    @app.task
    async def echo() -> None:
        return None

    raw = aioredis.Redis.from_url(redis_url)
    await raw.set(f"{prefix}:{{default}}:ready", "not a zset")
    try:
        started = time.monotonic()
        with pytest.raises(corq.BrokerDataError):
            await echo.enqueue()
        assert time.monotonic() - started < 2
    finally:
        await raw.aclose()
        await app.aclose()
