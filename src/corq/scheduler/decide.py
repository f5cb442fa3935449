"""What one schedule does at one moment: the steps of its due ticks, from plain data.

Pure: a definition, the broker's record of it, the time and what the scheduler knows of
the previous run's job go in; steps for ``advance_schedules`` come out (with, for
``cancel_other``, the job to cancel first and, for ``pause_on_failure``, a pause instead).
The rules, in order (docs/design.md, "The scheduler"):

1. paused: nothing;
2. the latest run ended dead and the schedule pauses on failure: pause;
3. a buffered tick fires once the previous run has ended;
4. ticks in (watermark, now - catch-up window] are skipped as one run; with catch-up
   ``none`` every tick before now - grace too, with ``latest`` all but the last;
5. each remaining tick meets the overlap policy when the previous run has not ended;
6. a fired tick's job runs at its tick plus the schedule's jitter for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from corq.backends.base import NewJob, ScheduleRecord, ScheduleStep, SkippedTicks, TickStep
from corq.job import TERMINAL_STATES, JobStatus
from corq.schedule import (
    CatchUp,
    Overlap,
    Rule,
    RunKind,
    ScheduleDef,
    format_duration_ms,
    tick_datetime,
    tick_job_id,
)
from corq.types import JobId, QueueName

#: With catch-up ``none``, a tick this late still counts as on time.
GRACE_MS = 1000
#: Most ticks one decision fires or skips one by one; more are decided in the next round.
MAX_TICKS = 100
#: Ticks of a skipped run are counted up to this (a long outage of a fast schedule).
COUNT_BOUND = 1_000_000


class SkipReason(StrEnum):
    """Why ticks passed without a job (the scheduler counts them by these)."""

    #: Older than the catch-up window when a scheduler saw them.
    MISSED = "missed"
    #: Late, and the schedule's catch-up is ``none``.
    CATCHUP_NONE = "catchup_none"
    #: Late and not the latest, and the schedule's catch-up is ``latest``.
    CATCHUP_LATEST = "catchup_latest"
    #: The previous run was still going (overlap ``skip``, or ``buffer_one`` with a tick
    #: buffered already).
    OVERLAP = "overlap"
    #: A later tick due at the same time replaced it (overlap ``cancel_other``).
    SUPERSEDED = "superseded"
    #: The schedule's task is not registered in the scheduler's app.
    TASK_NOT_REGISTERED = "task_not_registered"
    #: A code schedule the scheduler's app does not declare (any more).
    NOT_IN_CODE = "not_in_code"


@dataclass(frozen=True, kw_only=True, slots=True)
class PreviousRun:
    """The schedule's latest regular run (a tick or a buffered tick), as last seen."""

    job_id: JobId
    queue: QueueName
    fired_at_ms: int
    #: The job's state when last read (None: not read yet).
    status: JobStatus | None = None
    #: True when its record is gone (expired after the result TTL): it has ended.
    gone: bool = False

    @property
    def ended(self) -> bool:
        return self.gone or self.status in TERMINAL_STATES


@dataclass(frozen=True, kw_only=True, slots=True)
class Planned:
    """One step, with what it counts for once the broker has done it."""

    step: ScheduleStep
    #: The step enqueues a job.
    fires: bool = False
    #: Ticks it skips, by reason.
    skips: tuple[tuple[SkipReason, int], ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """What to do for one schedule now."""

    planned: tuple[Planned, ...] = ()
    #: Cancel this run's job before the steps are sent (``cancel_other``).
    cancel: PreviousRun | None = None
    #: Pause the schedule with this reason instead (``pause_on_failure``).
    pause: str | None = None
    #: More ticks are due than one decision takes: decide again at once.
    more: bool = False

    @property
    def steps(self) -> list[ScheduleStep]:
        return [p.step for p in self.planned]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Skip:
    first_ms: int
    last_ms: int
    count: int
    reason: str
    why: SkipReason


def needs_previous(definition: ScheduleDef, record: ScheduleRecord) -> bool:
    """True when deciding needs the previous run's job state (worth a read)."""
    policy = definition.policy
    return (
        policy.overlap is not Overlap.ALLOW_ALL
        or policy.pause_on_failure
        or record.buffered_tick_ms is not None
    )


def decide(
    definition: ScheduleDef,
    record: ScheduleRecord,
    now_ms: int,
    previous: PreviousRun | None,
    *,
    blocked: tuple[SkipReason, str] | None = None,
    limit: int = MAX_TICKS,
) -> Decision:
    """The steps of `definition` at `now_ms`; `blocked` skips every due tick with that
    reason (a task that is not registered, a code schedule not declared)."""
    if record.paused:
        return Decision()
    rule = definition.rule
    if blocked is not None:
        skip = _run(rule, record.last_tick_ms, now_ms, blocked[1], blocked[0])
        plan = _Plan(definition, now_ms, previous, record.buffered_tick_ms)
        if skip is not None:
            plan.skip_run(skip)
        return plan.decision()
    if definition.policy.pause_on_failure and _ended_dead(previous, record):
        assert previous is not None
        return Decision(pause=f"paused on failure: job {previous.job_id} ended dead")
    plan = _Plan(definition, now_ms, previous, record.buffered_tick_ms)
    if record.buffered_tick_ms is not None and _ended(previous):
        plan.fire_buffered(record.buffered_tick_ms)
    skips, kept, more = due_ticks(definition, record.last_tick_ms, now_ms, limit)
    plan.skip_runs(skips)
    for index, tick in enumerate(kept):
        plan.tick(tick, last=index == len(kept) - 1)
    return plan.decision(more=more)


def due_ticks(
    definition: ScheduleDef, watermark_ms: int, now_ms: int, limit: int
) -> tuple[list[_Skip], list[int], bool]:
    """The runs of ticks to skip for the catch-up policy, the ticks to fire (at most
    `limit`, oldest first), and whether more are due."""
    rule, policy = definition.rule, definition.policy
    skips: list[_Skip] = []
    start = watermark_ms
    window = policy.catchup_window_ms
    missed = _run(
        rule,
        start,
        now_ms - window,
        f"missed: older than the catch-up window ({format_duration_ms(window)})",
        SkipReason.MISSED,
    )
    if missed is not None:
        skips.append(missed)
        start = missed.last_ms
    late: _Skip | None = None
    if policy.catchup is CatchUp.NONE:
        late = _run(
            rule, start, now_ms - GRACE_MS - 1, "missed: catch-up is none", SkipReason.CATCHUP_NONE
        )
    elif policy.catchup is CatchUp.LATEST:
        latest = rule.last_at_or_before(now_ms)
        if latest is not None and latest > start:
            late = _run(
                rule,
                start,
                latest - 1,
                "missed: catch-up is latest (only the latest missed tick fires)",
                SkipReason.CATCHUP_LATEST,
            )
    if late is not None:
        skips.append(late)
        start = late.last_ms
    kept = rule.ticks_between(start, now_ms, limit + 1)
    return skips, kept[:limit], len(kept) > limit


def _run(rule: Rule, after_ms: int, until_ms: int, reason: str, why: SkipReason) -> _Skip | None:
    """The ticks in (after_ms, until_ms] as one skipped run, or None when there are none."""
    first = rule.next_after(after_ms)
    if first is None or first > until_ms:
        return None
    last = rule.last_at_or_before(until_ms)
    if last is None or last < first:  # stepping back may see a DST change differently
        last = first
    count = rule.count_between(after_ms, until_ms, COUNT_BOUND)
    return _Skip(first_ms=first, last_ms=last, count=max(count, 1), reason=reason, why=why)


def _ended(previous: PreviousRun | None) -> bool:
    return previous is None or previous.ended


def _ended_dead(previous: PreviousRun | None, record: ScheduleRecord) -> bool:
    """The latest run ended dead since the schedule last changed (a resume or an update
    is the operator's answer to that failure: it does not pause again for it)."""
    return (
        previous is not None
        and previous.status is JobStatus.DEAD
        and previous.fired_at_ms >= record.updated_at_ms
    )


@dataclass
class _Plan:
    """Steps being put together for one schedule, in tick order."""

    definition: ScheduleDef
    now_ms: int
    previous: PreviousRun | None
    buffered_ms: int | None
    planned: list[Planned] = field(default_factory=list)
    cancel: PreviousRun | None = None
    #: A skipped run waiting to be recorded with the next fire (one step for both).
    pending: _Skip | None = None

    def decision(self, *, more: bool = False) -> Decision:
        self._flush()
        return Decision(planned=tuple(self.planned), cancel=self.cancel, more=more)

    def skip_runs(self, skips: list[_Skip]) -> None:
        for skip in skips:
            self._flush()
            self.pending = skip

    def skip_run(self, skip: _Skip) -> None:
        self.skip_runs([skip])

    def fire_buffered(self, tick_ms: int) -> None:
        self._fire(tick_ms, TickStep.FIRE_BUFFERED, RunKind.BUFFERED)
        self.buffered_ms = None

    def tick(self, tick_ms: int, *, last: bool) -> None:
        """One due tick, through the overlap policy."""
        previous = self.previous
        if _ended(previous):
            self._fire(tick_ms, TickStep.FIRE, RunKind.TICK)
            return
        assert previous is not None
        overlap = self.definition.policy.overlap
        if overlap is Overlap.ALLOW_ALL:
            self._fire(tick_ms, TickStep.FIRE, RunKind.TICK)
        elif overlap is Overlap.CANCEL_OTHER:
            if not last:
                self._skip(
                    tick_ms,
                    "overlap: superseded by a later tick (cancel_other)",
                    SkipReason.SUPERSEDED,
                )
                return
            if self.previous_is_older():
                self.cancel = previous
            self._fire(tick_ms, TickStep.FIRE, RunKind.TICK)
        elif overlap is Overlap.BUFFER_ONE and self.buffered_ms is None:
            self._step(
                ScheduleStep(schedule=self.definition.name, step=TickStep.BUFFER, tick_ms=tick_ms)
            )
            self.buffered_ms = tick_ms
        elif overlap is Overlap.BUFFER_ONE:
            assert self.buffered_ms is not None
            buffered = tick_datetime(self.buffered_ms, self.definition.rule.tz).isoformat()
            self._skip(
                tick_ms,
                f"overlap: previous run {previous.job_id} still running and tick {buffered} "
                "is buffered already",
                SkipReason.OVERLAP,
            )
        else:
            self._skip(
                tick_ms,
                f"overlap: previous run {previous.job_id} still running",
                SkipReason.OVERLAP,
            )

    def previous_is_older(self) -> bool:
        """True when the previous run was not fired by this plan."""
        return not any(p.fires for p in self.planned)

    def _fire(self, tick_ms: int, step: TickStep, kind: RunKind) -> None:
        d = self.definition
        job = NewJob(
            id=tick_job_id(d.name, tick_ms),
            task=d.task,
            queue=d.queue,
            payload=d.payload,
            priority=d.priority,
            enqueued_at_ms=self.now_ms,
            run_at_ms=tick_ms + d.policy.jitter_for(d.name, tick_ms),
            schedule=d.name,
            tick_ms=tick_ms,
        )
        pending, self.pending = self.pending, None
        skipped = None if pending is None else _skipped(pending, self.now_ms)
        self.planned.append(
            Planned(
                step=ScheduleStep(
                    schedule=d.name,
                    step=step,
                    tick_ms=tick_ms,
                    job=job,
                    kind=kind.value,
                    skipped=skipped,
                ),
                fires=True,
                skips=() if pending is None else ((pending.why, pending.count),),
            )
        )
        self.previous = PreviousRun(
            job_id=job.id, queue=job.queue, fired_at_ms=self.now_ms, status=JobStatus.QUEUED
        )

    def _skip(self, tick_ms: int, reason: str, why: SkipReason) -> None:
        self._flush()
        self.pending = _Skip(first_ms=tick_ms, last_ms=tick_ms, count=1, reason=reason, why=why)
        self._flush()

    def _step(self, step: ScheduleStep) -> None:
        self._flush()
        self.planned.append(Planned(step=step))

    def _flush(self) -> None:
        """Record a pending skipped run on its own (no fire follows it)."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        self.planned.append(
            Planned(
                step=skip_step(self.definition, pending, self.now_ms),
                skips=((pending.why, pending.count),),
            )
        )


def skip_step(definition: ScheduleDef, skip: _Skip, now_ms: int) -> ScheduleStep:
    """One SKIP step for a run of ticks: the last tick with the reason, the ticks before
    it (if any) recorded in the same step."""
    before = None
    if skip.count > 1:
        previous = definition.rule.last_at_or_before(skip.last_ms - 1)
        if previous is not None and previous >= skip.first_ms:
            before = SkippedTicks(
                first_tick_ms=skip.first_ms,
                last_tick_ms=previous,
                count=skip.count - 1,
                reason=skip.reason,
                at_ms=now_ms,
            )
    return ScheduleStep(
        schedule=definition.name,
        step=TickStep.SKIP,
        tick_ms=skip.last_ms,
        reason=skip.reason,
        skipped=before,
    )


def _skipped(skip: _Skip, now_ms: int) -> SkippedTicks:
    return SkippedTicks(
        first_tick_ms=skip.first_ms,
        last_tick_ms=skip.last_ms,
        count=skip.count,
        reason=skip.reason,
        at_ms=now_ms,
    )
