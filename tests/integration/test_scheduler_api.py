"""`app.schedules` and `@app.periodic` on a real broker: every mistake refused at definition
time with nothing stored, and what get, list, update, history, backfill and run-now show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import corq
from corq.testing import run_worker
from tests.integration.scheduling import START, fake_app, leading, tick, wait_fired
from tests.waiting import until

FakeApp = tuple[corq.App, corq.FakeClock]


@pytest.fixture
async def fake(broker_url: str, prefix: str) -> AsyncIterator[FakeApp]:
    app, clock = fake_app(broker_url, prefix, max_payload_bytes=1000)
    yield app, clock
    await app.aclose()


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def sync_task(app: corq.App) -> corq.Task[[str], None]:
    @app.task
    async def sync(region: str, *, full: bool = False) -> None: ...

    return sync


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "*/5 * * *"}, "invalid cron expression '\\*/5 \\* \\* \\*': it has 4 fields"),
        ({"cron": "99 * * * *"}, "invalid cron expression"),
        ({"cron": "0 2 * * *", "tz": "Europe/Berlln"}, "unknown time zone 'Europe/Berlln'"),
        ({"every": 60, "args": ()}, "missing a required argument: 'region'"),
        ({"every": 60, "args": ("eu", "us")}, "too many positional arguments"),
        ({"every": 60, "args": (5,)}, "argument 'region': Expected `str`, got `int`"),
        ({"every": 60, "args": ("eu",), "kwargs": {"fast": True}}, "unexpected keyword"),
        ({"every": 60, "args": "eu"}, "args must be a tuple or list"),
        ({"every": 60, "args": ("x" * 2000,)}, "payload is 2,0\\d\\d bytes, over the limit"),
        ({"at": datetime(2020, 1, 1, tzinfo=UTC), "args": ("eu",)}, "has already passed"),
        ({"every": 60, "args": ("eu",), "overlap": "queue"}, "overlap must be one of"),
        ({"every": 60, "args": ("eu",), "queue": "bad queue"}, "invalid queue name"),
        ({"every": 60, "args": ("eu",), "priority": 1000}, "priority must be an integer"),
        ({"every": 60, "args": ("eu",), "paused": "yes"}, "paused must be True or False"),
    ],
)
async def test_a_bad_schedule_is_refused_at_definition_and_nothing_is_stored(
    fake: FakeApp, kwargs: dict[str, Any], message: str
) -> None:
    app, _ = fake
    sync = sync_task(app)
    with pytest.raises(corq.ScheduleError, match=message):
        await app.schedules.add("sync-eu", sync, **kwargs)
    assert await app.schedules.list() == []


async def test_unknown_tasks_and_names_are_refused(fake: FakeApp) -> None:
    app, _ = fake
    sync_task(app)
    with pytest.raises(corq.ScheduleError, match=r"unknown task 'sink'.*registered here: sync"):
        await app.schedules.add("s", "sink", every=60)
    with pytest.raises(corq.ScheduleError, match="invalid schedule name"):
        await app.schedules.add("bad name", "sync", every=60, args=("eu",))
    for missing in (
        app.schedules.get("nope"),
        app.schedules.pause("nope"),
        app.schedules.resume("nope"),
        app.schedules.remove("nope"),
        app.schedules.run_now("nope"),
        app.schedules.update("nope", every=5),
        app.schedules.history("nope"),
    ):
        with pytest.raises(corq.ScheduleNotFoundError, match="no schedule named 'nope'"):
            await missing


async def test_a_taken_name_is_refused_naming_the_schedule_that_has_it(
    fake: FakeApp, broker_url: str, prefix: str
) -> None:
    app, _ = fake
    sync = sync_task(app)

    @app.periodic(every=60, name="nightly")
    async def nightly() -> None: ...

    await app.schedules.add("sync-eu", sync, every=60, args=("eu",), origin="ops")
    # a stored one
    with pytest.raises(corq.ScheduleError, match=r"taken by a stored schedule .*added by ops"):
        await app.schedules.add("sync-eu", sync, cron="* * * * *", args=("us",))
    # a code schedule of this app
    with pytest.raises(
        corq.ScheduleError, match=r"taken by the code schedule declared at .*nightly"
    ):
        await app.schedules.add("nightly", sync, every=60, args=("eu",))
    # a code schedule another app's scheduler stored
    other, _ = fake_app(broker_url, prefix)

    @other.periodic(every=60, name="hourly")
    async def hourly() -> None: ...

    try:
        async with leading(other):
            pass
    finally:
        await other.aclose()
    with pytest.raises(
        corq.ScheduleError, match=r"taken by the code schedule declared at .*hourly"
    ):
        await app.schedules.add("hourly", sync, every=60, args=("eu",))


def test_periodic_refuses_mistakes_at_import_and_registers_nothing() -> None:
    app = corq.App("sqlite:///never-opened.db")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"cron": "bad"}, "invalid cron expression"),
        ({"cron": "0 2 * * *", "tz": "Nowhere/City"}, "unknown time zone"),
        ({"every": 60}, "missing a required argument: 'region'"),
        ({"every": 60, "args": ("eu",), "name": "has space"}, "invalid schedule name"),
        ({"every": 60, "args": ("eu",), "overlap": "x"}, "overlap must be one of"),
        ({}, "give exactly one of cron=, every= or at="),
    ]
    for kwargs, message in cases:
        with pytest.raises(corq.ScheduleError, match=message):

            @app.periodic(**kwargs)
            async def sync(region: str) -> None: ...

    assert app.registry == {}
    assert app.periodic_schedules == {}


def test_periodic_declares_a_task_and_its_schedule() -> None:
    app = corq.App("sqlite:///never-opened.db")

    @app.periodic(
        every=timedelta(seconds=30), args=("eu",), name="sync-eu", queue="sync", retries=2
    )
    async def sync(region: str) -> str:
        return region

    @app.task
    async def report() -> None: ...

    same = app.periodic(cron="0 * * * *", tz="Europe/Berlin")(report)
    assert same is report
    assert app.registry["sync"].options.retry.max_retries == 2
    definition = app.periodic_schedules["sync-eu"]
    assert (definition.task, definition.queue, definition.source) == ("sync", "sync", "code")
    assert definition.origin.endswith(
        ":test_periodic_declares_a_task_and_its_schedule.<locals>.sync"
    )
    assert app.periodic_schedules["report"].rule.describe() == "cron 0 * * * * (Europe/Berlin)"
    with pytest.raises(corq.ScheduleError, match=r"declared twice: at .* and at "):
        app.periodic(every=60, name="sync-eu", args=("x",))(report)
    with pytest.raises(corq.ScheduleError, match=r"give its options to @app.task.*retries"):
        app.periodic(every=60, name="again", retries=3)(report)
    # A serializer chosen later encodes the code schedules' arguments too.
    app.configure(serializer="msgpack")
    assert app.periodic_schedules["sync-eu"].payload == app.serializer.dumps(
        {"args": ["eu"], "kwargs": {}}
    )


async def test_code_schedules_cannot_be_changed_or_removed_here_but_can_be_paused(
    fake: FakeApp,
) -> None:
    app, _ = fake

    @app.periodic(every=60, name="nightly")
    async def nightly() -> None: ...

    with pytest.raises(corq.ScheduleError, match=r"declared in code .* change the code"):
        await app.schedules.update("nightly", every=30)
    with pytest.raises(corq.ScheduleError, match="cannot be removed here"):
        await app.schedules.remove("nightly")
    # Not stored yet: listed all the same, and pausing says what is missing
    (info,) = await app.schedules.list()
    assert (info.name, info.stored, info.source) == ("nightly", False, "code")
    with pytest.raises(corq.ScheduleNotFoundError, match="not in the broker yet"):
        await app.schedules.pause("nightly")
    async with leading(app):
        pass
    info = await app.schedules.pause("nightly", reason="maintenance")
    assert (info.stored, info.paused, info.paused_reason) == (True, True, "maintenance")
    assert not (await app.schedules.resume("nightly")).paused


# -- reading and changing ------------------------------------------------------------------------
async def test_get_shows_the_next_ticks_in_the_schedules_time_zone(fake: FakeApp) -> None:
    app, _ = fake
    sync = sync_task(app)
    info = await app.schedules.add(
        "sync-eu", sync, cron="0 2 * * *", tz="Europe/Berlin", args=("eu",), kwargs={"full": True}
    )
    assert info == await app.schedules.get("sync-eu")
    berlin = [t.astimezone(t.tzinfo).isoformat() for t in info.next_ticks]
    assert berlin == [
        "2023-11-15T02:00:00+01:00",
        "2023-11-16T02:00:00+01:00",
        "2023-11-17T02:00:00+01:00",
    ]
    assert (info.task, info.queue, info.source, info.stored) == ("sync", "default", "stored", True)
    assert info.describe() == "cron 0 2 * * * (Europe/Berlin)"
    assert (info.fired, info.skipped, info.last_run) == (0, 0, None)


async def test_update_changes_what_is_given_and_keeps_the_rest(fake: FakeApp) -> None:
    app, clock = fake
    sync = sync_task(app)
    await app.schedules.add(
        "sync-eu", sync, every=60, anchor=START, args=("eu",), overlap="skip", jitter=5
    )
    clock.advance(90)
    info = await app.schedules.update("sync-eu", kwargs={"full": True}, priority=7)
    d = info.definition
    assert (d.priority, d.policy.overlap, d.policy.jitter_ms) == (7, corq.Overlap.SKIP, 5000)
    assert d.payload == app.serializer.dumps({"args": ["eu"], "kwargs": {"full": True}})
    # The rule unchanged: the watermark stays; a new rule starts from now.
    assert info.last_tick == dt(START_MS := tick(0))
    changed = await app.schedules.update("sync-eu", every=30)
    assert changed.describe() == "every 30s"
    assert changed.definition.rule.anchor_ms == START_MS
    assert changed.last_tick == dt(tick(0) + 90_000)
    with pytest.raises(corq.ScheduleError, match="missing a required argument"):
        await app.schedules.update("sync-eu", args=())
    assert (await app.schedules.get("sync-eu")).definition == changed.definition


async def test_history_shows_each_runs_job_state_and_duration(fake: FakeApp) -> None:
    app, clock = fake

    @app.task
    async def build() -> int:
        return 1

    @app.task
    async def explode() -> None:
        raise RuntimeError("boom")

    await app.schedules.add("good", build, every=60, anchor=START)
    await app.schedules.add("bad", explode, every=60, anchor=START)
    async with run_worker(app) as worker:
        await until(lambda: worker.scheduler is not None and worker.scheduler.is_leader)
        clock.advance(60)

        async def ended() -> bool:
            runs = [(await app.schedules.history(n))[0] for n in ("good", "bad")]
            return all(
                r and r[0].state in (corq.JobStatus.SUCCEEDED, corq.JobStatus.DEAD) for r in runs
            )

        await until(ended, what="both runs to end")
    (good,), _ = await app.schedules.history("good")
    (bad,), _ = await app.schedules.history("bad")
    assert (good.state, good.duration, good.error, good.kind) == (
        corq.JobStatus.SUCCEEDED,
        timedelta(0),
        None,
        corq.RunKind.TICK,
    )
    assert (good.tick, good.lateness, good.job_id) == (dt(tick(1)), timedelta(0), f"good@{tick(1)}")
    assert bad.state is corq.JobStatus.DEAD
    assert bad.error == "RuntimeError: boom"
    listed = {i.name: i for i in await app.schedules.list()}
    assert listed["good"].last_run == good


async def test_run_now_sends_a_job_at_once_and_leaves_the_ticks_alone(fake: FakeApp) -> None:
    app, clock = fake
    sync = sync_task(app)
    await app.schedules.add("sync-eu", sync, every=60, anchor=START, args=("eu",), paused=True)
    clock.advance(10)
    handle = await app.schedules.run_now("sync-eu")
    assert handle.id.startswith(f"sync-eu@now-{tick(0) + 10_000}-")
    job = await handle.info()
    assert (job.task, job.schedule, job.tick_ms, job.status) == (
        "sync",
        "sync-eu",
        tick(0) + 10_000,
        corq.JobStatus.QUEUED,
    )
    info = await app.schedules.get("sync-eu")
    assert (info.paused, info.last_tick, info.fired) == (True, dt(tick(0)), 1)
    assert info.last_run is not None
    assert info.last_run.kind is corq.RunKind.MANUAL


async def test_backfill_fires_the_ticks_a_pause_skipped_each_once(fake: FakeApp) -> None:
    app, clock = fake
    sync = sync_task(app)
    await app.schedules.add("sync-eu", sync, every=60, anchor=START, args=("eu",))
    async with leading(app):
        clock.advance(60)
        await wait_fired(app, "sync-eu", tick(1))
    # Given five ticks skipped while paused
    await app.schedules.pause("sync-eu")
    clock.advance(5 * 60)
    await app.schedules.resume("sync-eu")
    # When the window is backfilled, only the ticks not fired are fired
    result = await app.schedules.backfill("sync-eu", dt(tick(1)), dt(tick(6)))
    assert (result.ticks, result.fired, result.already_fired, result.below_floor, result.ahead) == (
        6,
        5,
        1,
        0,
        0,
    )
    assert list(result.job_ids) == [f"sync-eu@{tick(k)}" for k in range(2, 7)]
    job = await app.job(result.job_ids[0]).info()
    assert (job.schedule, job.tick_ms) == ("sync-eu", tick(2))
    # and backfilling again fires nothing.
    again = await app.schedules.backfill("sync-eu", dt(tick(1)), dt(tick(6)))
    assert (again.fired, again.already_fired) == (0, 6)
    runs, _ = await app.schedules.history("sync-eu")
    assert sorted(r.tick for r in runs if r.kind is corq.RunKind.BACKFILL) == [
        dt(tick(k)) for k in range(2, 7)
    ]


async def test_backfill_leaves_ticks_ahead_of_the_scheduler_to_it_and_refuses_bad_windows(
    fake: FakeApp,
) -> None:
    app, clock = fake
    sync = sync_task(app)
    await app.schedules.add("sync-eu", sync, every=60, anchor=START, args=("eu",))
    clock.advance(3 * 60)
    result = await app.schedules.backfill("sync-eu", dt(tick(1)), dt(tick(3)))
    assert (result.ticks, result.fired, result.ahead) == (3, 0, 3)
    with pytest.raises(corq.ScheduleError, match="is in the future"):
        await app.schedules.backfill("sync-eu", dt(tick(1)), dt(tick(4)))
    with pytest.raises(corq.ScheduleError, match="start must not be after end"):
        await app.schedules.backfill("sync-eu", dt(tick(3)), dt(tick(1)))
    with pytest.raises(corq.ScheduleError, match="has no time zone"):
        await app.schedules.backfill("sync-eu", datetime(2023, 1, 1), dt(tick(1)))
    with pytest.raises(corq.ScheduleError, match="more than 10,000 ticks"):
        await app.schedules.backfill("sync-eu", dt(tick(-20_000)), dt(tick(1)))
