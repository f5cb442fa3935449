"""Typed wrappers of the schedule scripts (``lua/*schedule*.lua``), mixed into
:class:`~corq.backends.redis.scripts.Scripts`: one method per script, named like its file.

The scripts of the ``{schedules}`` slot take a :class:`SchedulesKeys`; those of a
schedule's queue slot a :class:`ScheduleKeys` (or, for the steps, the queue's keys: a
step's keys are its schedule's name appended to prefixes carrying the queue's hash tag).
"""

from __future__ import annotations

from collections.abc import Sequence

from corq.backends.base import (
    BATCH,
    PRIORITY_MAX,
    SCHEDULE_FIRED_KEEP,
    SCHEDULE_LOG_KEEP,
    ScheduleStep,
    SkippedTicks,
    TickOutcome,
)
from corq.backends.record import NEW_FIELDS
from corq.backends.redis import schedule_replies
from corq.backends.redis.calls import WAKE_CAP, Arg, ScriptCall, ScriptRunner, new_values, now_arg
from corq.backends.redis.keys import QueueKeys, ScheduleKeys, SchedulesKeys
from corq.backends.redis.schedule_replies import (
    MoveState,
    RecordChange,
    RecordReply,
    ScheduleState,
)
from corq.types import QueueName

#: How long a removed schedule's tombstone stays among the changes.
TOMBSTONE_KEEP_MS = 24 * 3600 * 1000
_NO_JOB: tuple[Arg, ...] = ("",) * len(NEW_FIELDS)


def _skip_values(skip: SkippedTicks | None) -> list[Arg]:
    """A skip as the scripts take it: a 1/0 flag, then its five values ('' without)."""
    if skip is None:
        return [0, "", "", "", "", ""]
    return [1, skip.first_tick_ms, skip.last_tick_ms, skip.count, skip.reason, skip.at_ms]


def _step_values(step: ScheduleStep) -> list[Arg]:
    """One step as advance_schedules.lua takes it."""
    values: list[Arg] = [step.schedule, step.step.value, step.tick_ms, step.kind, step.reason]
    values += _skip_values(step.skipped)
    if step.job is None:
        return [*values, 0, *_NO_JOB]
    return [*values, 1, *new_values(step.job)]


def _outcomes(reply: list[bytes]) -> list[TickOutcome]:
    return [TickOutcome(value.decode()) for value in reply]


class ScheduleScripts(ScriptRunner):
    """The schedule scripts."""

    # -- the {schedules} slot -------------------------------------------------
    def reserve_schedule_name(
        self, keys: SchedulesKeys, *, name: str, queue: QueueName, stale: QueueName | None
    ) -> ScriptCall[QueueName | None]:
        args: list[Arg] = [name, queue, stale or ""]
        return self._call("reserve_schedule_name", [keys.index], args, schedule_replies.reserved)

    def note_schedule_change(
        self,
        keys: SchedulesKeys,
        *,
        name: str,
        rev: int,
        queue: QueueName | None,
        now_ms: int | None,
    ) -> ScriptCall[int]:
        """`rev`: the record's, as the change left it; `queue`: where the index must point
        now (a move), None to leave it."""
        schedules_keys = [keys.index, keys.changes, keys.version, keys.removed, keys.announced]
        args: list[Arg] = [name, queue or "", now_arg(now_ms), rev]
        return self._call("note_schedule_change", schedules_keys, args, int)

    def unindex_schedule(
        self, keys: SchedulesKeys, *, name: str, queue: QueueName, now_ms: int | None
    ) -> ScriptCall[int]:
        schedules_keys = [keys.index, keys.changes, keys.version, keys.removed, keys.announced]
        args: list[Arg] = [name, queue, now_arg(now_ms), TOMBSTONE_KEEP_MS, BATCH]
        return self._call("unindex_schedule", schedules_keys, args, int)

    def acquire_scheduler_lease(
        self, keys: SchedulesKeys, *, holder: str, lease_ms: int, now_ms: int | None
    ) -> ScriptCall[tuple[int, int] | None]:
        """(fence, deadline_ms), or None when another holder has the lease."""
        args: list[Arg] = [holder, max(0, lease_ms), now_arg(now_ms)]
        return self._call(
            "acquire_scheduler_lease", [keys.leader, keys.fence], args, schedule_replies.lease
        )

    def release_scheduler_lease(self, keys: SchedulesKeys, *, holder: str) -> ScriptCall[bool]:
        return self._call("release_scheduler_lease", [keys.leader], [holder], bool)

    # -- a schedule's queue slot ----------------------------------------------
    def create_schedule(
        self, keys: ScheduleKeys, *, definition: bytes, now_ms: int | None
    ) -> ScriptCall[RecordReply | None]:
        """None when a record exists."""
        args: list[Arg] = [definition, now_arg(now_ms)]
        return self._call("create_schedule", keys.all, args, schedule_replies.created)

    def update_schedule(
        self, keys: ScheduleKeys, *, definition: bytes, now_ms: int | None, reset_ticks: bool
    ) -> ScriptCall[RecordChange]:
        args: list[Arg] = [definition, now_arg(now_ms), int(reset_ticks)]
        return self._call(
            "update_schedule", [keys.record, keys.runs], args, schedule_replies.record_change
        )

    def set_schedule_paused(
        self,
        keys: ScheduleKeys,
        *,
        paused: bool,
        reason: str | None,
        now_ms: int | None,
        skipped: SkippedTicks | None,
    ) -> ScriptCall[RecordChange]:
        args: list[Arg] = [int(paused), reason or "", now_arg(now_ms), SCHEDULE_LOG_KEEP]
        args += _skip_values(skipped)
        schedule_keys = [keys.record, keys.runs, keys.skips]
        return self._call(
            "set_schedule_paused", schedule_keys, args, schedule_replies.record_change
        )

    def remove_schedule(self, keys: ScheduleKeys, *, moved_only: bool = False) -> ScriptCall[bool]:
        return self._call("remove_schedule", keys.all, [int(moved_only)], bool)

    def move_schedule_out(self, keys: ScheduleKeys, *, target: QueueName) -> ScriptCall[MoveState]:
        return self._call("move_schedule_out", keys.all, [target], schedule_replies.move_state)

    def move_schedule_in(
        self,
        keys: ScheduleKeys,
        *,
        state: ScheduleState,
        moved: MoveState,
        definition: bytes,
        now_ms: int | None,
        reset_ticks: bool,
    ) -> ScriptCall[RecordChange]:
        """`state`: the record `moved` took, read (its logs go as they were stored)."""
        buffered = "" if state.buffered_tick_ms is None else state.buffered_tick_ms
        args: list[Arg] = [definition, now_arg(now_ms), int(reset_ticks), int(state.paused)]
        args += [state.paused_reason or "", state.last_tick_ms, state.floor_ms, buffered]
        args += [state.created_at_ms, state.fired, state.skipped, state.rev]
        args += [len(moved.fired), *moved.fired, len(moved.runs), *moved.runs]
        args += [len(moved.skips), *moved.skips]
        return self._call("move_schedule_in", keys.all, args, schedule_replies.record_change)

    def advance_schedules(
        self,
        keys: QueueKeys,
        *,
        steps: Sequence[ScheduleStep],
        fence: int | None,
        now_ms: int | None,
    ) -> ScriptCall[list[TickOutcome]]:
        """Steps of schedules whose records are in this queue's slot, jobs checked."""
        queue_keys = [keys.schedule_fence, keys.ready, keys.delayed, keys.seq, keys.wake]
        queue_keys += [*keys.flow_keys, keys.workers, keys.idle, keys.dead, keys.outbox]
        args: list[Arg] = [keys.schedule_prefix, keys.schedule_fired_prefix]
        args += [keys.schedule_runs_prefix, keys.schedule_skips_prefix, keys.job_prefix]
        args += [PRIORITY_MAX, WAKE_CAP, "" if fence is None else fence, now_arg(now_ms)]
        args += [SCHEDULE_FIRED_KEEP, SCHEDULE_LOG_KEEP, keys.queue, *keys.flow_prefixes]
        args += [keys.done_prefix, keys.held_prefix, keys.inbox_prefix, BATCH, *self._dead_bounds]
        for step in steps:
            args += _step_values(step)
        queue_keys.append(keys.events)
        return self._call("advance_schedules", queue_keys, args, _outcomes)
