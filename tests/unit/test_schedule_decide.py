"""The scheduler's decisions (corq.scheduler.decide) from plain data: catch-up, overlap,
jitter, pause-on-failure, a blocked schedule, the bound per decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from corq.backends.base import ScheduleRecord, ScheduleStep, SkippedTicks, TickStep
from corq.job import JobStatus
from corq.schedule import ScheduleDef, make_policy, make_rule
from corq.scheduler.decide import Decision, PreviousRun, SkipReason, decide

T0 = 1_700_000_040_000  # a multiple of a minute
MIN = 60_000


def definition(**policy: object) -> ScheduleDef:
    return ScheduleDef(
        name="report",
        task="build",
        queue="reports",
        payload=b'{"args":[],"kwargs":{}}',
        priority=2,
        rule=make_rule(every=60),
        policy=make_policy(**policy),  # type: ignore[arg-type]  # test keywords
    )


def record(watermark: int = T0, **changes: object) -> ScheduleRecord:
    base = ScheduleRecord(
        name="report",
        queue="reports",
        definition=b"",
        version=1,
        paused=False,
        paused_reason=None,
        last_tick_ms=watermark,
        floor_ms=0,
        buffered_tick_ms=None,
        created_at_ms=T0 - 10 * MIN,
        updated_at_ms=T0 - 10 * MIN,
        fired=0,
        skipped=0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]  # test keywords


def running(job_id: str = "report@1", status: JobStatus = JobStatus.RUNNING) -> PreviousRun:
    return PreviousRun(job_id=job_id, queue="reports", fired_at_ms=T0 - MIN, status=status)


def kinds(decision: Decision) -> list[tuple[TickStep, int]]:
    return [(s.step, s.tick_ms) for s in decision.steps]


def test_an_on_time_tick_fires_its_job_with_a_deterministic_id() -> None:
    decision = decide(definition(), record(), T0 + MIN + 3, None)
    (step,) = decision.steps
    assert (step.step, step.tick_ms, step.kind) == (TickStep.FIRE, T0 + MIN, "tick")
    job = step.job
    assert job is not None
    assert (job.id, job.task, job.queue, job.priority) == (
        f"report@{T0 + MIN}",
        "build",
        "reports",
        2,
    )
    assert (job.schedule, job.tick_ms, job.run_at_ms) == ("report", T0 + MIN, T0 + MIN)
    assert decision.planned[0].fires


def test_nothing_is_due_before_the_next_tick_and_nothing_while_paused() -> None:
    assert decide(definition(), record(), T0 + MIN - 1, None).steps == []
    assert decide(definition(), record(paused=True), T0 + 5 * MIN, None).steps == []


def test_catch_up_all_fires_every_missed_tick_in_the_window_in_order() -> None:
    decision = decide(definition(), record(), T0 + 3 * MIN, None)
    assert kinds(decision) == [(TickStep.FIRE, T0 + k * MIN) for k in (1, 2, 3)]


def test_ticks_older_than_the_window_are_skipped_as_one_run_with_the_first_fire() -> None:
    # Given a scheduler that was away for an hour, and a 5 minute window
    decision = decide(definition(), record(), T0 + 60 * MIN, None)
    # Then the 55 ticks older than the window are recorded with the first fire
    assert kinds(decision) == [(TickStep.FIRE, T0 + k * MIN) for k in range(56, 61)]
    first = decision.steps[0]
    assert first.skipped == SkippedTicks(
        first_tick_ms=T0 + MIN,
        last_tick_ms=T0 + 55 * MIN,
        count=55,
        reason="missed: older than the catch-up window (5m)",
        at_ms=T0 + 60 * MIN,
    )
    assert decision.planned[0].skips == ((SkipReason.MISSED, 55),)


def test_catch_up_latest_fires_only_the_latest_missed_tick() -> None:
    decision = decide(definition(catchup="latest"), record(), T0 + 3 * MIN + 10, None)
    (step,) = decision.steps
    assert (step.step, step.tick_ms) == (TickStep.FIRE, T0 + 3 * MIN)
    assert step.skipped is not None
    assert (step.skipped.first_tick_ms, step.skipped.last_tick_ms, step.skipped.count) == (
        T0 + MIN,
        T0 + 2 * MIN,
        2,
    )
    assert decision.planned[0].skips == ((SkipReason.CATCHUP_LATEST, 2),)


def test_catch_up_none_fires_a_tick_within_the_grace_and_skips_the_late_ones() -> None:
    decision = decide(definition(catchup="none"), record(), T0 + 3 * MIN + 500, None)
    assert kinds(decision) == [(TickStep.FIRE, T0 + 3 * MIN)]
    assert decision.steps[0].skipped is not None
    assert decision.steps[0].skipped.count == 2


def test_catch_up_none_with_every_tick_late_skips_them_all_in_one_step() -> None:
    decision = decide(definition(catchup="none"), record(), T0 + 3 * MIN + 5000, None)
    (step,) = decision.steps
    assert (step.step, step.tick_ms, step.reason) == (
        TickStep.SKIP,
        T0 + 3 * MIN,
        "missed: catch-up is none",
    )
    assert step.skipped is not None
    assert (step.skipped.first_tick_ms, step.skipped.last_tick_ms, step.skipped.count) == (
        T0 + MIN,
        T0 + 2 * MIN,
        2,
    )
    assert decision.planned[0].skips == ((SkipReason.CATCHUP_NONE, 3),)


def test_overlap_skip_skips_while_the_previous_run_runs_and_fires_once_it_ended() -> None:
    busy = decide(definition(overlap="skip"), record(), T0 + MIN, running())
    assert kinds(busy) == [(TickStep.SKIP, T0 + MIN)]
    assert busy.steps[0].reason == "overlap: previous run report@1 still running"
    ended = decide(
        definition(overlap="skip"), record(), T0 + MIN, running(status=JobStatus.SUCCEEDED)
    )
    assert kinds(ended) == [(TickStep.FIRE, T0 + MIN)]
    gone = PreviousRun(job_id="x", queue="reports", fired_at_ms=0, gone=True)
    assert kinds(decide(definition(overlap="skip"), record(), T0 + MIN, gone)) == [
        (TickStep.FIRE, T0 + MIN)
    ]


def test_overlap_skip_during_catch_up_fires_the_first_and_skips_the_rest() -> None:
    decision = decide(definition(overlap="skip"), record(), T0 + 3 * MIN, None)
    assert kinds(decision) == [
        (TickStep.FIRE, T0 + MIN),
        (TickStep.SKIP, T0 + 2 * MIN),
        (TickStep.SKIP, T0 + 3 * MIN),
    ]
    assert decision.steps[1].reason == f"overlap: previous run report@{T0 + MIN} still running"


def test_buffer_one_holds_one_tick_and_skips_the_others() -> None:
    first = decide(definition(overlap="buffer_one"), record(), T0 + MIN, running())
    assert kinds(first) == [(TickStep.BUFFER, T0 + MIN)]
    second = decide(
        definition(overlap="buffer_one"),
        record(T0 + MIN, buffered_tick_ms=T0 + MIN),
        T0 + 2 * MIN,
        running(),
    )
    assert kinds(second) == [(TickStep.SKIP, T0 + 2 * MIN)]
    assert "is buffered already" in second.steps[0].reason


def test_a_buffered_tick_fires_once_the_previous_run_ended() -> None:
    # Given a buffered tick and a previous run that just ended
    rec = record(T0 + MIN, buffered_tick_ms=T0 + MIN)
    ended = running(status=JobStatus.SUCCEEDED)
    # When nothing else is due, the buffered tick fires
    now = decide(definition(overlap="buffer_one"), rec, T0 + MIN + 30_000, ended)
    assert kinds(now) == [(TickStep.FIRE_BUFFERED, T0 + MIN)]
    assert now.steps[0].kind == "buffered"
    assert now.steps[0].job is not None
    assert now.steps[0].job.id == f"report@{T0 + MIN}"
    # and when a tick is due too, it is buffered behind the run just fired.
    both = decide(definition(overlap="buffer_one"), rec, T0 + 2 * MIN, ended)
    assert kinds(both) == [(TickStep.FIRE_BUFFERED, T0 + MIN), (TickStep.BUFFER, T0 + 2 * MIN)]
    # While the previous run still runs, the buffered tick waits.
    assert decide(definition(overlap="buffer_one"), rec, T0 + MIN + 30_000, running()).steps == []


def test_cancel_other_cancels_the_previous_run_then_fires() -> None:
    previous = running()
    decision = decide(definition(overlap="cancel_other"), record(), T0 + MIN, previous)
    assert decision.cancel == previous
    assert kinds(decision) == [(TickStep.FIRE, T0 + MIN)]
    several = decide(definition(overlap="cancel_other"), record(), T0 + 2 * MIN, previous)
    assert kinds(several) == [(TickStep.SKIP, T0 + MIN), (TickStep.FIRE, T0 + 2 * MIN)]
    assert several.planned[0].skips == ((SkipReason.SUPERSEDED, 1),)


def test_allow_all_fires_over_a_running_previous_run() -> None:
    decision = decide(definition(), record(), T0 + MIN, running())
    assert kinds(decision) == [(TickStep.FIRE, T0 + MIN)]
    assert decision.cancel is None


def test_pause_on_failure_pauses_after_a_dead_run_until_resumed() -> None:
    dead = running("report@9", JobStatus.DEAD)
    decision = decide(definition(pause_on_failure=True), record(), T0 + MIN, dead)
    assert decision.pause == "paused on failure: job report@9 ended dead"
    assert decision.steps == []
    # A resume after that run (updated_at) is the answer to it: ticks fire again.
    resumed = record(updated_at_ms=T0)
    assert kinds(decide(definition(pause_on_failure=True), resumed, T0 + MIN, dead)) == [
        (TickStep.FIRE, T0 + MIN)
    ]
    # Without the policy a dead run changes nothing.
    assert kinds(decide(definition(), record(), T0 + MIN, dead)) == [(TickStep.FIRE, T0 + MIN)]


def test_jitter_delays_the_job_by_the_ticks_own_hashed_delay() -> None:
    d = definition(jitter=30)
    (step,) = decide(d, record(), T0 + MIN, None).steps
    assert step.job is not None
    assert step.job.run_at_ms == T0 + MIN + d.policy.jitter_for("report", T0 + MIN)
    assert T0 + MIN <= step.job.run_at_ms <= T0 + MIN + 30_000


def test_a_blocked_schedule_skips_every_due_tick_with_its_reason() -> None:
    why = (SkipReason.TASK_NOT_REGISTERED, "task not registered: 'build'")
    decision = decide(definition(), record(), T0 + 3 * MIN, None, blocked=why)
    assert decision.steps == [
        ScheduleStep(
            schedule="report",
            step=TickStep.SKIP,
            tick_ms=T0 + 3 * MIN,
            reason="task not registered: 'build'",
            skipped=SkippedTicks(
                first_tick_ms=T0 + MIN,
                last_tick_ms=T0 + 2 * MIN,
                count=2,
                reason="task not registered: 'build'",
                at_ms=T0 + 3 * MIN,
            ),
        )
    ]
    assert decision.planned[0].skips == ((SkipReason.TASK_NOT_REGISTERED, 3),)


def test_one_decision_takes_a_bounded_number_of_ticks() -> None:
    d = definition(catchup_window=3600)
    decision = decide(d, record(), T0 + 60 * MIN, None, limit=10)
    assert len(decision.steps) == 10
    assert decision.more
    assert decision.steps[-1].tick_ms == T0 + 10 * MIN


def test_a_one_shot_fires_once() -> None:
    one_shot = replace(
        definition(), rule=make_rule(at=datetime.fromtimestamp((T0 + MIN) / 1000, UTC))
    )
    assert kinds(decide(one_shot, record(), T0 + MIN, None)) == [(TickStep.FIRE, T0 + MIN)]
    assert decide(one_shot, record(T0 + MIN), T0 + 10 * MIN, None).steps == []
