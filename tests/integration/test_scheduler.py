"""The scheduler on a real broker with a fake clock: ticks on time, overlap and catch-up
policies, jitter, pause-on-failure, changes seen while running, schedules it cannot fire,
and what a task sees of its tick. Nothing sleeps: the clock moves by hand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

import corq
from corq.scheduler import SkipReason
from corq.testing import run_worker
from tests.integration.scheduling import (
    START,
    fake_app,
    fired,
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
    yield app, clock
    await app.aclose()


async def skip_reasons(app: corq.App, name: str) -> list[tuple[str, int]]:
    """The schedule's skips as (reason, count), oldest first."""
    _, skips = await app.schedules.history(name)
    return [(s.reason, s.count) for s in reversed(skips)]


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# -- firing --------------------------------------------------------------------------------
async def test_a_code_schedule_fires_each_tick_once_on_time(fake: FakeApp) -> None:
    app, clock = fake

    @app.periodic(every=60, anchor=START, name="report")
    async def build() -> None: ...

    async with leading(app) as scheduler:
        for k in (1, 2, 3):
            clock.advance(60)
            job = await wait_fired(app, "report", tick(k))
            # Enqueued at its tick (the fake clock stood still meanwhile), marked as its tick.
            assert (job.enqueued_at_ms, job.run_at_ms) == (tick(k), tick(k))
            assert (job.schedule, job.tick_ms, job.task) == ("report", tick(k), "build")
        assert scheduler.counts.fired == 3
    assert await run_ticks(app, "report") == [tick(1), tick(2), tick(3)]
    info = await app.schedules.get("report")
    assert (info.source, info.fired, info.skipped) == ("code", 3, 0)
    assert info.last_run is not None
    assert info.last_run.tick == dt(tick(3))
    assert info.last_run.state is corq.JobStatus.QUEUED  # no worker ran it


async def test_a_cron_schedule_in_a_time_zone_fires_on_its_local_minutes(fake: FakeApp) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    await app.schedules.add("every-5s", build, cron="*/5 * * * * *", tz="Asia/Shanghai")
    async with leading(app):
        clock.advance(5)
        job = await wait_fired(app, "every-5s", tick(1, 5000))
    assert job.tick_ms == tick(1, 5000)


# -- overlap -------------------------------------------------------------------------------
async def test_overlap_skip_passes_over_ticks_while_the_previous_run_is_unfinished(
    fake: FakeApp,
) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    await app.schedules.add("report", build, every=60, anchor=START, overlap="skip")
    async with leading(app) as scheduler:
        clock.advance(60)
        first = await wait_fired(app, "report", tick(1))
        # Given the first run still queued (no worker runs it), the next tick is skipped
        clock.advance(60)
        await until(lambda: skip_reasons(app, "report"), what="the overlap skip")
        assert await fired(app, "report", tick(2)) is None
        # and once that run has ended (cancelled here), the next tick fires.
        assert await app.client().cancel(first.id, "default")
        clock.advance(60)
        await wait_fired(app, "report", tick(3))
        assert scheduler.counts.by_reason == {SkipReason.OVERLAP: 1}
    assert await skip_reasons(app, "report") == [
        (f"overlap: previous run {first.id} still running", 1)
    ]


async def test_buffer_one_fires_the_held_tick_once_the_previous_run_ends(fake: FakeApp) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    await app.schedules.add("report", build, every=60, anchor=START, overlap="buffer_one")
    async with leading(app):
        clock.advance(60)
        first = await wait_fired(app, "report", tick(1))
        # While the first run is unfinished, one tick is held back and the next skipped
        clock.advance(60)

        async def buffered() -> bool:
            return (await app.schedules.get("report")).buffered_tick == dt(tick(2))

        await until(buffered, what="tick 2 buffered")
        clock.advance(60)
        await until(lambda: skip_reasons(app, "report"), what="tick 3 skipped")
        # When the first run ends, the buffered tick fires at the next poll.
        assert await app.client().cancel(first.id, "default")
        clock.advance(0.5)
        await wait_fired(app, "report", tick(2))
    runs, skips = await app.schedules.history("report")
    assert [(r.tick, r.kind) for r in runs] == [
        (dt(tick(2)), corq.RunKind.BUFFERED),
        (dt(tick(1)), corq.RunKind.TICK),
    ]
    assert [s.first_tick for s in skips] == [dt(tick(3))]
    assert "is buffered already" in skips[0].reason
    assert await fired(app, "report", tick(3)) is None


async def test_cancel_other_cancels_the_unstarted_previous_run_then_fires(fake: FakeApp) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    await app.schedules.add("report", build, every=60, anchor=START, overlap="cancel_other")
    async with leading(app):
        clock.advance(60)
        first = await wait_fired(app, "report", tick(1))
        clock.advance(60)
        await wait_fired(app, "report", tick(2))
    assert await app.job(first.id).status() is corq.JobStatus.CANCELLED


async def test_cancel_other_stops_the_previous_run_while_it_runs(fake: FakeApp) -> None:
    app, clock = fake
    release, stopped = asyncio.Event(), asyncio.Event()

    @app.task
    async def build() -> None:
        try:
            await release.wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    await app.schedules.add("report", build, every=60, anchor=START, overlap="cancel_other")
    async with leading(app), run_worker(app, scheduler=False):
        clock.advance(60)
        first = await wait_fired(app, "report", tick(1))

        async def first_running() -> bool:
            return await app.job(first.id).status() is corq.JobStatus.RUNNING

        await until(first_running, what="the first run to start")
        # The next tick cancels the running one (stopped on its worker) and fires.
        clock.advance(60)
        await wait_fired(app, "report", tick(2))
        await asyncio.wait_for(stopped.wait(), 10)
        assert await app.job(first.id).status() is corq.JobStatus.CANCELLED
        release.set()


async def test_allow_all_fires_every_tick_whatever_the_previous_run_does(fake: FakeApp) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    await app.schedules.add("report", build, every=60, anchor=START)
    async with leading(app):
        for k in (1, 2):
            clock.advance(60)
            await wait_fired(app, "report", tick(k))
    assert await app.job(f"report@{tick(1)}").status() is corq.JobStatus.QUEUED


# -- catch-up ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("catchup", "late_s", "fired_ticks", "skipped"),
    [
        # 10 ticks passed with no scheduler; the window is 5 minutes.
        ("all", 0, [6, 7, 8, 9, 10], 5),
        ("latest", 0, [10], 9),
        ("none", 30, [], 10),
    ],
)
async def test_catch_up_after_downtime_follows_the_policy_within_the_window(
    fake: FakeApp, catchup: str, late_s: float, fired_ticks: list[int], skipped: int
) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    await app.schedules.add("report", build, every=60, anchor=START, catchup=catchup)
    # Given ten minutes without any scheduler
    clock.advance(600 + late_s)
    # When one starts
    async with leading(app) as scheduler:

        async def caught_up() -> bool:
            info = await app.schedules.get("report")
            return info.last_tick == dt(tick(10))

        await until(caught_up, what="the missed ticks to be handled")
        # Then the policy decides which missed ticks fire and every other one is counted.
        assert scheduler.counts.fired == len(fired_ticks)
        assert scheduler.counts.skipped == skipped
    assert await run_ticks(app, "report") == [tick(k) for k in fired_ticks]
    info = await app.schedules.get("report")
    assert info.skipped == skipped
    reasons = await skip_reasons(app, "report")
    assert sum(count for _, count in reasons) == skipped
    assert reasons[0][0].startswith("missed: older than the catch-up window (5m)")


async def test_a_tick_late_by_less_than_the_window_fires_late_with_catch_up_all(
    fake: FakeApp,
) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    await app.schedules.add("report", build, every=60, anchor=START, catchup_window=3600)
    clock.advance(185)
    async with leading(app):
        jobs = [await wait_fired(app, "report", tick(k)) for k in (1, 2, 3)]
    assert [j.enqueued_at_ms - j.tick_ms for j in jobs if j.tick_ms] == [125_000, 65_000, 5_000]


# -- jitter --------------------------------------------------------------------------------
async def test_jitter_delays_a_ticks_job_by_the_same_amount_on_every_scheduler(
    fake: FakeApp,
) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    info = await app.schedules.add("report", build, every=60, anchor=START, jitter=30)
    delay = info.definition.policy.jitter_for("report", tick(1))
    assert 0 < delay <= 30_000
    async with leading(app):
        clock.advance(60)
        job = await wait_fired(app, "report", tick(1))
    assert (job.enqueued_at_ms, job.run_at_ms) == (tick(1), tick(1) + delay)
    assert job.status is corq.JobStatus.SCHEDULED


# -- pause on failure ----------------------------------------------------------------------
async def test_pause_on_failure_pauses_when_a_run_ends_dead_until_resumed(fake: FakeApp) -> None:
    app, clock = fake

    @app.task
    async def explode() -> None:
        raise RuntimeError("boom")

    await app.schedules.add("report", explode, every=60, anchor=START, pause_on_failure=True)
    async with run_worker(app) as worker:
        assert worker.scheduler is not None
        await until(lambda: worker.scheduler is not None and worker.scheduler.is_leader)
        clock.advance(60)
        job = await wait_fired(app, "report", tick(1))

        async def dead() -> bool:
            return await app.job(job.id).status() is corq.JobStatus.DEAD

        await until(dead, what="the run to die")
        # When the leader next looks, the schedule pauses itself, saying why
        clock.advance(0.5)

        async def paused() -> bool:
            return (await app.schedules.get("report")).paused

        await until(paused, what="the schedule to pause itself")
        info = await app.schedules.get("report")
        assert info.paused_reason == f"paused on failure: job {job.id} ended dead"
        assert info.next_ticks == ()
        # and fires no tick until resumed, then again from the next tick on
        clock.advance(60)
        await app.schedules.resume("report")
        resumed = (await app.schedules.get("report")).version

        def seen() -> bool:  # (the leader sees the resume before the clock passes tick 3)
            scheduler = worker.scheduler
            return scheduler is not None and (scheduler.known_version("report") or 0) >= resumed

        clock.advance(0.5)  # its next poll
        await until(seen, what="the leader to see the resume")
        clock.advance(59.5)
        await wait_fired(app, "report", tick(3))
    assert await fired(app, "report", tick(2)) is None
    assert (await skip_reasons(app, "report"))[0] == ("paused", 1)


# -- changes while running -------------------------------------------------------------------
async def test_a_running_scheduler_sees_add_update_pause_resume_and_remove(fake: FakeApp) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    async with leading(app):
        # add: seen at the next poll, fired at its tick
        await app.schedules.add("report", build, every=60, anchor=START)
        clock.advance(60)
        await wait_fired(app, "report", tick(1))
        # update: the new rule's ticks from now on
        await app.schedules.update("report", every=30)
        clock.advance(30)
        await wait_fired(app, "report", tick(3, 30_000))
        # pause: no tick; resume: the ticks after it
        await app.schedules.pause("report", reason="migration")
        clock.advance(30)
        await app.schedules.resume("report")
        clock.advance(30)
        await wait_fired(app, "report", tick(5, 30_000))
        assert await fired(app, "report", tick(4, 30_000)) is None
        # remove: gone, while another schedule due at the same instant fires
        await app.schedules.remove("report")
        await app.schedules.add("other", build, every=30, anchor=START)
        clock.advance(30)
        await wait_fired(app, "other", tick(6, 30_000))
        assert await fired(app, "report", tick(6, 30_000)) is None
    assert [i.name for i in await app.schedules.list()] == ["other"]


async def test_a_paused_schedule_is_resumed_with_its_skipped_ticks_counted(fake: FakeApp) -> None:
    app, clock = fake

    @app.task
    async def build() -> None: ...

    await app.schedules.add("report", build, every=60, anchor=START, paused=True)
    clock.advance(5 * 60)
    info = await app.schedules.resume("report")
    assert not info.paused
    assert info.last_tick == dt(tick(5))
    assert await skip_reasons(app, "report") == [("paused", 5)]
    assert info.skipped == 5


# -- schedules that cannot fire ------------------------------------------------------------
async def test_a_schedule_whose_task_is_not_registered_is_skipped_and_the_others_fire(
    fake: FakeApp, broker_url: str, prefix: str
) -> None:
    app, clock = fake
    # Given a schedule added by a producer that knows a task the scheduler's app lacks
    producer = corq.App(broker_url, prefix=prefix, clock=clock)

    @producer.task
    async def ghost() -> None: ...

    @app.task
    async def build() -> None: ...

    await producer.schedules.add("ghost", ghost, every=60, anchor=START)
    await app.schedules.add("report", build, every=60, anchor=START)
    try:
        async with leading(app) as scheduler:
            clock.advance(60)
            # Then the other schedule fires, and the ghost's tick is skipped, saying why
            await wait_fired(app, "report", tick(1))
            await until(lambda: skip_reasons(app, "ghost"), what="the ghost's skip")
            assert scheduler.counts.by_reason == {SkipReason.TASK_NOT_REGISTERED: 1}
            assert "'ghost' is not a task of the scheduler's app" in scheduler.problems["ghost"]
    finally:
        await producer.aclose()
    assert await fired(app, "ghost", tick(1)) is None
    ((reason, count),) = await skip_reasons(app, "ghost")
    assert reason.startswith("task not registered")
    assert count == 1


async def test_a_stored_schedule_named_like_a_code_one_wins_and_the_clash_is_reported(
    fake: FakeApp, broker_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, clock = fake
    producer = corq.App(broker_url, prefix=prefix, clock=clock)

    @producer.task(name="build")
    async def stored_build() -> None: ...

    await producer.schedules.add("report", stored_build, every=60, anchor=START, origin="ops")
    await producer.aclose()

    @app.periodic(every=30, anchor=START, name="report")
    async def build() -> None: ...

    caplog.set_level(logging.ERROR)
    async with leading(app) as scheduler:
        problem = scheduler.problems["report"]
        assert "declared in code at" in problem
        assert "build" in problem
        assert "added by ops" in problem
        assert problem in caplog.text
        clock.advance(60)
        await wait_fired(app, "report", tick(1))
    info = await app.schedules.get("report")
    assert (info.source, info.describe()) == ("stored", "every 1m")


async def test_a_changed_code_schedule_is_written_again_with_its_new_rule(
    broker_url: str, prefix: str
) -> None:
    # Given a code schedule already stored by an earlier version of the app
    old, clock = fake_app(broker_url, prefix)

    @old.periodic(every=60, anchor=START, name="report")
    async def build() -> None: ...

    async with leading(old):
        clock.advance(60)
        await wait_fired(old, "report", tick(1))
    await old.aclose()
    # When the new version (every 30 s) leads
    new = corq.App(broker_url, prefix=prefix, clock=clock, scheduler_lease_s=600)

    @new.periodic(every=30, anchor=START, name="report")
    async def build2() -> None: ...

    try:
        async with leading(new, holder="new"):
            clock.advance(30)
            await wait_fired(new, "report", tick(3, 30_000))
        info = await new.schedules.get("report")
        assert info.describe() == "every 30s"
        assert "build2" in info.definition.origin
    finally:
        await new.aclose()


# -- what a task sees --------------------------------------------------------------------------
async def test_a_task_sees_its_schedule_and_tick(fake: FakeApp) -> None:
    app, clock = fake
    seen: list[tuple[str | None, datetime | None, str]] = []

    @app.periodic(every=60, anchor=START, args=("eu",), name="sync-eu")
    async def sync(region: str) -> None:
        job = corq.current_job()
        seen.append((job.schedule, job.tick, region))

    @app.periodic(every=60, anchor=START)
    def on_a_thread() -> None:
        job = corq.current_job()
        seen.append((job.schedule, job.tick, "thread"))

    async with run_worker(app) as worker:
        await until(lambda: worker.scheduler is not None and worker.scheduler.is_leader)
        clock.advance(60)
        await until(lambda: len(seen) == 2, what="both tasks to run")
        await sync.enqueue("us")
        await until(lambda: len(seen) == 3, what="the plain job to run")
    assert sorted(seen[:2], key=lambda s: s[2]) == [
        ("sync-eu", dt(tick(1)), "eu"),
        ("on_a_thread", dt(tick(1)), "thread"),
    ]
    assert seen[2] == (None, None, "us")
