"""Broker contract, ScheduleStore port: schedules, their firing state, the scheduler lease.

Methods: ``add_schedule``, ``update_schedule``, ``remove_schedule``, ``set_schedule_paused``,
``get_schedule``, ``list_schedules``, ``schedules_version``, ``changed_schedules``,
``schedule_history``, ``advance_schedules``, ``acquire_scheduler_lease``,
``release_scheduler_lease``, ``scheduler_lease``.

Every schedule here is created at T0, so its watermark starts at T0 and its ticks are
minutes after it (``at(n)``). Time is always passed explicitly, but for the lease reads,
which judge by the broker's clock.
"""

from __future__ import annotations

import asyncio

import pytest

from corq.backends import Backend
from corq.backends.base import (
    SCHEDULE_FIRED_KEEP,
    SCHEDULE_LOG_KEEP,
    NewJob,
    ScheduleRecord,
    ScheduleRun,
    ScheduleStep,
    SkippedTicks,
    TickOutcome,
    TickStep,
)
from corq.errors import EnqueueError
from corq.job import JobStatus
from tests.contract.conftest import Broker
from tests.contract.jobs import LEASE_MS, T0, Q, claim, new_job, record, register, wall_ms

S = "nightly"
DEF = b'{"every_ms": 60000}'
DEF2 = b'{"every_ms": 120000}'
MINUTE = 60_000
#: The fence of the scheduler that leads in most tests.
FENCE = 1

DONE, STALE, PAUSED, FENCED, GONE = (
    TickOutcome.DONE,
    TickOutcome.STALE,
    TickOutcome.PAUSED,
    TickOutcome.FENCED,
    TickOutcome.GONE,
)


def at(n: int) -> int:
    """The n-th minute tick after T0."""
    return T0 + n * MINUTE


def tick_job(
    tick_ms: int,
    *,
    name: str = S,
    queue: str = Q,
    job_id: str | None = None,
    delay_ms: int = 0,
    priority: int = 0,
    payload: bytes = b"{}",
) -> NewJob:
    """The job of a tick, enqueued at the tick (`delay_ms` later is its run time)."""
    return NewJob(
        id=f"{name}@{tick_ms}" if job_id is None else job_id,
        task="tasks.report",
        queue=queue,
        payload=payload,
        priority=priority,
        enqueued_at_ms=tick_ms,
        run_at_ms=tick_ms + delay_ms,
        schedule=name,
        tick_ms=tick_ms,
    )


def step(
    kind: TickStep,
    tick_ms: int,
    *,
    name: str = S,
    job: NewJob | None = None,
    run: str = "tick",
    skipped: SkippedTicks | None = None,
    reason: str = "",
) -> ScheduleStep:
    """A step; the steps that enqueue get their tick's job unless `job` is given."""
    if job is None and kind not in (TickStep.SKIP, TickStep.BUFFER):
        job = tick_job(tick_ms, name=name)
    return ScheduleStep(
        schedule=name, step=kind, tick_ms=tick_ms, job=job, kind=run, skipped=skipped, reason=reason
    )


def fire(
    tick_ms: int, *, name: str = S, job: NewJob | None = None, skipped: SkippedTicks | None = None
) -> ScheduleStep:
    return step(TickStep.FIRE, tick_ms, name=name, job=job, skipped=skipped)


def skips(
    first: int, last: int, count: int, reason: str = "missed", at_ms: int = T0
) -> SkippedTicks:
    return SkippedTicks(
        first_tick_ms=first, last_tick_ms=last, count=count, reason=reason, at_ms=at_ms
    )


async def add(backend: Backend, name: str = S, queue: str = Q, now_ms: int = T0) -> ScheduleRecord:
    created = await backend.add_schedule(name, queue, DEF, now_ms)
    assert created is not None, f"{name} exists"
    return created


async def schedule(backend: Backend, name: str = S) -> ScheduleRecord:
    found = await backend.get_schedule(name)
    assert found is not None, f"no schedule {name}"
    return found


async def advance(
    backend: Backend, *steps: ScheduleStep, fence: int | None = FENCE, now_ms: int = T0
) -> list[TickOutcome]:
    return await backend.advance_schedules(list(steps), fence, now_ms)


async def runs(backend: Backend, name: str = S) -> list[ScheduleRun]:
    return (await backend.schedule_history(name, limit=1000))[0]


async def skip_log(backend: Backend, name: str = S) -> list[SkippedTicks]:
    return (await backend.schedule_history(name, limit=1000))[1]


def run_of(tick_ms: int, kind: str = "tick", fired_at_ms: int = T0, name: str = S) -> ScheduleRun:
    return ScheduleRun(
        tick_ms=tick_ms, job_id=f"{name}@{tick_ms}", queue=Q, kind=kind, fired_at_ms=fired_at_ms
    )


# ------------------------------------------------------------------------------------------------
# Definitions: add, update, remove, read
# ------------------------------------------------------------------------------------------------


async def test_a_new_schedule_fires_only_ticks_after_its_creation(backend: Backend) -> None:
    created = await backend.add_schedule(S, Q, DEF, T0)

    assert created is not None
    assert (created.name, created.queue, created.definition) == (S, Q, DEF)
    assert (created.paused, created.paused_reason) == (False, None)
    assert (created.last_tick_ms, created.floor_ms, created.buffered_tick_ms) == (T0, 0, None)
    assert (created.created_at_ms, created.updated_at_ms) == (T0, T0)
    assert (created.fired, created.skipped, created.last_run) == (0, 0, None)
    assert created.version == await backend.schedules_version() > 0
    assert await backend.get_schedule(S) == created


async def test_adding_an_existing_name_changes_nothing(backend: Backend) -> None:
    first = await add(backend)

    assert await backend.add_schedule(S, "other", DEF2, at(5)) is None

    assert await schedule(backend) == first
    assert await backend.schedules_version() == first.version


async def test_update_replaces_the_definition_and_keeps_the_firing_state(backend: Backend) -> None:
    # Given a schedule that fired one tick
    await add(backend)
    assert await advance(backend, fire(at(1)), now_ms=at(1)) == [DONE]
    before = await schedule(backend)

    # When its definition is replaced
    updated = await backend.update_schedule(S, Q, DEF2, at(2))

    # Then the state is kept and the version raised
    assert updated is not None
    assert updated == await schedule(backend)
    assert updated.definition == DEF2
    assert updated.version > before.version
    assert updated.version == await backend.schedules_version()
    assert (updated.created_at_ms, updated.updated_at_ms) == (T0, at(2))
    assert (updated.last_tick_ms, updated.fired, updated.last_run) == (
        at(1),
        1,
        run_of(at(1), fired_at_ms=at(1)),
    )
    # the fired tick is still known: a backfill of it is refused
    assert await advance(backend, step(TickStep.BACKFILL, at(1)), fence=None) == [STALE]


async def test_update_of_a_missing_schedule_creates_it_only_when_asked(backend: Backend) -> None:
    assert await backend.update_schedule(S, Q, DEF, T0) is None
    assert await backend.get_schedule(S) is None

    created = await backend.update_schedule(S, Q, DEF, at(3), create=True)

    assert created is not None
    assert (created.definition, created.last_tick_ms, created.created_at_ms) == (DEF, at(3), at(3))
    assert (created.fired, created.paused) == (0, False)
    assert await schedule(backend) == created


async def test_update_with_create_of_an_existing_schedule_updates_it(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(1)))

    updated = await backend.update_schedule(S, Q, DEF2, at(2), create=True)

    assert updated is not None
    assert (updated.definition, updated.last_tick_ms, updated.created_at_ms) == (DEF2, at(1), T0)


async def test_reset_ticks_moves_the_watermark_up_to_now(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(1)))

    reset = await backend.update_schedule(S, Q, DEF2, at(10), reset_ticks=True)

    assert reset is not None
    assert reset.last_tick_ms == at(10)
    assert await advance(backend, fire(at(9)), now_ms=at(10)) == [STALE]
    assert await advance(backend, fire(at(11)), now_ms=at(11)) == [DONE]


async def test_reset_ticks_never_moves_the_watermark_down(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(5)), now_ms=at(5))

    reset = await backend.update_schedule(S, Q, DEF2, at(2), reset_ticks=True)

    assert reset is not None
    assert reset.last_tick_ms == at(5)


async def test_an_identical_definition_changes_nothing(backend: Backend) -> None:
    # Given a schedule that fired at(1) and is behind by now
    await add(backend)
    await advance(backend, fire(at(1)), now_ms=at(1))
    before = await schedule(backend)
    version = await backend.schedules_version()

    # When the same definition is written again, even with reset_ticks (a restart)
    again = await backend.update_schedule(S, Q, DEF, at(30), create=True, reset_ticks=True)

    # Then nothing moved, not even the version: the missed ticks are still ahead
    assert again == before == await schedule(backend)
    assert await backend.schedules_version() == version
    assert (await backend.changed_schedules(version)).changed == []
    assert await advance(backend, fire(at(2)), now_ms=at(30)) == [DONE]


async def test_a_new_queue_moves_the_schedule_with_its_state(backend: Backend) -> None:
    # Given a schedule in Q that fired at(1)
    await add(backend)
    await advance(backend, fire(at(1)))

    # When it moves to "other"
    moved = await backend.update_schedule(S, "other", DEF, at(2))

    # Then its state came along, and its ticks now fire into "other"
    assert moved is not None
    assert (moved.queue, moved.last_tick_ms, moved.fired) == ("other", at(1), 1)
    assert await runs(backend) == [run_of(at(1))]
    assert await advance(backend, fire(at(1), job=tick_job(at(1), queue="other"))) == [STALE]
    assert await advance(backend, fire(at(2), job=tick_job(at(2), queue="other"))) == [DONE]
    job = await record(backend, f"{S}@{at(2)}", "other")
    assert (job.schedule, job.tick_ms) == (S, at(2))
    # a step that still names the old queue is refused
    with pytest.raises(EnqueueError):
        await advance(backend, fire(at(3)))


async def test_remove_deletes_the_schedule_with_its_state_and_logs(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(1)), step(TickStep.SKIP, at(2), reason="overlap"))
    version = await backend.schedules_version()

    assert await backend.remove_schedule(S) is True

    assert await backend.get_schedule(S) is None
    assert await backend.list_schedules() == []
    assert await backend.schedule_history(S) == ([], [])
    assert await backend.schedules_version() > version
    assert await advance(backend, fire(at(3))) == [GONE]
    assert await backend.remove_schedule(S) is False


async def test_a_name_added_again_after_removal_starts_afresh(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(1)))
    await backend.remove_schedule(S)

    again = await add(backend, now_ms=at(5))

    assert (again.last_tick_ms, again.fired, again.last_run) == (at(5), 0, None)
    assert await backend.schedule_history(S) == ([], [])


async def test_get_of_a_missing_schedule_is_none(backend: Backend) -> None:
    assert await backend.get_schedule("missing") is None
    assert await backend.schedule_history("missing") == ([], [])


async def test_list_schedules_by_name(backend: Backend) -> None:
    for name in ("b", "c", "a"):
        await add(backend, name)
    await advance(backend, fire(at(1), name="c"))

    listed = await backend.list_schedules()

    assert [s.name for s in listed] == ["a", "b", "c"]
    assert listed == [await schedule(backend, name) for name in ("a", "b", "c")]
    assert listed[2].last_run == run_of(at(1), name="c")


# ------------------------------------------------------------------------------------------------
# Pause and resume
# ------------------------------------------------------------------------------------------------


async def test_a_paused_schedule_fires_nothing(backend: Backend) -> None:
    created = await add(backend)

    paused = await backend.set_schedule_paused(S, True, "by alice", at(1))

    assert paused is not None
    assert (paused.paused, paused.paused_reason, paused.updated_at_ms) == (True, "by alice", at(1))
    assert paused.version > created.version
    assert paused.last_tick_ms == T0
    assert await advance(backend, fire(at(2))) == [PAUSED]
    assert (await schedule(backend)).last_tick_ms == T0
    assert await backend.get_job(f"{S}@{at(2)}", Q) is None


async def test_pausing_twice_changes_nothing(backend: Backend) -> None:
    await add(backend)
    paused = await backend.set_schedule_paused(S, True, "first", at(1))

    again = await backend.set_schedule_paused(S, True, "second", at(2))

    assert again == paused == await schedule(backend)


async def test_resume_moves_the_watermark_to_now_and_records_the_skip(backend: Backend) -> None:
    # Given a schedule paused at(1)
    await add(backend)
    paused = await backend.set_schedule_paused(S, True, "by alice", at(1))
    assert paused is not None

    # When it is resumed at(10), the caller counting 9 ticks passed over
    gap = skips(at(1), at(9), 9, "paused", at_ms=at(10))
    resumed = await backend.set_schedule_paused(S, False, None, at(10), skipped=gap)

    # Then the ticks of the pause are not caught up, and the skip is logged
    assert resumed is not None
    assert (resumed.paused, resumed.paused_reason) == (False, None)
    assert (resumed.last_tick_ms, resumed.skipped, resumed.updated_at_ms) == (at(10), 9, at(10))
    assert resumed.version > paused.version
    assert await skip_log(backend) == [gap]
    assert await advance(backend, fire(at(9)), now_ms=at(10)) == [STALE]
    assert await advance(backend, fire(at(11)), now_ms=at(11)) == [DONE]


async def test_resuming_a_running_schedule_changes_nothing(backend: Backend) -> None:
    created = await add(backend)

    again = await backend.set_schedule_paused(
        S, False, None, at(10), skipped=skips(at(1), at(9), 9, "paused")
    )

    assert again == created == await schedule(backend)
    assert await skip_log(backend) == []


async def test_pause_of_a_missing_schedule_is_none(backend: Backend) -> None:
    assert await backend.set_schedule_paused("missing", True, "x", T0) is None
    assert await backend.set_schedule_paused("missing", False, None, T0) is None


# ------------------------------------------------------------------------------------------------
# Versions and changes
# ------------------------------------------------------------------------------------------------


async def test_a_new_store_is_at_version_zero(backend: Backend) -> None:
    assert await backend.schedules_version() == 0
    changes = await backend.changed_schedules(0)
    assert (changes.version, changes.changed, changes.removed) == (0, [], [])


async def test_changed_schedules_returns_what_changed_since_a_version(backend: Backend) -> None:
    # Given three schedules a reader has seen at version v
    for name in ("a", "b", "c"):
        await add(backend, name)
    seen = await backend.changed_schedules(0)
    assert sorted(s.name for s in seen.changed) == ["a", "b", "c"]
    assert seen.version == await backend.schedules_version()

    # When b is updated, c removed, d added, and a fires (which is no change)
    await backend.update_schedule("b", Q, DEF2, at(1))
    await backend.remove_schedule("c")
    await add(backend, "d")
    await advance(backend, fire(at(1), name="a"))

    # Then the reader gets just that, and the version to read from next
    changes = await backend.changed_schedules(seen.version)
    assert sorted(s.name for s in changes.changed) == ["b", "d"]
    assert changes.removed == ["c"]
    assert changes.version == await backend.schedules_version() == seen.version + 3
    by_name = {s.name: s for s in changes.changed}
    assert by_name["b"] == await schedule(backend, "b")
    assert (await backend.changed_schedules(changes.version)).changed == []


async def test_changes_since_zero_are_everything(backend: Backend) -> None:
    await add(backend, "a")
    await add(backend, "b")
    await backend.set_schedule_paused("a", True, "x", at(1))

    changes = await backend.changed_schedules(0)

    assert sorted(changes.changed, key=lambda s: s.name) == await backend.list_schedules()
    assert changes.version == await backend.schedules_version()


async def test_pause_and_resume_are_changes(backend: Backend) -> None:
    version = (await add(backend)).version

    await backend.set_schedule_paused(S, True, "x", at(1))
    paused = await backend.changed_schedules(version)
    await backend.set_schedule_paused(S, False, None, at(2))
    resumed = await backend.changed_schedules(paused.version)

    assert [s.paused for s in paused.changed] == [True]
    assert [s.paused for s in resumed.changed] == [False]


async def test_a_name_removed_and_added_again_is_changed_not_removed(backend: Backend) -> None:
    version = (await add(backend)).version

    await backend.remove_schedule(S)
    await add(backend, now_ms=at(1))

    changes = await backend.changed_schedules(version)
    assert [s.name for s in changes.changed] == [S]
    assert changes.removed == []


# ------------------------------------------------------------------------------------------------
# History
# ------------------------------------------------------------------------------------------------


async def test_history_is_newest_first_and_limited(backend: Backend) -> None:
    await add(backend)
    for n in (1, 2, 3):
        await advance(backend, fire(at(n)), now_ms=at(n))
    await advance(backend, step(TickStep.SKIP, at(4), reason="overlap"), now_ms=at(4))
    await advance(backend, step(TickStep.SKIP, at(5), reason="overlap"), now_ms=at(5))

    fired, skipped = await backend.schedule_history(S, limit=2)

    assert fired == [run_of(at(3), fired_at_ms=at(3)), run_of(at(2), fired_at_ms=at(2))]
    assert skipped == [
        skips(at(5), at(5), 1, "overlap", at(5)),
        skips(at(4), at(4), 1, "overlap", at(4)),
    ]


async def test_history_keeps_the_latest_runs_and_skips(backend: Backend) -> None:
    await add(backend)
    over = SCHEDULE_LOG_KEEP + 5
    manual = [
        step(TickStep.MANUAL, at(n), job=tick_job(at(n), job_id=f"{S}@now-{n}"), run="manual")
        for n in range(1, over + 1)
    ]
    skipping = [step(TickStep.SKIP, at(n), reason=f"skip {n}") for n in range(1, over + 1)]
    assert await advance(backend, *manual, *skipping) == [DONE] * (2 * over)

    fired, skipped = await backend.schedule_history(S, limit=10 * over)

    assert [r.job_id for r in fired] == [f"{S}@now-{n}" for n in range(over, 5, -1)]
    assert [s.reason for s in skipped] == [f"skip {n}" for n in range(over, 5, -1)]
    counted = await schedule(backend)
    assert (counted.fired, counted.skipped) == (over, over)


# ------------------------------------------------------------------------------------------------
# FIRE
# ------------------------------------------------------------------------------------------------


async def test_fire_enqueues_the_tick_and_moves_the_watermark(backend: Backend) -> None:
    created = await add(backend)

    assert await advance(backend, fire(at(1)), now_ms=at(1) + 7) == [DONE]

    job = await record(backend, f"{S}@{at(1)}")
    assert (job.status, job.task, job.queue, job.payload) == (
        JobStatus.QUEUED,
        "tasks.report",
        Q,
        b"{}",
    )
    assert (job.schedule, job.tick_ms, job.enqueued_at_ms, job.run_at_ms) == (
        S,
        at(1),
        at(1),
        at(1),
    )
    fired = await schedule(backend)
    assert (fired.last_tick_ms, fired.fired, fired.skipped) == (at(1), 1, 0)
    assert fired.last_run == run_of(at(1), fired_at_ms=at(1) + 7)
    assert await runs(backend) == [run_of(at(1), fired_at_ms=at(1) + 7)]
    # firing is not a change of the schedule
    assert (fired.version, fired.updated_at_ms) == (created.version, T0)
    assert await backend.schedules_version() == created.version


async def test_a_fired_job_is_claimed_with_its_schedule_and_tick(backend: Backend) -> None:
    await add(backend)
    await backend.enqueue_jobs([new_job("plain")])
    await advance(backend, fire(at(1), job=tick_job(at(1), priority=5)))
    await register(backend, now_ms=at(1))

    jobs = await claim(backend, "w1", at(1))

    assert [(j.id, j.schedule, j.tick_ms) for j in jobs] == [
        (f"{S}@{at(1)}", S, at(1)),
        ("plain", None, None),
    ]
    plain = await record(backend, "plain")
    assert (plain.schedule, plain.tick_ms) == (None, None)


async def test_fire_with_a_later_run_time_enqueues_a_delayed_job(backend: Backend) -> None:
    await add(backend)

    await advance(backend, fire(at(1), job=tick_job(at(1), delay_ms=5_000)))

    job = await record(backend, f"{S}@{at(1)}")
    assert (job.status, job.run_at_ms) == (JobStatus.SCHEDULED, at(1) + 5_000)
    assert await backend.promote_due_jobs(Q, at(1) + 1) == at(1) + 5_000


async def test_fire_wakes_an_idle_worker(broker: Broker) -> None:
    producer, worker = broker.open(), broker.open()
    await add(producer)
    waiting = asyncio.create_task(worker.wait_for_jobs(Q, 5.0))

    await advance(producer, fire(at(1)))

    assert await waiting is True


async def test_a_tick_fires_once(backend: Backend) -> None:
    await add(backend)

    assert await advance(backend, fire(at(1)), fire(at(1))) == [DONE, STALE]
    assert await advance(backend, fire(at(1))) == [STALE]

    assert (await schedule(backend)).fired == 1
    assert len(await runs(backend)) == 1


async def test_a_tick_at_or_before_the_watermark_is_stale(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(5)))

    assert await advance(backend, fire(at(5)), fire(at(4)), fire(T0)) == [STALE] * 3

    assert await backend.get_job(f"{S}@{at(4)}", Q) is None
    assert (await schedule(backend)).last_tick_ms == at(5)


async def test_fire_records_the_ticks_skipped_before_it(backend: Backend) -> None:
    await add(backend)
    missed = skips(at(1), at(3), 3, "missed: older than the catch-up window", at_ms=at(9))

    assert await advance(backend, fire(at(4), skipped=missed), now_ms=at(9)) == [DONE]

    assert await skip_log(backend) == [missed]
    fired = await schedule(backend)
    assert (fired.last_tick_ms, fired.fired, fired.skipped) == (at(4), 1, 3)


async def test_skipped_ticks_of_a_refused_step_are_not_recorded(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(5)))

    assert await advance(backend, fire(at(4), skipped=skips(at(1), at(3), 3))) == [STALE]

    assert await skip_log(backend) == []
    assert (await schedule(backend)).skipped == 0


async def test_steps_of_several_schedules_are_each_decided_alone(backend: Backend) -> None:
    await add(backend, "a")
    await add(backend, "b")
    await backend.set_schedule_paused("b", True, "x", T0)

    outcomes = await advance(
        backend,
        fire(at(1), name="a"),
        fire(at(1), name="b"),
        fire(at(1), name="missing"),
        fire(at(1), name="a"),
        fire(at(2), name="a"),
    )

    assert outcomes == [DONE, PAUSED, GONE, STALE, DONE]
    assert (await schedule(backend, "a")).last_tick_ms == at(2)


async def test_fire_of_an_existing_job_id_is_done_without_a_second_job(backend: Backend) -> None:
    # Given the tick's job id already taken by a job enqueued by hand
    await add(backend)
    await backend.enqueue_jobs([tick_job(at(1), payload=b"by hand")])

    # When the tick fires
    assert await advance(backend, fire(at(1), job=tick_job(at(1), payload=b"tick"))) == [DONE]

    # Then the tick is done, but the job is the one already there
    assert (await record(backend, f"{S}@{at(1)}")).payload == b"by hand"
    assert (await schedule(backend)).last_tick_ms == at(1)
    assert await runs(backend) == [run_of(at(1))]
    await register(backend)
    assert [j.id for j in await claim(backend, "w1")] == [f"{S}@{at(1)}"]


async def test_fire_on_the_broker_clock(backend: Backend) -> None:
    await add(backend)
    before = wall_ms()

    assert await backend.advance_schedules([fire(at(1))], FENCE, None) == [DONE]

    (run,) = await runs(backend)
    assert before <= run.fired_at_ms <= wall_ms()


async def test_two_schedulers_racing_for_a_tick_fire_it_once(broker: Broker) -> None:
    first, second = broker.open(), broker.open()
    await add(first)

    outcomes = await asyncio.gather(
        *(b.advance_schedules([fire(at(1))], FENCE, at(1)) for b in (first, second))
    )

    assert sorted(o for (o,) in outcomes) == sorted([DONE, STALE])
    assert len(await runs(first)) == 1
    assert (await schedule(first)).fired == 1


# ------------------------------------------------------------------------------------------------
# SKIP
# ------------------------------------------------------------------------------------------------


async def test_skip_passes_over_a_tick_and_logs_why(backend: Backend) -> None:
    await add(backend)

    outcomes = await advance(
        backend,
        step(TickStep.SKIP, at(1), reason="overlap: previous run x still running"),
        now_ms=at(2),
    )

    assert outcomes == [DONE]
    skipped = await schedule(backend)
    assert (skipped.last_tick_ms, skipped.skipped, skipped.fired) == (at(1), 1, 0)
    assert await skip_log(backend) == [
        skips(at(1), at(1), 1, "overlap: previous run x still running", at(2))
    ]
    assert await runs(backend) == []
    assert await backend.get_job(f"{S}@{at(1)}", Q) is None
    assert await advance(backend, fire(at(1))) == [STALE]


async def test_skip_at_or_before_the_watermark_is_stale(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(2)))

    outcomes = await advance(
        backend, step(TickStep.SKIP, at(2), reason="x"), step(TickStep.SKIP, at(1), reason="x")
    )

    assert outcomes == [STALE, STALE]
    assert await skip_log(backend) == []


async def test_skip_is_allowed_while_paused(backend: Backend) -> None:
    await add(backend)
    await backend.set_schedule_paused(S, True, "x", T0)

    assert await advance(backend, step(TickStep.SKIP, at(1), reason="paused")) == [DONE]

    assert (await schedule(backend)).last_tick_ms == at(1)


# ------------------------------------------------------------------------------------------------
# BUFFER and FIRE_BUFFERED
# ------------------------------------------------------------------------------------------------


async def test_buffer_holds_one_tick_back_until_it_is_fired(backend: Backend) -> None:
    # Given a tick fired at(1) whose run is still going
    await add(backend)
    await advance(backend, fire(at(1)))

    # When at(2) is buffered, and at(3) asked to be buffered too
    assert await advance(backend, step(TickStep.BUFFER, at(2))) == [DONE]
    assert await advance(backend, step(TickStep.BUFFER, at(3))) == [STALE]

    # Then only at(2) is held, with no job yet
    held = await schedule(backend)
    assert (held.last_tick_ms, held.buffered_tick_ms, held.fired) == (at(2), at(2), 1)
    assert await backend.get_job(f"{S}@{at(2)}", Q) is None

    # And when the run ends, the buffered tick fires once
    buffered = step(TickStep.FIRE_BUFFERED, at(2), run="buffered")
    assert await advance(backend, buffered, now_ms=at(4)) == [DONE]
    assert await advance(backend, buffered, now_ms=at(4)) == [STALE]
    done = await schedule(backend)
    assert (done.last_tick_ms, done.buffered_tick_ms, done.fired) == (at(2), None, 2)
    assert (await record(backend, f"{S}@{at(2)}")).tick_ms == at(2)
    assert done.last_run == run_of(at(2), "buffered", at(4))


async def test_buffer_at_or_before_the_watermark_is_stale(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(2)))

    assert await advance(backend, step(TickStep.BUFFER, at(2))) == [STALE]

    assert (await schedule(backend)).buffered_tick_ms is None


async def test_fire_buffered_of_another_tick_is_stale(backend: Backend) -> None:
    await add(backend)
    await advance(backend, step(TickStep.BUFFER, at(1)))

    outcomes = await advance(
        backend, step(TickStep.FIRE_BUFFERED, at(2)), step(TickStep.FIRE_BUFFERED, T0)
    )

    assert outcomes == [STALE, STALE]
    assert (await schedule(backend)).buffered_tick_ms == at(1)


async def test_fire_buffered_with_nothing_buffered_is_stale(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(1)))

    assert await advance(backend, step(TickStep.FIRE_BUFFERED, at(1))) == [STALE]


async def test_buffering_and_firing_the_buffered_tick_wait_while_paused(backend: Backend) -> None:
    await add(backend)
    await advance(backend, step(TickStep.BUFFER, at(1)))
    await backend.set_schedule_paused(S, True, "x", at(1))

    outcomes = await advance(
        backend, step(TickStep.FIRE_BUFFERED, at(1)), step(TickStep.BUFFER, at(2))
    )

    assert outcomes == [PAUSED, PAUSED]
    held = await schedule(backend)
    assert (held.last_tick_ms, held.buffered_tick_ms) == (at(1), at(1))


# ------------------------------------------------------------------------------------------------
# BACKFILL and MANUAL
# ------------------------------------------------------------------------------------------------


async def test_backfill_fires_a_past_tick_that_never_fired(backend: Backend) -> None:
    # Given at(1) skipped and at(2) fired
    await add(backend)
    await advance(backend, step(TickStep.SKIP, at(1), reason="x"), fire(at(2)))

    # When an operator backfills at(1)
    backfill = step(TickStep.BACKFILL, at(1), run="backfill")
    assert await advance(backend, backfill, fence=None, now_ms=at(5)) == [DONE]

    # Then its job is enqueued once, and the watermark stays
    job = await record(backend, f"{S}@{at(1)}")
    assert (job.status, job.schedule, job.tick_ms) == (JobStatus.QUEUED, S, at(1))
    state = await schedule(backend)
    assert (state.last_tick_ms, state.fired) == (at(2), 2)
    assert state.last_run == run_of(at(1), "backfill", at(5))
    assert await advance(backend, backfill, fence=None) == [STALE]


async def test_backfill_of_a_fired_tick_is_stale(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(1)), fire(at(2)))

    outcomes = await advance(
        backend, step(TickStep.BACKFILL, at(1)), step(TickStep.BACKFILL, at(2)), fence=None
    )

    assert outcomes == [STALE, STALE]
    assert (await schedule(backend)).fired == 2


async def test_backfill_after_the_watermark_or_at_the_floor_is_stale(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(2)))

    outcomes = await advance(
        backend, step(TickStep.BACKFILL, at(3)), step(TickStep.BACKFILL, 0), fence=None
    )

    assert outcomes == [STALE, STALE]


async def test_backfill_of_the_buffered_tick_is_stale(backend: Backend) -> None:
    await add(backend)
    await advance(backend, step(TickStep.BUFFER, at(1)))

    assert await advance(backend, step(TickStep.BACKFILL, at(1)), fence=None) == [STALE]

    assert await advance(backend, step(TickStep.FIRE_BUFFERED, at(1))) == [DONE]
    assert (await schedule(backend)).fired == 1


async def test_backfill_is_allowed_while_paused(backend: Backend) -> None:
    await add(backend)
    await advance(backend, step(TickStep.SKIP, at(1), reason="x"))
    await backend.set_schedule_paused(S, True, "x", at(1))

    assert await advance(backend, step(TickStep.BACKFILL, at(1)), fence=None) == [DONE]


async def test_manual_runs_now_and_leaves_the_ticks_alone(backend: Backend) -> None:
    # Given a paused schedule
    await add(backend)
    await backend.set_schedule_paused(S, True, "x", T0)

    # When an operator runs it now, at(3)
    job = tick_job(at(3), job_id=f"{S}@now-{at(3)}-1")
    manual = step(TickStep.MANUAL, at(3), job=job, run="manual")
    assert await advance(backend, manual, fence=None, now_ms=at(3)) == [DONE]

    # Then its job is enqueued, and neither the watermark nor the fired ticks moved
    assert (await record(backend, job.id)).schedule == S
    state = await schedule(backend)
    assert (state.last_tick_ms, state.fired, state.paused) == (T0, 1, True)
    assert await runs(backend) == [
        ScheduleRun(tick_ms=at(3), job_id=job.id, queue=Q, kind="manual", fired_at_ms=at(3))
    ]
    await backend.set_schedule_paused(S, False, None, T0)
    assert await advance(backend, fire(at(3))) == [DONE]


async def test_a_manual_run_is_not_a_fire_of_its_tick(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(5)))
    manual = step(TickStep.MANUAL, at(3), job=tick_job(at(3), job_id="m"), run="manual")

    assert await advance(backend, manual, fence=None) == [DONE]

    assert await advance(backend, step(TickStep.BACKFILL, at(3)), fence=None) == [DONE]


async def test_manual_of_a_missing_schedule_is_gone(backend: Backend) -> None:
    manual = step(TickStep.MANUAL, at(1), name="missing", run="manual")

    assert await advance(backend, manual, fence=None) == [GONE]

    assert await backend.get_job(f"missing@{at(1)}", Q) is None


# ------------------------------------------------------------------------------------------------
# Fired ticks are bounded
# ------------------------------------------------------------------------------------------------


async def test_the_oldest_fired_ticks_fall_below_the_floor(backend: Backend) -> None:
    # Given one more fire than the fired ticks keep, every other minute
    await add(backend)
    ticks = [at(2 * n) for n in range(1, SCHEDULE_FIRED_KEEP + 2)]
    assert await advance(backend, *(fire(t) for t in ticks)) == [DONE] * len(ticks)

    # Then the lowest tick was dropped, and is the floor
    state = await schedule(backend)
    assert (state.floor_ms, state.last_tick_ms, state.fired) == (ticks[0], ticks[-1], len(ticks))

    # A backfill at or below the floor is refused, a tick above it not fired is not
    outcomes = await advance(
        backend,
        step(TickStep.BACKFILL, ticks[0]),
        step(TickStep.BACKFILL, at(1)),
        step(TickStep.BACKFILL, at(3)),
        step(TickStep.BACKFILL, ticks[1]),
        fence=None,
    )
    assert outcomes == [STALE, STALE, DONE, STALE]


# ------------------------------------------------------------------------------------------------
# Fencing
# ------------------------------------------------------------------------------------------------


async def test_a_deposed_scheduler_is_fenced_after_its_successor_wrote(backend: Backend) -> None:
    # Given the scheduler of fence 5 fired at(1)
    await add(backend)
    assert await advance(backend, fire(at(1)), fence=5) == [DONE]

    # When the deposed one (fence 4) tries the next ticks, every kind of step is refused
    outcomes = await advance(
        backend,
        fire(at(2)),
        step(TickStep.SKIP, at(3), reason="x"),
        step(TickStep.BUFFER, at(4)),
        step(TickStep.BACKFILL, T0 + 1),
        fence=4,
    )

    # Then nothing of it was written; the leader (or a newer one) goes on
    assert outcomes == [FENCED] * 4
    state = await schedule(backend)
    assert (state.last_tick_ms, state.buffered_tick_ms, state.fired) == (at(1), None, 1)
    assert await backend.get_job(f"{S}@{at(2)}", Q) is None
    assert await advance(backend, fire(at(2)), fence=5) == [DONE]
    assert await advance(backend, fire(at(3)), fence=6) == [DONE]
    assert await advance(backend, fire(at(4)), fence=5) == [FENCED]


async def test_only_a_step_that_wrote_raises_the_fence(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(2)), fence=3)

    assert await advance(backend, fire(at(1)), fence=9) == [STALE]
    assert await advance(backend, fire(at(3)), fence=4) == [DONE]


async def test_operators_steps_without_a_fence_are_not_fenced(backend: Backend) -> None:
    await add(backend)
    await advance(backend, step(TickStep.SKIP, at(1), reason="x"), fire(at(2)), fence=7)

    outcomes = await advance(
        backend,
        step(TickStep.BACKFILL, at(1)),
        step(TickStep.MANUAL, at(3), job=tick_job(at(3), job_id="m"), run="manual"),
        fence=None,
    )

    assert outcomes == [DONE, DONE]
    assert await advance(backend, fire(at(3)), fence=7) == [DONE]


async def test_gone_comes_before_fenced_and_fenced_before_paused(backend: Backend) -> None:
    await add(backend)
    await advance(backend, fire(at(1)), fence=5)
    await backend.set_schedule_paused(S, True, "x", at(1))

    outcomes = await advance(backend, fire(at(2)), fire(at(2), name="missing"), fence=4)

    assert outcomes == [FENCED, GONE]
    assert await advance(backend, fire(at(1)), fence=5) == [PAUSED]


async def test_a_scheduler_step_without_a_fence_is_a_bug(backend: Backend) -> None:
    await add(backend)

    for kind in (TickStep.FIRE, TickStep.SKIP, TickStep.BUFFER, TickStep.FIRE_BUFFERED):
        with pytest.raises(ValueError, match="fence"):
            await advance(backend, step(TickStep.BACKFILL, T0 - 1), step(kind, at(1)), fence=None)

    assert await backend.get_job(f"{S}@{T0 - 1}", Q) is None
    assert await runs(backend) == []


async def test_malformed_steps_are_a_bug(backend: Backend) -> None:
    await add(backend)
    no_job = ScheduleStep(schedule=S, step=TickStep.FIRE, tick_ms=at(1))
    skip_with_job = ScheduleStep(schedule=S, step=TickStep.SKIP, tick_ms=at(1), job=tick_job(at(1)))
    late_skips = fire(at(2), skipped=skips(at(1), at(2), 2))

    for bad in (no_job, skip_with_job, late_skips):
        with pytest.raises(ValueError, match="step"):
            await advance(backend, fire(at(1)), bad)

    assert (await schedule(backend)).last_tick_ms == T0
    assert await backend.get_job(f"{S}@{at(1)}", Q) is None


# ------------------------------------------------------------------------------------------------
# Jobs the broker refuses
# ------------------------------------------------------------------------------------------------


async def test_a_job_in_another_queue_is_refused_with_nothing_written(backend: Backend) -> None:
    await add(backend)

    with pytest.raises(EnqueueError):
        await advance(backend, fire(at(1)), fire(at(2), job=tick_job(at(2), queue="other")))

    assert (await schedule(backend)).last_tick_ms == T0
    assert await backend.get_job(f"{S}@{at(1)}", Q) is None
    assert await backend.get_job(f"{S}@{at(2)}", "other") is None
    assert await runs(backend) == []


@pytest.mark.parametrize(
    "job",
    [
        tick_job(at(2), job_id=""),
        tick_job(at(2), job_id="x" * 201),
        tick_job(at(2), priority=1000),
    ],
    ids=["empty id", "long id", "priority"],
)
async def test_a_job_enqueue_would_refuse_is_refused_with_nothing_written(
    backend: Backend, job: NewJob
) -> None:
    await add(backend)

    with pytest.raises(EnqueueError):
        await advance(backend, fire(at(1)), fire(at(2), job=job))

    assert (await schedule(backend)).last_tick_ms == T0
    assert await backend.get_job(f"{S}@{at(1)}", Q) is None


# ------------------------------------------------------------------------------------------------
# The scheduler lease
# ------------------------------------------------------------------------------------------------


async def test_a_free_lease_is_taken_with_a_fence(backend: Backend) -> None:
    lease = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)

    assert lease is not None
    assert (lease.holder, lease.deadline_ms) == ("s1", T0 + LEASE_MS)
    assert lease.fence >= 1


async def test_the_holder_renews_under_the_same_fence(backend: Backend) -> None:
    first = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)

    renewed = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0 + 1_000)

    assert first is not None
    assert renewed is not None
    assert (renewed.holder, renewed.fence, renewed.deadline_ms) == (
        "s1",
        first.fence,
        T0 + 1_000 + LEASE_MS,
    )


async def test_another_holder_waits_while_the_lease_holds(backend: Backend) -> None:
    await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)

    assert await backend.acquire_scheduler_lease("s2", LEASE_MS, T0 + LEASE_MS) is None


async def test_a_passed_lease_goes_to_the_next_holder_with_a_higher_fence(backend: Backend) -> None:
    first = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)
    assert first is not None

    taken = await backend.acquire_scheduler_lease("s2", LEASE_MS, T0 + LEASE_MS + 1)

    assert taken is not None
    assert (taken.holder, taken.deadline_ms) == ("s2", T0 + 2 * LEASE_MS + 1)
    assert taken.fence > first.fence
    assert await backend.acquire_scheduler_lease("s1", LEASE_MS, T0 + LEASE_MS + 2) is None


async def test_the_same_holder_after_its_lease_passed_gets_a_new_fence(backend: Backend) -> None:
    first = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)

    again = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0 + LEASE_MS + 1)

    assert first is not None
    assert again is not None
    assert again.fence > first.fence


async def test_release_frees_the_lease_only_for_its_holder(backend: Backend) -> None:
    first = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)
    assert first is not None

    assert await backend.release_scheduler_lease("s2") is False
    assert await backend.acquire_scheduler_lease("s2", LEASE_MS, T0 + 1) is None
    assert await backend.release_scheduler_lease("s1") is True
    assert await backend.release_scheduler_lease("s1") is False

    taken = await backend.acquire_scheduler_lease("s2", LEASE_MS, T0 + 2)
    assert taken is not None
    assert taken.fence > first.fence


async def test_scheduler_lease_tells_who_leads_by_the_broker_clock(backend: Backend) -> None:
    assert await backend.scheduler_lease() is None

    lease = await backend.acquire_scheduler_lease("s1", LEASE_MS, wall_ms())
    assert lease is not None
    assert await backend.scheduler_lease() == lease

    # a lease taken on a clock a minute behind the broker's has passed already
    await backend.release_scheduler_lease("s1")
    assert await backend.acquire_scheduler_lease("s2", LEASE_MS, wall_ms() - 60_000) is not None
    assert await backend.scheduler_lease() is None


async def test_the_lease_fence_fences_the_steps(backend: Backend) -> None:
    # Given s1 leading and firing, then stalling past its lease while s2 takes over
    await add(backend)
    old = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)
    assert old is not None
    assert await advance(backend, fire(at(1)), fence=old.fence) == [DONE]
    new = await backend.acquire_scheduler_lease("s2", LEASE_MS, T0 + LEASE_MS + 1)
    assert new is not None
    assert await advance(backend, fire(at(2)), fence=new.fence) == [DONE]

    # When s1 wakes up and fires the next tick, it is fenced
    assert await advance(backend, fire(at(3)), fence=old.fence) == [FENCED]
