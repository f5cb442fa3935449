"""The schedules API (``app.schedules``): each call checks everything, then makes one or
two broker calls. See the package docstring."""

from __future__ import annotations

import builtins
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from corq.aio import gather_bounded
from corq.backends.base import ScheduleRecord, ScheduleRun, TickOutcome
from corq.errors import ScheduleError, ScheduleNotFoundError
from corq.job import Job
from corq.schedule import (
    CatchUp,
    Overlap,
    RunKind,
    ScheduleDef,
    check_def,
    check_schedule_name,
    make_policy,
    make_rule,
)
from corq.schedules.define import (
    MAX_BACKFILL_TICKS,
    MAX_REASON_CHARS,
    UNSET,
    Unset,
    aware_ms,
    build_schedule,
    check_flag,
    check_limit,
    check_text,
    decode_record,
    operator_step,
    origin_of,
    paused_ticks,
    updated_policy,
    updated_rule,
)
from corq.schedules.info import (
    BackfillResult,
    RunInfo,
    ScheduleInfo,
    SkipInfo,
    run_info,
    skip_info,
    stored_info,
    unstored_info,
)
from corq.settings import Settings
from corq.task import Task
from corq.types import Clock, JobId, QueueName, TaskName

if TYPE_CHECKING:  # the client is this layer's sibling: reached through the host, never imported
    from corq.client import Client, JobHandle

#: Steps per broker call of a backfill.
_STEP_CHUNK = 500
#: Job records read at once for a listing.
_READ_CONCURRENCY = 64


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
            origin=origin_of(origin),
            max_payload_bytes=self._host.settings.max_payload_bytes,
        )
        check_flag("paused", paused)
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
        rule = updated_rule(current.rule, cron, every, at, tz, anchor, self._now())
        policy = updated_policy(
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
            check_flag("paused", paused)
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
        check_text("reason", reason, MAX_REASON_CHARS)
        record = await self._client.backend.set_schedule_paused(
            name, True, reason, self._host.clock.broker_now_ms()
        )
        if record is None:
            raise self._not_found(name)
        return await self._info(decode_record(record), record)

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
                skipped=paused_ticks(definition.rule, record.last_tick_ms, now),
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
            return unstored_info(code, self._now())
        return await self._info(decode_record(record), record)

    async def list(self) -> builtins.list[ScheduleInfo]:
        """Every schedule by name, with this app's code schedules not stored yet; a stored
        definition that cannot be read is left out (``get`` names the problem)."""
        records = await self._client.backend.list_schedules()
        known: dict[str, tuple[ScheduleDef, ScheduleRecord]] = {}
        for record in records:
            try:
                known[record.name] = (decode_record(record), record)
            except ScheduleError:
                continue
        runs = await gather_bounded(
            [self._job_of(r.last_run) for _, r in known.values()], _READ_CONCURRENCY
        )
        infos = [
            stored_info(definition, record, job, self._now())
            for (definition, record), job in zip(known.values(), runs, strict=True)
        ]
        infos += [
            unstored_info(code, self._now())
            for name, code in self._host.periodic_schedules.items()
            if name not in known
        ]
        return sorted(infos, key=lambda info: info.name)

    async def history(
        self, name: str, limit: int = 50
    ) -> tuple[builtins.list[RunInfo], builtins.list[SkipInfo]]:
        """Recent runs (with each job's state and duration) and skips, newest first."""
        name = check_schedule_name(name)
        check_limit(limit)
        record = await self._client.backend.get_schedule(name)
        if record is None:
            if name in self._host.periodic_schedules:
                return [], []
            raise ScheduleNotFoundError(f"no schedule named {name!r}")
        tz = decode_record(record).rule.tz
        runs, skips = await self._client.backend.schedule_history(name, limit)
        jobs = await gather_bounded([self._job_of(run) for run in runs], _READ_CONCURRENCY)
        return (
            [run_info(run, job, tz) for run, job in zip(runs, jobs, strict=True)],
            [skip_info(skip, tz) for skip in skips],
        )

    # -- operator steps --------------------------------------------------------------
    async def backfill(self, name: str, start: datetime, end: datetime) -> BackfillResult:
        """Fire every tick of the rule in [start, end] that was not fired (skipped while
        paused, missed, ...); each tick still fires at most once, whoever else fires it."""
        definition, record = await self._stored(name)
        now = self._now()
        start_ms, end_ms = aware_ms(start, "start"), aware_ms(end, "end")
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
        raise ScheduleError(f"task must be a corq Task or a task name, got {reprlib.repr(task)}")

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
            existing = decode_record(record)
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
        definition = decode_record(record)
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
        job = await self._job_of(record.last_run)
        return stored_info(definition, record, job, self._now())
