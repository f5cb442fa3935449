"""Schedules at runtime: add, change, pause, inspect, backfill and run them from Python.

    await app.schedules.add("nightly-export", export, cron="0 2 * * *", tz="Europe/Berlin")
    await app.schedules.pause("nightly-export", reason="migration")
    info = await app.schedules.get("nightly-export")      # next_ticks, last run, counts

Everything is checked here, before the broker is asked (a bad cron, an unknown zone or
task, args that do not bind, a one-shot in the past, a taken name): the error says what to
change. Stored schedules are the broker's; code schedules (``@app.periodic``) belong to the
code, so they can be paused, resumed, backfilled and run now here, but changed or removed
only in the code. The scheduler leader fires the ticks (``corq.scheduler``); this module only
writes definitions and operator steps (backfill, run-now), which need no lease.
"""

from __future__ import annotations

import builtins
import reprlib
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from corq.aio import gather_bounded
from corq.backends.base import (
    NewJob,
    ScheduleRecord,
    ScheduleRun,
    ScheduleStep,
    SkippedTicks,
    TickOutcome,
    TickStep,
)
from corq.errors import CorqError, ScheduleError, ScheduleNotFoundError
from corq.job import Job, JobStatus
from corq.limits import check_payload_size
from corq.schedule import (
    CatchUp,
    Overlap,
    Policy,
    Rule,
    RunKind,
    ScheduleDef,
    Source,
    check_def,
    check_schedule_name,
    make_policy,
    make_rule,
    manual_job_id,
    tick_datetime,
    tick_job_id,
)
from corq.settings import Settings
from corq.task import Task
from corq.types import Clock, JobId, QueueName, TaskName

if TYPE_CHECKING:  # the client is this layer's sibling: reached through the host, never imported
    from corq.client import Client, JobHandle

#: Fire times `ScheduleInfo.next_ticks` lists.
NEXT_TICKS = 3
#: Most ticks one backfill may cover (a longer window is several calls).
MAX_BACKFILL_TICKS = 10_000
#: Ticks passed over while paused are counted up to this (the log says "at least").
PAUSE_COUNT_BOUND = 100_000
#: Longest pause reason kept.
MAX_REASON_CHARS = 1000
#: Steps per broker call of a backfill.
_STEP_CHUNK = 500
#: Job records read at once for a listing.
_READ_CONCURRENCY = 64


class _Unset(Enum):
    UNSET = "unset"


#: "Keep the current value" for `Schedules.update`.
UNSET: Final = _Unset.UNSET
Unset = Literal[_Unset.UNSET]


class ScheduleHost(Protocol):
    """What the schedules API needs from its app (the App implements it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def registry(self) -> Mapping[TaskName, Task[Any, Any]]: ...

    @property
    def periodic_schedules(self) -> Mapping[str, ScheduleDef]: ...

    def client(self) -> Client: ...


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


def build_schedule(
    name: str,
    task: Task[Any, Any],
    *,
    rule: Rule,
    policy: Policy,
    args: object,
    kwargs: object,
    queue: object,
    priority: object,
    source: Source,
    origin: str,
    max_payload_bytes: int,
) -> ScheduleDef:
    """A checked definition: the arguments bound and encoded exactly as an enqueue's."""
    name = check_schedule_name(name)
    if not isinstance(args, list | tuple):
        raise ScheduleError(f"schedule {name!r}: args must be a tuple or list, got {_r(args)}")
    if kwargs is None:
        kwargs = {}
    if not (isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs)):
        raise ScheduleError(f"schedule {name!r}: kwargs must be a dict with str keys")
    try:
        payload = task.encode_payload(tuple(args), dict(kwargs))
        check_payload_size(task.name, payload, max_payload_bytes)
    except CorqError as exc:
        raise ScheduleError(f"schedule {name!r}: {exc}") from exc
    return check_def(
        ScheduleDef(
            name=name,
            task=task.name,
            queue=task.options.queue if queue is None else queue,  # type: ignore[arg-type]  # checked by check_def
            payload=payload,
            priority=task.options.priority if priority is None else priority,  # type: ignore[arg-type]  # checked by check_def
            rule=rule,
            policy=policy,
            source=source,
            origin=origin,
        )
    )


class Schedules:
    """The schedules of one app's broker (``app.schedules``); every method is async."""

    def __init__(self, host: ScheduleHost) -> None:
        self._host = host

    @property
    def _client(self) -> Client:
        return self._host.client()

    def _now(self) -> int:
        return self._host.clock.now_ms()

    # -- defining --------------------------------------------------------------------
    async def add(
        self,
        name: str,
        task: Task[Any, Any] | TaskName,
        /,
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        at: datetime | None = None,
        tz: str | None = None,
        anchor: datetime | None = None,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: QueueName | None = None,
        priority: int | None = None,
        overlap: Overlap | str = Overlap.ALLOW_ALL,
        catchup: CatchUp | str = CatchUp.ALL,
        catchup_window: timedelta | float | None = None,
        jitter: timedelta | float | None = None,
        pause_on_failure: bool = False,
        paused: bool = False,
        origin: str | None = None,
    ) -> ScheduleInfo:
        """Store a new schedule; its first tick is the first one after now.

        Raises ScheduleError (nothing stored) for a bad rule, policy, task or args, a
        one-shot in the past, or a name already taken (by a stored schedule or a code one).
        """
        name = check_schedule_name(name)
        self._refuse_code_name(name)
        definition = build_schedule(
            name,
            self._task(task),
            rule=make_rule(cron=cron, every=every, at=at, tz=tz, anchor=anchor, now_ms=self._now()),
            policy=make_policy(
                overlap=overlap,
                catchup=catchup,
                catchup_window=catchup_window,
                jitter=jitter,
                pause_on_failure=pause_on_failure,
            ),
            args=args,
            kwargs=kwargs,
            queue=queue,
            priority=priority,
            source="stored",
            origin=_origin(origin),
            max_payload_bytes=self._host.settings.max_payload_bytes,
        )
        _check_flag("paused", paused)
        backend = self._client.backend
        record = await backend.add_schedule(
            name, definition.queue, definition.encode(), self._host.clock.broker_now_ms()
        )
        if record is None:
            raise ScheduleError(await self._taken(name))
        if paused:
            record = await backend.set_schedule_paused(
                name, True, "paused when added", self._host.clock.broker_now_ms()
            )
            if record is None:
                raise ScheduleNotFoundError(f"schedule {name!r} was removed while being added")
        return await self._info(definition, record)

    async def update(
        self,
        name: str,
        /,
        *,
        task: Task[Any, Any] | TaskName | Unset = UNSET,
        cron: str | Unset | None = UNSET,
        every: timedelta | float | Unset | None = UNSET,
        at: datetime | Unset | None = UNSET,
        tz: str | Unset | None = UNSET,
        anchor: datetime | Unset | None = UNSET,
        args: Sequence[Any] | Unset = UNSET,
        kwargs: dict[str, Any] | Unset | None = UNSET,
        queue: QueueName | Unset = UNSET,
        priority: int | Unset = UNSET,
        overlap: Overlap | str | Unset = UNSET,
        catchup: CatchUp | str | Unset = UNSET,
        catchup_window: timedelta | float | Unset | None = UNSET,
        jitter: timedelta | float | Unset | None = UNSET,
        pause_on_failure: bool | Unset = UNSET,
        paused: bool | Unset = UNSET,
    ) -> ScheduleInfo:
        """Change a stored schedule; what is not given keeps its current value.

        Giving one of cron=, every= or at= replaces the rule (tz= and anchor= carry over
        while the kind stays); a changed rule fires only its ticks after now. A code schedule
        cannot be changed here (change its ``@app.periodic``).
        """
        current, _ = await self._stored(name, changing=True)
        rule = self._updated_rule(current.rule, cron, every, at, tz, anchor)
        policy = _updated_policy(
            current.policy, overlap, catchup, catchup_window, jitter, pause_on_failure
        )
        definition = self._updated_call(current, task, args, kwargs)
        definition = check_def(
            replace(
                definition,
                rule=rule,
                policy=policy,
                queue=definition.queue if queue is UNSET else queue,
                priority=definition.priority if priority is UNSET else priority,
            )
        )
        if paused is not UNSET:
            _check_flag("paused", paused)
        updated = await self._client.backend.update_schedule(
            name,
            definition.queue,
            definition.encode(),
            self._host.clock.broker_now_ms(),
            reset_ticks=rule != current.rule,
        )
        if updated is None:
            raise ScheduleNotFoundError(f"schedule {name!r} was removed while being updated")
        if paused is not UNSET and paused != updated.paused:
            return await (self.pause(name) if paused else self.resume(name))
        return await self._info(definition, updated)

    async def remove(self, name: str) -> None:
        """Delete a stored schedule with its state and history."""
        name = check_schedule_name(name)
        self._refuse_code_name(name, action="removed")
        if not await self._client.backend.remove_schedule(name):
            raise ScheduleNotFoundError(f"no schedule named {name!r}")

    # -- pausing ---------------------------------------------------------------------
    async def pause(self, name: str, reason: str | None = None) -> ScheduleInfo:
        """Stop firing ticks until resumed (backfill and run-now still work)."""
        name = check_schedule_name(name)
        _check_text("reason", reason, MAX_REASON_CHARS)
        record = await self._client.backend.set_schedule_paused(
            name, True, reason, self._host.clock.broker_now_ms()
        )
        if record is None:
            raise self._not_found(name)
        return await self._info(_decode(record), record)

    async def resume(self, name: str) -> ScheduleInfo:
        """Fire again from now on; the ticks passed while paused are logged as one skip."""
        definition, record = await self._stored(name)
        if record.paused:
            now = self._now()
            record_now = await self._client.backend.set_schedule_paused(
                name,
                False,
                None,
                self._host.clock.broker_now_ms(),
                skipped=_paused_ticks(definition.rule, record.last_tick_ms, now),
            )
            if record_now is None:
                raise self._not_found(name)
            record = record_now
        return await self._info(definition, record)

    # -- reading ---------------------------------------------------------------------
    async def get(self, name: str) -> ScheduleInfo:
        """One schedule (a code schedule not stored yet too)."""
        name = check_schedule_name(name)
        record = await self._client.backend.get_schedule(name)
        if record is None:
            code = self._host.periodic_schedules.get(name)
            if code is None:
                raise ScheduleNotFoundError(f"no schedule named {name!r}")
            return self._unstored_info(code)
        return await self._info(_decode(record), record)

    async def list(self) -> builtins.list[ScheduleInfo]:
        """Every schedule by name, with this app's code schedules not stored yet; a stored
        definition that cannot be read is left out (``get`` names the problem)."""
        records = await self._client.backend.list_schedules()
        known: dict[str, tuple[ScheduleDef, ScheduleRecord]] = {}
        for record in records:
            try:
                known[record.name] = (_decode(record), record)
            except ScheduleError:
                continue
        runs = await gather_bounded(
            [self._job_of(r.last_run) for _, r in known.values()], _READ_CONCURRENCY
        )
        infos = [
            self._info_with(definition, record, job)
            for (definition, record), job in zip(known.values(), runs, strict=True)
        ]
        infos += [
            self._unstored_info(code)
            for name, code in self._host.periodic_schedules.items()
            if name not in known
        ]
        return sorted(infos, key=lambda info: info.name)

    async def history(
        self, name: str, limit: int = 50
    ) -> tuple[builtins.list[RunInfo], builtins.list[SkipInfo]]:
        """Recent runs (with each job's state and duration) and skips, newest first."""
        name = check_schedule_name(name)
        _check_limit(limit)
        record = await self._client.backend.get_schedule(name)
        if record is None:
            if name in self._host.periodic_schedules:
                return [], []
            raise ScheduleNotFoundError(f"no schedule named {name!r}")
        tz = _decode(record).rule.tz
        runs, skips = await self._client.backend.schedule_history(name, limit)
        jobs = await gather_bounded([self._job_of(run) for run in runs], _READ_CONCURRENCY)
        return (
            [_run_info(run, job, tz) for run, job in zip(runs, jobs, strict=True)],
            [_skip_info(skip, tz) for skip in skips],
        )

    # -- operator steps --------------------------------------------------------------
    async def backfill(self, name: str, start: datetime, end: datetime) -> BackfillResult:
        """Fire every tick of the rule in [start, end] that was not fired (skipped while
        paused, missed, ...); each tick still fires at most once, whoever else fires it."""
        definition, record = await self._stored(name)
        now = self._now()
        start_ms, end_ms = _aware_ms(start, "start"), _aware_ms(end, "end")
        if start_ms > end_ms:
            raise ScheduleError("start must not be after end")
        if end_ms > now:
            raise ScheduleError(
                f"end={end.isoformat()} is in the future: backfill fires past ticks only"
            )
        rule = definition.rule
        if rule.count_between(start_ms - 1, end_ms, MAX_BACKFILL_TICKS + 1) > MAX_BACKFILL_TICKS:
            raise ScheduleError(
                f"the window holds more than {MAX_BACKFILL_TICKS:,} ticks of {rule.describe()}: "
                "backfill a shorter window (several calls)"
            )
        ticks = rule.ticks_between(start_ms - 1, end_ms, MAX_BACKFILL_TICKS)
        below = [t for t in ticks if t <= record.floor_ms]
        ahead = [t for t in ticks if t > record.last_tick_ms]
        wanted = [t for t in ticks if record.floor_ms < t <= record.last_tick_ms]
        fired = await self._advance(definition, [(t, RunKind.BACKFILL) for t in wanted], now)
        return BackfillResult(
            ticks=len(ticks),
            job_ids=tuple(fired),
            already_fired=len(wanted) - len(fired),
            below_floor=len(below),
            ahead=len(ahead),
        )

    async def run_now(self, name: str) -> JobHandle[Any]:
        """Send the schedule's job now, outside its ticks (its regular ticks are unchanged)."""
        definition, _ = await self._stored(name)
        now = self._now()
        fired = await self._advance(definition, [(now, RunKind.MANUAL)], now)
        if not fired:
            raise self._not_found(name)
        return self._client.job(fired[0], definition.queue, definition.task)

    async def _advance(
        self,
        definition: ScheduleDef,
        ticks: Sequence[tuple[int, RunKind]],
        now: int,
    ) -> builtins.list[JobId]:
        """Send BACKFILL or MANUAL steps in chunks; the ids of the jobs enqueued."""
        fired: builtins.list[JobId] = []
        backend = self._client.backend
        for at in range(0, len(ticks), _STEP_CHUNK):
            steps = [
                operator_step(definition, tick, kind, now)
                for tick, kind in ticks[at : at + _STEP_CHUNK]
            ]
            outcomes = await backend.advance_schedules(
                steps, None, self._host.clock.broker_now_ms()
            )
            for step, outcome in zip(steps, outcomes, strict=True):
                if outcome is TickOutcome.GONE:
                    raise self._not_found(definition.name)
                if outcome is TickOutcome.DONE and step.job is not None:
                    fired.append(step.job.id)
        return fired

    # -- helpers ---------------------------------------------------------------------
    def _task(self, task: Task[Any, Any] | TaskName | object) -> Task[Any, Any]:
        if isinstance(task, Task):
            return task
        if isinstance(task, str):
            found = self._host.registry.get(task)
            if found is not None:
                return found
            known = ", ".join(sorted(self._host.registry)) or "none"
            raise ScheduleError(
                f"unknown task {task!r}: register it in this app (@app.task) or pass the task "
                f"itself (registered here: {known})"
            )
        raise ScheduleError(f"task must be a corq Task or a task name, got {_r(task)}")

    def _refuse_code_name(self, name: str, action: str = "") -> None:
        code = self._host.periodic_schedules.get(name)
        if code is None:
            return
        if action:
            raise ScheduleError(
                f"schedule {name!r} is declared in code at {code.origin} (@app.periodic) and "
                f"cannot be {action} here: change the code (pause/resume still work)"
            )
        raise ScheduleError(
            f"schedule name {name!r} is taken by the code schedule declared at {code.origin} "
            "(@app.periodic): choose another name"
        )

    async def _taken(self, name: str) -> str:
        record = await self._client.backend.get_schedule(name)
        if record is None:
            return f"schedule name {name!r} was taken and freed meanwhile: try again"
        try:
            existing = _decode(record)
        except ScheduleError:
            return f"schedule name {name!r} is taken (by a definition that cannot be read)"
        if existing.source == "code":
            return (
                f"schedule name {name!r} is taken by the code schedule declared at "
                f"{existing.origin} (@app.periodic): choose another name"
            )
        return (
            f"schedule name {name!r} is taken by a stored schedule ({existing.rule.describe()}, "
            f"added by {existing.origin or 'unknown'}): update it, remove it first, or choose "
            "another name"
        )

    async def _stored(
        self, name: str, *, changing: bool = False
    ) -> tuple[ScheduleDef, ScheduleRecord]:
        name = check_schedule_name(name)
        if changing:
            self._refuse_code_name(name, action="changed")
        record = await self._client.backend.get_schedule(name)
        if record is None:
            raise self._not_found(name)
        definition = _decode(record)
        if changing and definition.source == "code":
            raise ScheduleError(
                f"schedule {name!r} is declared in code at {definition.origin} "
                "(@app.periodic) and cannot be changed here: change the code"
            )
        return definition, record

    def _not_found(self, name: str) -> ScheduleNotFoundError:
        if name in self._host.periodic_schedules:
            return ScheduleNotFoundError(
                f"code schedule {name!r} is not in the broker yet: a scheduler writes it when "
                "it takes the lead (run a worker or `corq scheduler`)"
            )
        return ScheduleNotFoundError(f"no schedule named {name!r}")

    def _updated_rule(
        self,
        current: Rule,
        cron: str | Unset | None,
        every: timedelta | float | Unset | None,
        at: datetime | Unset | None,
        tz: str | Unset | None,
        anchor: datetime | Unset | None,
    ) -> Rule:
        given = {
            k: v
            for k, v in (("cron", cron), ("every", every), ("at", at))
            if v is not UNSET and v is not None
        }
        if not given and tz is UNSET and anchor is UNSET:
            return current
        if not given:
            given = _rule_args(current)
        kind = next(iter(given))
        if tz is UNSET:
            tz = current.tz if kind == "cron" and current.kind == "cron" else None
        if anchor is UNSET:
            anchor = (
                _datetime(current.anchor_ms)
                if kind == "every" and current.kind == "every" and current.anchor_ms
                else None
            )
        return make_rule(
            **given,  # type: ignore[arg-type]  # one of cron/every/at, checked by make_rule
            tz=tz,
            anchor=anchor,
            now_ms=self._now() if at is not UNSET and at is not None else None,
        )

    def _updated_call(
        self,
        current: ScheduleDef,
        task: Task[Any, Any] | TaskName | Unset,
        args: Sequence[Any] | Unset,
        kwargs: dict[str, Any] | Unset | None,
    ) -> ScheduleDef:
        """The definition with the job's task and arguments changed as asked."""
        if task is UNSET and args is UNSET and kwargs is UNSET:
            return current
        new_task = self._task(current.task if task is UNSET else task)
        if args is UNSET or kwargs is UNSET:
            old_args, old_kwargs = self._current_call(current)
            args = old_args if args is UNSET else args
            kwargs = old_kwargs if kwargs is UNSET else kwargs
        changed = build_schedule(
            current.name,
            new_task,
            rule=current.rule,
            policy=current.policy,
            args=args,
            kwargs=kwargs,
            queue=current.queue,
            priority=current.priority,
            source=current.source,
            origin=current.origin,
            max_payload_bytes=self._host.settings.max_payload_bytes,
        )
        return changed

    def _current_call(self, current: ScheduleDef) -> tuple[builtins.list[Any], dict[str, Any]]:
        try:
            data = self._client.serializer.loads(current.payload)
        except Exception as exc:  # another serializer's bytes, damaged data
            raise ScheduleError(
                f"schedule {current.name!r}: its stored arguments cannot be read ({exc}); "
                "give args= and kwargs="
            ) from None
        if not isinstance(data, dict):
            raise ScheduleError(f"schedule {current.name!r}: give args= and kwargs=")
        return list(data.get("args", [])), dict(data.get("kwargs", {}))

    async def _job_of(self, run: ScheduleRun | None) -> Job | None:
        if run is None:
            return None
        return await self._client.backend.get_job(run.job_id, run.queue)

    async def _info(self, definition: ScheduleDef, record: ScheduleRecord) -> ScheduleInfo:
        return self._info_with(definition, record, await self._job_of(record.last_run))

    def _info_with(
        self, definition: ScheduleDef, record: ScheduleRecord, job: Job | None
    ) -> ScheduleInfo:
        tz = definition.rule.tz
        after = max(record.last_tick_ms, self._now())
        return ScheduleInfo(
            name=record.name,
            definition=definition,
            stored=True,
            paused=record.paused,
            paused_reason=record.paused_reason,
            next_ticks=() if record.paused else _next_ticks(definition.rule, after),
            last_tick=tick_datetime(record.last_tick_ms, tz),
            buffered_tick=(
                None
                if record.buffered_tick_ms is None
                else tick_datetime(record.buffered_tick_ms, tz)
            ),
            fired=record.fired,
            skipped=record.skipped,
            created_at=_datetime(record.created_at_ms),
            updated_at=_datetime(record.updated_at_ms),
            last_run=None if record.last_run is None else _run_info(record.last_run, job, tz),
            version=record.version,
        )

    def _unstored_info(self, code: ScheduleDef) -> ScheduleInfo:
        return ScheduleInfo(
            name=code.name,
            definition=code,
            stored=False,
            paused=False,
            paused_reason=None,
            next_ticks=_next_ticks(code.rule, self._now()),
            last_tick=None,
            buffered_tick=None,
            fired=0,
            skipped=0,
            created_at=None,
            updated_at=None,
            last_run=None,
            version=0,
        )


def operator_step(
    definition: ScheduleDef, tick_ms: int, kind: RunKind, now_ms: int
) -> ScheduleStep:
    """A BACKFILL or MANUAL step: its job runs now (no jitter: an operator asked for it)."""
    manual = kind is RunKind.MANUAL
    job_id = (
        manual_job_id(definition.name, now_ms, uuid.uuid4().hex[:8])
        if manual
        else tick_job_id(definition.name, tick_ms)
    )
    return ScheduleStep(
        schedule=definition.name,
        step=TickStep.MANUAL if manual else TickStep.BACKFILL,
        tick_ms=tick_ms,
        job=NewJob(
            id=job_id,
            task=definition.task,
            queue=definition.queue,
            payload=definition.payload,
            priority=definition.priority,
            enqueued_at_ms=now_ms,
            run_at_ms=now_ms,
            schedule=definition.name,
            tick_ms=tick_ms,
        ),
        kind=kind.value,
    )


def _decode(record: ScheduleRecord) -> ScheduleDef:
    try:
        return ScheduleDef.decode(record.definition)
    except ScheduleError as exc:
        raise ScheduleError(
            f"schedule {record.name!r}: {exc} (remove it and add it again)"
        ) from None


def _updated_policy(
    current: Policy,
    overlap: Overlap | str | Unset,
    catchup: CatchUp | str | Unset,
    catchup_window: timedelta | float | Unset | None,
    jitter: timedelta | float | Unset | None,
    pause_on_failure: bool | Unset,
) -> Policy:
    return make_policy(
        overlap=current.overlap if overlap is UNSET else overlap,
        catchup=current.catchup if catchup is UNSET else catchup,
        catchup_window=(
            current.catchup_window_ms / 1000 if catchup_window is UNSET else catchup_window
        ),
        jitter=current.jitter_ms / 1000 if jitter is UNSET else jitter,
        pause_on_failure=(
            current.pause_on_failure if pause_on_failure is UNSET else pause_on_failure
        ),
    )


def _rule_args(rule: Rule) -> dict[str, Any]:
    if rule.cron is not None:
        return {"cron": rule.cron}
    if rule.every_ms is not None:
        return {"every": timedelta(milliseconds=rule.every_ms)}
    assert rule.at_ms is not None
    return {"at": _datetime(rule.at_ms)}


def _paused_ticks(rule: Rule, after_ms: int, until_ms: int) -> SkippedTicks | None:
    """The ticks a pause passed over, as one skip (None when there were none)."""
    count = rule.count_between(after_ms, until_ms, PAUSE_COUNT_BOUND)
    first, last = rule.next_after(after_ms), rule.last_at_or_before(until_ms)
    if count == 0 or first is None or last is None or first > last:
        return None
    return SkippedTicks(
        first_tick_ms=first, last_tick_ms=last, count=count, reason="paused", at_ms=until_ms
    )


def _next_ticks(rule: Rule, after_ms: int) -> tuple[datetime, ...]:
    return tuple(tick_datetime(t, rule.tz) for t in rule.next_ticks(after_ms, NEXT_TICKS))


def _run_info(run: ScheduleRun, job: Job | None, tz: str) -> RunInfo:
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
        fired_at=_datetime(run.fired_at_ms),
        state=None if job is None else job.status,
        duration=duration,
        error=job.error if failed and job is not None else None,
        lateness=lateness,
    )


def _skip_info(skip: SkippedTicks, tz: str) -> SkipInfo:
    return SkipInfo(
        first_tick=tick_datetime(skip.first_tick_ms, tz),
        last_tick=tick_datetime(skip.last_tick_ms, tz),
        count=skip.count,
        reason=skip.reason,
        at=_datetime(skip.at_ms),
    )


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _aware_ms(moment: object, what: str) -> int:
    if not isinstance(moment, datetime):
        raise ScheduleError(f"{what} must be a datetime, got {_r(moment)}")
    if moment.utcoffset() is None:
        raise ScheduleError(
            f"{what}={moment.isoformat()} has no time zone; pass an aware datetime "
            "(e.g. tzinfo=datetime.UTC)"
        )
    return round(moment.timestamp() * 1000)


def _check_flag(what: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ScheduleError(f"{what} must be True or False, got {_r(value)}")


def _origin(origin: str | None) -> str:
    if origin is None:
        return f"python on {socket.gethostname()}"
    _check_text("origin", origin, 200)
    return origin


def _check_text(what: str, value: object, limit: int) -> None:
    """None, or a str of at most `limit` characters (everything stored has a bound)."""
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise ScheduleError(f"{what} must be a str of at most {limit} characters, got {_r(value)}")


def _check_limit(limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ScheduleError(f"limit must be an integer from 1 to 1000, got {_r(limit)}")


def _r(value: object) -> str:
    return reprlib.repr(value)
