"""advance_schedules on SQLite: each step checked and applied against the schedule's row.

Steps run in transactions of at most BATCH steps. Within one, each step reads its
schedule's row as the steps before it left it, decides (GONE, FENCED, PAUSED, STALE or
DONE, in that order) and, when DONE, writes the new firing state, the logs and the fired
tick; the jobs of the DONE steps are enqueued at the end of the transaction by the
enqueue step, admit.admit_jobs (same lanes, seq, queue registry, wake on commit). So the
check and the enqueue of a tick commit together, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from corq.backends.base import (
    NewJob,
    ScheduleRecord,
    ScheduleRun,
    ScheduleStep,
    SkippedTicks,
    TickOutcome,
    TickStep,
)
from corq.backends.sqlite import admit, producer
from corq.backends.sqlite import schedule_rows as rows
from corq.backends.sqlite.store import Conn, advance_clock
from corq.errors import EnqueueError

#: Steps that enqueue a job (and so must carry one).
_WITH_JOB = frozenset({TickStep.FIRE, TickStep.FIRE_BUFFERED, TickStep.BACKFILL, TickStep.MANUAL})
#: Steps only a scheduler holding the lease takes (a fence is required).
_LEADER_ONLY = frozenset({TickStep.FIRE, TickStep.SKIP, TickStep.BUFFER, TickStep.FIRE_BUFFERED})
#: Steps that wait while the schedule is paused.
_NOT_WHILE_PAUSED = frozenset({TickStep.FIRE, TickStep.BUFFER, TickStep.FIRE_BUFFERED})

_FENCE_KEY = "schedule_fence"


def check_steps(steps: Sequence[ScheduleStep], fence: int | None) -> None:
    """Refuse, before anything is written, a caller's bug (ValueError) or a job that
    enqueue_jobs would refuse (EnqueueError)."""
    for step in steps:
        _check_step(step, fence)


def _check_step(step: ScheduleStep, fence: int | None) -> None:
    what = f"advance_schedules: the {step.step.value} step of {step.schedule!r}"
    if fence is None and step.step in _LEADER_ONLY:
        raise ValueError(f"{what} needs the scheduler's fence")
    if (step.job is None) == (step.step in _WITH_JOB):
        raise ValueError(f"{what} {'needs a job' if step.job is None else 'takes no job'}")
    skipped = step.skipped
    if skipped is not None and not skipped.first_tick_ms <= skipped.last_tick_ms < step.tick_ms:
        raise ValueError(f"{what}: its skipped ticks must be below the step's tick")
    if step.job is not None:
        producer.check_new_job(step.job)


@dataclass(frozen=True, slots=True)
class Advanced:
    """What one transaction of steps did."""

    outcomes: list[TickOutcome]
    #: The time it ran at (the next transactions of the call keep it).
    now_ms: int


def advance_steps(
    conn: Conn,
    steps: Sequence[ScheduleStep],
    fence: int | None,
    now_ms: int | None,
    check_queues: Sequence[ScheduleStep],
) -> Advanced:
    """Apply `steps`, after checking the jobs of `check_queues` go to their schedule's
    queue (EnqueueError, nothing written)."""
    now, _ = advance_clock(conn, now_ms)
    _check_queues(conn, check_queues)
    chunk = _Chunk(conn, fence, now)
    outcomes = [chunk.apply(step) for step in steps]
    chunk.finish()
    return Advanced(outcomes, now)


def _check_queues(conn: Conn, steps: Sequence[ScheduleStep]) -> None:
    queues: dict[str, str | None] = {}
    for step in steps:
        if step.job is None:
            continue
        if step.schedule not in queues:
            found = rows.read_schedule(conn, step.schedule)
            queues[step.schedule] = None if found is None else found.queue
        queue = queues[step.schedule]
        if queue is not None and queue != step.job.queue:
            raise EnqueueError(
                f"job {step.job.id}: queue {step.job.queue!r} is not the queue of schedule "
                f"{step.schedule!r} ({queue!r})"
            )


class _Chunk:
    """The steps of one transaction, and what they leave to write at its end."""

    def __init__(self, conn: Conn, fence: int | None, now: int) -> None:
        self._conn = conn
        self._fence = fence
        self._now = now
        #: The highest fence that wrote (an unreadable or missing value counts as none).
        self._highest = rows.meta_value(conn, _FENCE_KEY) or 0
        self._raised = False
        self._jobs: list[NewJob] = []

    def apply(self, step: ScheduleStep) -> TickOutcome:
        current = rows.read_schedule(self._conn, step.schedule)
        if current is None or (step.job is not None and step.job.queue != current.queue):
            return TickOutcome.GONE  # removed, or moved to another queue since the check
        if self._fence is not None and self._fence < self._highest:
            return TickOutcome.FENCED
        if current.paused and step.step in _NOT_WHILE_PAUSED:
            return TickOutcome.PAUSED
        moved = _RULES[step.step](self._conn, step, current)
        if moved is None:
            return TickOutcome.STALE
        self._write(step, moved)
        if self._fence is not None and self._fence > self._highest:
            self._highest, self._raised = self._fence, True
        return TickOutcome.DONE

    def _write(self, step: ScheduleStep, moved: ScheduleRecord) -> None:
        conn, name = self._conn, step.schedule
        skips = [] if step.skipped is None else [step.skipped]
        if step.step is TickStep.SKIP:
            skips.append(SkippedTicks(first_tick_ms=step.tick_ms, last_tick_ms=step.tick_ms,
                                      count=1, reason=step.reason, at_ms=self._now))  # fmt: skip
        for skip in skips:
            rows.log_skip(conn, name, skip)
        moved = replace(moved, skipped=moved.skipped + sum(skip.count for skip in skips))
        if step.job is not None:
            self._jobs.append(step.job)
            run = ScheduleRun(tick_ms=step.tick_ms, job_id=step.job.id, queue=step.job.queue,
                              kind=step.kind, fired_at_ms=self._now)  # fmt: skip
            rows.log_run(conn, name, run)
            moved = replace(moved, fired=moved.fired + 1)
            if step.step is not TickStep.MANUAL:
                floor_ms = rows.add_fired(conn, name, step.tick_ms, moved.floor_ms)
                moved = replace(moved, floor_ms=floor_ms)
        rows.put_schedule(conn, moved)

    def finish(self) -> None:
        """Enqueue the jobs of the DONE steps; remember a higher fence that wrote."""
        if self._jobs:
            admit.admit_jobs(self._conn, self._jobs)
        if self._raised:
            rows.put_meta(self._conn, _FENCE_KEY, self._highest)


# -- the rules: the state a DONE step leaves, or None when the tick is not due (STALE) ----

Rule = Callable[[Conn, ScheduleStep, ScheduleRecord], ScheduleRecord | None]


def _fire(conn: Conn, step: ScheduleStep, s: ScheduleRecord) -> ScheduleRecord | None:
    """FIRE and SKIP: a tick after the watermark, which moves to it."""
    return replace(s, last_tick_ms=step.tick_ms) if step.tick_ms > s.last_tick_ms else None


def _buffer(conn: Conn, step: ScheduleStep, s: ScheduleRecord) -> ScheduleRecord | None:
    if step.tick_ms <= s.last_tick_ms or s.buffered_tick_ms is not None:
        return None
    return replace(s, last_tick_ms=step.tick_ms, buffered_tick_ms=step.tick_ms)


def _fire_buffered(conn: Conn, step: ScheduleStep, s: ScheduleRecord) -> ScheduleRecord | None:
    return replace(s, buffered_tick_ms=None) if s.buffered_tick_ms == step.tick_ms else None


def _backfill(conn: Conn, step: ScheduleStep, s: ScheduleRecord) -> ScheduleRecord | None:
    """A past tick above the floor, neither fired nor buffered (the buffered one will be
    fired by FIRE_BUFFERED: firing it here too would fire it twice)."""
    tick = step.tick_ms
    if not s.floor_ms < tick <= s.last_tick_ms or tick == s.buffered_tick_ms:
        return None
    return None if rows.has_fired(conn, step.schedule, tick) else s


def _manual(conn: Conn, step: ScheduleStep, s: ScheduleRecord) -> ScheduleRecord | None:
    return s


_RULES: dict[TickStep, Rule] = {
    TickStep.FIRE: _fire,
    TickStep.SKIP: _fire,
    TickStep.BUFFER: _buffer,
    TickStep.FIRE_BUFFERED: _fire_buffered,
    TickStep.BACKFILL: _backfill,
    TickStep.MANUAL: _manual,
}
