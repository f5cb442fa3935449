"""What the schedules API shows: a schedule with its state, its runs, its skips, a
backfill's outcome (frozen values, times as aware datetimes in the schedule's zone)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from corq.backends.base import ScheduleRecord, ScheduleRun, SkippedTicks
from corq.job import Job, JobStatus
from corq.schedule import Rule, RunKind, ScheduleDef, Source, tick_datetime
from corq.types import JobId, QueueName, TaskName

#: Fire times `ScheduleInfo.next_ticks` lists.
NEXT_TICKS = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class RunInfo:
    """One job a schedule enqueued, with what became of it."""

    #: The tick it was fired for, in the schedule's time zone (the request time of a
    #: run-now).
    tick: datetime
    job_id: JobId
    queue: QueueName
    #: A regular tick, a buffered one, a backfill or a run-now.
    kind: RunKind
    #: When the step ran (UTC).
    fired_at: datetime
    #: The job's state now; None when its record expired (after the result TTL) or was purged.
    state: JobStatus | None
    #: From the start of its last attempt to its end (None until it ended).
    duration: timedelta | None = None
    #: Its last error, for a failed or dead job.
    error: str | None = None
    #: How long after its tick it was enqueued (None when the record expired).
    lateness: timedelta | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SkipInfo:
    """A run of ticks passed over without a job, and why."""

    #: First and last tick of the run, in the schedule's time zone (equal for one tick).
    first_tick: datetime
    last_tick: datetime
    #: How many ticks (counted up to a bound for long runs).
    count: int
    #: ``overlap: previous run … still running``, ``missed: …``, ``paused``...
    reason: str
    #: When it was recorded (UTC).
    at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleInfo:
    """A schedule: its definition and its firing state."""

    name: str
    #: What it sends, when and how.
    definition: ScheduleDef
    #: False for a code schedule that no scheduler has written to the broker yet.
    stored: bool
    paused: bool
    #: Why it is paused (an operator's reason, ``paused on failure: …``).
    paused_reason: str | None
    #: The next fire times (up to 3), aware in the schedule's time zone; empty when paused
    #: or when a one-shot has passed.
    next_ticks: tuple[datetime, ...]
    #: Every tick at or before this was fired, skipped or buffered (None: not stored).
    last_tick: datetime | None
    #: A tick held back by ``buffer_one`` until the previous run ends.
    buffered_tick: datetime | None
    #: Jobs enqueued and ticks skipped since it was created.
    fired: int
    skipped: int
    created_at: datetime | None
    updated_at: datetime | None
    #: The latest run with its job's state, if any.
    last_run: RunInfo | None
    #: Raised by every change (0: not stored).
    version: int

    @property
    def task(self) -> TaskName:
        return self.definition.task

    @property
    def queue(self) -> QueueName:
        return self.definition.queue

    @property
    def source(self) -> Source:
        return self.definition.source

    def describe(self) -> str:
        """``cron 0 2 * * * (Europe/Berlin)``, ``every 30s``, ``once at …``."""
        return self.definition.rule.describe()


@dataclass(frozen=True, kw_only=True, slots=True)
class BackfillResult:
    """What a backfill did with each tick of its window."""

    #: Ticks of the rule in the window.
    ticks: int
    #: Jobs enqueued now, one per tick not fired before, oldest first.
    job_ids: tuple[JobId, ...]
    #: Ticks fired before (by the scheduler or an earlier backfill): not fired again.
    already_fired: int
    #: Ticks older than the fired ticks the broker still keeps one by one: refused, so an
    #: old tick can never be fired twice.
    below_floor: int
    #: Ticks the scheduler has not reached yet (it fires them as regular ticks).
    ahead: int

    @property
    def fired(self) -> int:
        return len(self.job_ids)


def stored_info(
    definition: ScheduleDef, record: ScheduleRecord, job: Job | None, now_ms: int
) -> ScheduleInfo:
    """A stored schedule as shown; `job` is its last run's job (None: none, or expired)."""
    tz = definition.rule.tz
    after = max(record.last_tick_ms, now_ms)
    return ScheduleInfo(
        name=record.name,
        definition=definition,
        stored=True,
        paused=record.paused,
        paused_reason=record.paused_reason,
        next_ticks=() if record.paused else next_ticks(definition.rule, after),
        last_tick=tick_datetime(record.last_tick_ms, tz),
        buffered_tick=(
            None if record.buffered_tick_ms is None else tick_datetime(record.buffered_tick_ms, tz)
        ),
        fired=record.fired,
        skipped=record.skipped,
        created_at=utc(record.created_at_ms),
        updated_at=utc(record.updated_at_ms),
        last_run=None if record.last_run is None else run_info(record.last_run, job, tz),
        version=record.version,
    )


def unstored_info(code: ScheduleDef, now_ms: int) -> ScheduleInfo:
    """A code schedule no scheduler has written yet."""
    return ScheduleInfo(
        name=code.name,
        definition=code,
        stored=False,
        paused=False,
        paused_reason=None,
        next_ticks=next_ticks(code.rule, now_ms),
        last_tick=None,
        buffered_tick=None,
        fired=0,
        skipped=0,
        created_at=None,
        updated_at=None,
        last_run=None,
        version=0,
    )


def next_ticks(rule: Rule, after_ms: int) -> tuple[datetime, ...]:
    return tuple(tick_datetime(t, rule.tz) for t in rule.next_ticks(after_ms, NEXT_TICKS))


def run_info(run: ScheduleRun, job: Job | None, tz: str) -> RunInfo:
    try:
        kind = RunKind(run.kind)
    except ValueError:  # written by a newer corq
        kind = RunKind.TICK
    duration = lateness = None
    if job is not None:
        if job.started_at_ms is not None and job.finished_at_ms is not None:
            duration = timedelta(milliseconds=max(0, job.finished_at_ms - job.started_at_ms))
        if kind is not RunKind.MANUAL:
            lateness = timedelta(milliseconds=job.enqueued_at_ms - run.tick_ms)
    failed = job is not None and job.status in (JobStatus.FAILED, JobStatus.DEAD)
    return RunInfo(
        tick=tick_datetime(run.tick_ms, tz),
        job_id=run.job_id,
        queue=run.queue,
        kind=kind,
        fired_at=utc(run.fired_at_ms),
        state=None if job is None else job.status,
        duration=duration,
        error=job.error if failed and job is not None else None,
        lateness=lateness,
    )


def skip_info(skip: SkippedTicks, tz: str) -> SkipInfo:
    return SkipInfo(
        first_tick=tick_datetime(skip.first_tick_ms, tz),
        last_tick=tick_datetime(skip.last_tick_ms, tz),
        count=skip.count,
        reason=skip.reason,
        at=utc(skip.at_ms),
    )


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
