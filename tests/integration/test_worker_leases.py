"""Leases, holders and incarnations, as a worker lives them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import corq
from corq.backends import open_backend
from corq.backends.base import WorkerLease
from corq.clock import SystemClock
from corq.testing import drain, run_worker
from tests.conftest import RedisServer, free_port
from tests.waiting import until as _until


async def test_a_late_lost_notice_touches_only_jobs_of_the_lost_incarnation(
    fake_app: tuple[corq.App, corq.FakeClock],
) -> None:
    app, _ = fake_app
    gate = asyncio.Event()
    started: list[int] = []

    @app.task
    async def wait_gate(n: int) -> int:
        started.append(n)
        await gate.wait()
        return n

    async with run_worker(app) as worker:
        # Given a job claimed under the worker's first incarnation, and that incarnation lost
        first = await wait_gate.enqueue(1)
        await _until(lambda: started == [1], what="job 1 to start")
        old = worker.lease.holder("default")
        await worker.leases.recover_lost([("default", old)])
        new = worker.lease.holder("default")
        assert new != old
        assert new.startswith(worker.worker_id + "~")
        # and a job claimed since, under the new incarnation
        second = await wait_gate.enqueue(2)
        await _until(lambda: started == [1, 2], what="job 2 to start")
        # When a late notice about the old incarnation arrives (from the heartbeat thread)
        await worker.leases.recover_lost([("default", old)])
        # Then the job claimed since runs on: only the lost incarnation's jobs were stopped
        gate.set()
        assert await second.result(timeout=5) == 2
        assert worker.lease.holder("default") == new
        assert (await first.status()) == corq.JobStatus.RUNNING  # its claim went with the lease


async def test_a_process_restarted_under_a_fixed_id_takes_its_jobs_back_at_once(
    broker_url: str, prefix: str
) -> None:
    # Given a worker with a fixed id (default lease: 10 s) that dies holding a job
    app = corq.App(broker_url, prefix=prefix)
    started = asyncio.Event()

    @app.task
    async def once() -> str:
        if corq.current_job().attempt == 1:
            started.set()
            await asyncio.sleep(3600)
        return "done"

    try:
        job = await once.enqueue()
        first = corq.Worker(app, worker_id="web-1")
        running = asyncio.create_task(first.run())
        await asyncio.wait_for(started.wait(), 10)
        first.request_stop(immediate=True)  # dies: no outcome, no deregistration
        await running
        # When a new process starts under the same id
        began = time.monotonic()
        async with run_worker(app, worker_id="web-1"):
            # Then it ends its predecessor's lease and runs the job again at once, not a
            # lease later
            assert await job.result(timeout=8) == "done"
        assert time.monotonic() - began < 8
        record = await job.info()
        assert (record.attempt, record.deaths) == (2, 1)
        assert record.death_log[0].startswith("web-1~")
    finally:
        await app.aclose()


class ClockAnHourAhead(SystemClock):
    """A machine whose clock is wrong by an hour."""

    def now_ms(self) -> int:
        return super().now_ms() + 3_600_000


async def test_a_worker_whose_clock_is_far_ahead_takes_no_live_workers_jobs(
    broker_url: str, prefix: str
) -> None:
    # Given a live worker holding a job
    app = corq.App(broker_url, prefix=prefix, heartbeat_s=0.2, reclaim_s=0.2, lease_s=1)
    gate = asyncio.Event()

    @app.task
    async def wait_gate() -> str:
        await gate.wait()
        return "done"

    skewed = corq.App(
        broker_url,
        prefix=prefix,
        heartbeat_s=0.2,
        reclaim_s=0.2,
        lease_s=1,
        clock=ClockAnHourAhead(),
    )
    skewed.task(name="wait_gate")(wait_gate.fn)
    try:
        job = await wait_gate.enqueue()
        async with run_worker(app, queues=["default"]) as live:
            await _until(lambda: live.running_count == 1, what="the job to run")
            # When a worker whose clock is an hour ahead serves the queue for several leases
            async with run_worker(skewed, queues=["default"]):
                await asyncio.sleep(2.5)
                # Then it took nothing: leases are judged by the broker's clock
                record = await job.info()
                assert (record.status, record.attempt, record.deaths) == ("running", 1, 0)
            gate.set()
            assert await job.result(timeout=5) == "done"
    finally:
        await app.aclose()
        await skewed.aclose()


async def test_re_registering_after_a_lost_lease_waits_out_an_outage(
    tmp_path: Path, prefix: str
) -> None:
    # Given a worker on a private Redis
    server = RedisServer(tmp_path / "redis", port=free_port())
    server.start()
    app = corq.App(server.url, prefix=prefix, socket_timeout_s=0.3)

    @app.task
    async def echo(x: int) -> int:
        return x

    try:
        async with run_worker(app) as worker:
            # When its lease is lost while the broker is down
            server.stop()
            lost = worker.lease.holder("default")
            recovering = asyncio.create_task(worker.leases.recover_lost([("default", lost)]))
            await asyncio.sleep(1.0)
            # Then it keeps trying instead of dying, and joins again once the broker is back
            assert not recovering.done()
            server.start()
            await asyncio.wait_for(recovering, 15)
            assert await (await echo.enqueue(7)).result(timeout=15) == 7
    finally:
        await app.aclose()
        server.stop()


async def test_ended_leases_are_reclaimed_at_start_up(broker_url: str, prefix: str) -> None:
    app = corq.App(broker_url, prefix=prefix)

    @app.task
    async def echo(x: int) -> int:
        return x

    other = open_backend(broker_url, prefix=prefix)
    try:
        # Given two jobs held by two holders of one worker id: one live, one whose process
        # the supervisor saw die (its lease ended)
        a, b = await echo.enqueue(1), await echo.enqueue(2)
        live = WorkerLease(worker_id="slot-1", queues=["default"], lease_ms=60_000,
                           holders={"default": "slot-1~aaaaaa"})  # fmt: skip
        await other.register_worker(live, None)
        await other.claim_jobs("default", "slot-1~aaaaaa", 2, 60_000, None)
        successor = WorkerLease(worker_id="slot-1", queues=["default"], lease_ms=60_000,
                                holders={"default": "slot-1~bbbbbb"})  # fmt: skip
        await other.register_worker(successor, None)
        assert await other.end_leases(successor) == 1
        # When a worker starts, Then it takes back the ended lease's jobs at once
        async with run_worker(app):
            assert sorted([await a.result(timeout=8), await b.result(timeout=8)]) == [1, 2]
    finally:
        await other.close()
        await app.aclose()


@pytest.mark.parametrize("broker_url", ["sqlite"], indirect=True)
async def test_settings_that_cannot_work_are_refused(broker_url: str) -> None:
    with pytest.raises(corq.ConfigError, match="concurrency"):
        corq.Worker(corq.App(broker_url), concurrency=-5)
    with pytest.raises(corq.ConfigError, match="worker id"):
        corq.Worker(corq.App(broker_url), worker_id="has spaces")
    with pytest.raises(corq.ConfigError, match="grace"):
        corq.Worker(corq.App(broker_url), grace_s=float("inf"))


async def test_maintenance_reclaims_in_queues_this_worker_does_not_serve(
    fake_app: tuple[corq.App, corq.FakeClock], broker_url: str, prefix: str
) -> None:
    app, clock = fake_app

    @app.task(queue="orphaned")
    async def once() -> None:
        return None

    other = open_backend(broker_url, prefix=prefix)
    try:
        # Given a queue nobody serves any more, where a dead worker left a job running
        handle = await once.enqueue()
        lease = WorkerLease(worker_id="gone", queues=["orphaned"], lease_ms=10_000)
        await other.register_worker(lease, clock.now_ms())
        assert len((await other.claim_jobs("orphaned", "gone", 1, 10_000, clock.now_ms())).jobs)
        # When a worker of another queue has run past its next maintenance (~5 minutes)
        async with run_worker(app, queues=["default"]):
            clock.advance(600)
            # Then the job is queued again, its death counted, and the dead worker gone
            await _until(lambda: _status_is(handle, corq.JobStatus.QUEUED), what="reclaim")
        [stats] = await other.queue_stats(["orphaned"])
        assert (stats.ready, stats.in_flight, stats.workers) == (1, 0, 0)
        assert (await handle.info()).deaths == 1
    finally:
        await other.close()


async def test_maintenance_forgets_queues_unused_for_longer_than_results_live(
    fake_app: tuple[corq.App, corq.FakeClock],
) -> None:
    app, clock = fake_app

    @app.task(queue="once")
    async def once() -> None:
        return None

    # Given a queue used once and empty since
    await once.enqueue()
    await drain(app, queues=["once"])
    backend = app.client().backend
    assert "once" in await backend.list_queues()
    # When a worker of another queue runs past its maintenance, more than a day later
    async with run_worker(app, queues=["default"]):
        clock.advance(app.settings.result_ttl_s + 2 * 3600)

        async def forgotten() -> bool:
            # Time goes on while we wait: the worker's loops may have started their first
            # sleep only after the jump above, and its maintenance comes up to
            # MAINTAIN_EVERY_S after that.
            clock.advance(60)
            return "once" not in await backend.list_queues()

        # Then the unused queue's name is forgotten
        await _until(forgotten, what="the unused queue to be forgotten")

        # and the worker's own queue stays known (the jumps expire the worker's lease in
        # fake time, so its name may be pruned while it is not registered; re-registering
        # names it again)
        async def served_queue_known() -> bool:
            return "default" in await backend.list_queues()

        await _until(served_queue_known, what="the served queue to be known")


async def _status_is(handle: corq.JobHandle[Any], status: corq.JobStatus) -> bool:
    return (await handle.status()) == status
