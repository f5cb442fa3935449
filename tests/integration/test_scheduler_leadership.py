"""Several schedulers on one store: one leads, a standby takes over when it stops or dies,
and no tick fires twice through it all. Workers run a scheduler unless told not to."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import corq
from corq.backends.base import NewJob, ScheduleStep, TickOutcome, TickStep
from corq.schedule import tick_job_id
from corq.scheduler import Scheduler
from corq.testing import run_worker
from tests.conftest import RedisServer, free_port
from tests.integration.scheduling import (
    LEASE_S,
    START,
    fake_app,
    leading,
    run_ticks,
    tick,
    wait_fired,
)
from tests.waiting import until

FakeApp = tuple[corq.App, corq.FakeClock]


@pytest.fixture
async def fake(broker_url: str, prefix: str) -> AsyncIterator[FakeApp]:
    app, clock = fake_app(broker_url, prefix)

    @app.periodic(every=60, anchor=START, name="report", catchup_window=3600)
    async def build() -> None: ...

    yield app, clock
    await app.aclose()


def leader_of(*schedulers: Scheduler) -> Scheduler:
    (leader,) = [s for s in schedulers if s.is_leader]
    return leader


async def test_two_schedulers_on_one_store_elect_one_leader(fake: FakeApp) -> None:
    app, clock = fake
    async with Scheduler(app, holder="a") as a, Scheduler(app, holder="b") as b:
        await until(lambda: a.is_leader or b.is_leader, what="a leader")
        clock.advance(0.5)  # the standby tries again: still one leader
        clock.advance(60)
        await wait_fired(app, "report", tick(1))
        assert a.is_leader != b.is_leader
        leader = leader_of(a, b)
        assert leader.counts.fired == 1
        assert (a.counts.fired + b.counts.fired) == 1


async def test_when_the_leader_stops_the_standby_takes_over_and_no_tick_fires_twice(
    fake: FakeApp,
) -> None:
    app, clock = fake
    async with Scheduler(app, holder="a") as a, Scheduler(app, holder="b") as b:
        await until(lambda: a.is_leader or b.is_leader, what="a leader")
        first = leader_of(a, b)
        standby = b if first is a else a
        clock.advance(60)
        await wait_fired(app, "report", tick(1))
        # When the leader stops, it releases the lease
        await first.stop()
        # Then the standby leads at its next try and fires the next ticks
        clock.advance(0.5)
        await until(lambda: standby.is_leader, what="the standby to lead")
        for k in (2, 3):
            clock.advance(60)
            await wait_fired(app, "report", tick(k))
        assert (first.counts.fired, standby.counts.fired) == (1, 2)
    assert await run_ticks(app, "report") == [tick(1), tick(2), tick(3)]


async def test_when_the_leader_dies_its_ticks_fire_late_once_after_its_lease(
    fake: FakeApp,
) -> None:
    app, clock = fake
    async with Scheduler(app, holder="a") as a, Scheduler(app, holder="b") as b:
        await until(lambda: a.is_leader or b.is_leader, what="a leader")
        first = leader_of(a, b)
        standby = b if first is a else a
        clock.advance(60)
        await wait_fired(app, "report", tick(1))
        # When the leader dies (its lease is kept, as after a SIGKILL)
        await first.stop(immediate=True)
        # Then nobody fires until the lease passes; the standby then catches up, once each
        clock.advance(LEASE_S / 2)
        clock.advance(LEASE_S / 2 + 1)
        await until(lambda: standby.is_leader, what="the standby to lead")
        missed = int((LEASE_S + 1) // 60) + 1
        await wait_fired(app, "report", tick(missed))
        assert standby.counts.fired == missed - 1
    assert await run_ticks(app, "report") == [tick(k) for k in range(1, missed + 1)]


async def test_a_deposed_leader_stops_at_its_first_write_after_its_successors(
    fake: FakeApp,
) -> None:
    app, clock = fake
    async with Scheduler(app, holder="a") as a:
        await until(lambda: a.is_leader, what="a to lead")
        clock.advance(60)
        await wait_fired(app, "report", tick(1))
        # Given a successor that took the lease while a did not notice (a was cut off),
        backend = app.client().backend
        assert await backend.release_scheduler_lease("a")
        lease = await backend.acquire_scheduler_lease("b", 600_000, clock.broker_now_ms())
        assert lease is not None
        # and that fired the next tick as the new leader,
        job = NewJob(
            id=tick_job_id("report", tick(2)),
            task="build",
            queue="default",
            payload=b'{"args":[],"kwargs":{}}',
            enqueued_at_ms=tick(2),
            run_at_ms=tick(2),
            schedule="report",
            tick_ms=tick(2),
        )
        step = ScheduleStep(schedule="report", step=TickStep.FIRE, tick_ms=tick(2), job=job)
        assert await backend.advance_schedules([step], lease.fence, clock.broker_now_ms()) == [
            TickOutcome.DONE
        ]
        # When a tries the same tick, it is fenced and stops leading at once
        clock.advance(60)
        await until(lambda: not a.is_leader, what="a to step down")
        clock.advance(60)
        clock.advance(0.5)
        assert not a.is_leader
        assert a.counts.fired == 1
    assert await run_ticks(app, "report") == [tick(1), tick(2)]


async def test_every_worker_runs_a_scheduler_unless_told_not_to(fake: FakeApp) -> None:
    app, clock = fake
    async with (
        run_worker(app, worker_id="w1") as w1,
        run_worker(app, worker_id="w2", scheduler=False) as w2,
    ):
        assert w2.scheduler is None
        assert w1.scheduler is not None
        await until(lambda: w1.scheduler is not None and w1.scheduler.is_leader)
        clock.advance(60)
        await wait_fired(app, "report", tick(1))
    assert corq.Worker(app, burst=True).scheduler is None
    assert corq.Worker(app, burst=True, scheduler=True).scheduler is not None


async def test_a_stopping_worker_hands_the_lead_over_before_its_jobs_finish(
    fake: FakeApp,
) -> None:
    app, clock = fake
    standby = Scheduler(app, holder="standby")
    async with run_worker(app, worker_id="w1") as worker:
        scheduler = worker.scheduler
        assert scheduler is not None
        await until(lambda: scheduler.is_leader, what="the worker's scheduler to lead")
        await standby.start()
    # The worker has stopped: its scheduler released the lease.
    clock.advance(0.5)
    try:
        await until(lambda: standby.is_leader, what="the standby to lead")
    finally:
        await standby.stop()


async def test_a_broker_outage_is_logged_once_and_the_scheduler_carries_on(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a leading scheduler on a private Redis
    server = RedisServer(tmp_path / "redis", port=free_port())
    server.start()
    app, clock = fake_app(server.url, prefix, socket_timeout_s=0.3)

    @app.periodic(every=60, anchor=START, name="report")
    async def build() -> None: ...

    caplog.set_level(logging.INFO)
    try:
        async with leading(app) as scheduler:
            clock.advance(60)
            await wait_fired(app, "report", tick(1))
            # When the broker goes away while a tick falls due
            server.stop()
            clock.advance(60)
            await until(lambda: "scheduler failed" in caplog.text, what="the outage logged")
            # Then the scheduler keeps trying, and fires the tick once the broker is back,
            server.start()
            await wait_fired(app, "report", tick(2))
            assert scheduler.is_leader
        # having said so once.
        assert caplog.text.count("scheduler failed") == 1
        assert "scheduler works again" in caplog.text
    finally:
        await app.aclose()
        server.stop()
