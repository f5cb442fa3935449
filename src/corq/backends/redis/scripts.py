"""Typed wrappers of the Lua scripts in ``lua/``: one method per script, named like its file.

A wrapper does not talk to Redis: it packs its named parameters into KEYS/ARGV and returns
a :class:`ScriptCall` that knows how to parse the reply. :meth:`Scripts.run` runs one call
(EVALSHA, loading the script again if Redis answers NOSCRIPT, e.g. after a restart or a
``SCRIPT FLUSH``); :meth:`Scripts.run_all` sends many in one pipeline round trip, which is
how operations spanning queues or big batches stay a single round trip.

Scripts share code through includes: a line ``--- @include "name"`` is replaced, when the
script is loaded, by ``lua/include/name.lua`` (itself expanded; each include at most once
per script, where it is first named), so the promote step, record checks and dead-letter
bounds are written once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from operator import attrgetter
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from corq.backends.base import (
    BATCH,
    PRIORITY_MAX,
    PRIORITY_MIN,
    SCHEDULE_FIRED_KEEP,
    SCHEDULE_LOG_KEEP,
    ClaimBatch,
    Failure,
    NewJob,
    Release,
    ScheduleStep,
    SkippedTicks,
    TickOutcome,
)
from corq.backends.record import FIELDS_BY_NAME, NEW_FIELDS
from corq.backends.redis import replies, schedule_replies
from corq.backends.redis.fields import fields_include
from corq.backends.redis.keys import QueueKeys, ScheduleKeys, SchedulesKeys
from corq.backends.redis.replies import HeldStep, Promoted, QueueCounts, StalledBatch
from corq.backends.redis.schedule_replies import (
    MoveState,
    RecordChange,
    RecordReply,
    ScheduleState,
)
from corq.types import JobId, QueueName, WorkerId

T = TypeVar("T")
Item = TypeVar("Item")
Arg = str | bytes | int

#: Longest a queue's wake list may grow: enough to wake every idle worker of a big pool,
#: small enough that a burst of enqueues does not leave thousands of stale tokens.
WAKE_CAP = 64
#: Payload (or result) bytes per script call, so big payloads make smaller calls.
BATCH_BYTES = 4 * 1024 * 1024
#: How long the snapshot behind one ``retry_dead`` of all dead letters is kept at most.
SNAPSHOT_TTL_MS = 3600 * 1000
_INCLUDE = re.compile(r'^--- @include "(\w+)"$', re.MULTILINE)


def chunks(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batches(indices: list[int], size_of: Callable[[int], int]) -> Iterator[list[int]]:
    """Cut `indices` into runs of at most BATCH items and (roughly) BATCH_BYTES bytes."""
    batch: list[int] = []
    total = 0
    for index in indices:
        size = size_of(index)
        if batch and (len(batch) == BATCH or total + size > BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(index)
        total += size
    if batch:
        yield batch


def by_queue(
    items: Sequence[Item], queue_of: Callable[[Item], QueueName]
) -> dict[QueueName, list[int]]:
    """Indices of `items` per queue, in order (one script call serves one queue)."""
    groups: dict[QueueName, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(queue_of(item), []).append(index)
    return groups


def lua_file(path: str) -> str:
    """The text of a file under ``lua/``."""
    return resources.files("corq.backends.redis").joinpath(f"lua/{path}").read_text("utf-8")


#: Includes made from Python definitions rather than read from ``lua/include/``.
GENERATED_INCLUDES: dict[str, Callable[[], str]] = {"fields": fields_include}


def include_source(name: str) -> str:
    """The text of the include `name` (generated, or ``lua/include/<name>.lua``)."""
    generated = GENERATED_INCLUDES.get(name)
    if generated is not None:
        return generated()
    try:
        return lua_file(f"include/{name}.lua")
    except FileNotFoundError:
        raise ValueError(f"no Lua include named {name!r} (lua/include/{name}.lua)") from None


def expand_includes(text: str, origin: str) -> str:
    """`text` (the script `origin`) with each ``--- @include "name"`` line replaced by that
    include, itself expanded; an include already expanded above becomes a comment."""
    seen: set[str] = set()

    def expand(text: str, where: str) -> str:
        def include(match: re.Match[str]) -> str:
            included = match.group(1)
            if included in seen:
                return f"-- ({included} is included above)"
            seen.add(included)
            try:
                return expand(include_source(included), included)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None

        return _INCLUDE.sub(include, text)

    return expand(text, origin)


def load_source(name: str) -> str:
    """The script ``lua/<name>.lua`` with its includes expanded."""
    return expand_includes(lua_file(f"{name}.lua"), name)


@dataclass(frozen=True, slots=True)
class ScriptCall(Generic[T]):
    """One script invocation, ready to run alone or in a pipeline."""

    script: AsyncScript
    keys: list[str]
    args: list[Arg]
    parse: Callable[[Any], T]


@dataclass(frozen=True, slots=True)
class DeadBounds:
    """How many dead letters a queue keeps, and how long (0: no bound)."""

    max_count: int = 0
    ttl_ms: int = 0


def _packer() -> Callable[[NewJob], tuple[Arg, ...]]:
    """How a new job's values are packed, in NEW_FIELDS order, as enqueue_jobs.lua takes
    them: '' for an optional one left unset (None); as they are when no NEW field is
    optional (enqueue packs thousands)."""
    attributes: Callable[[NewJob], tuple[Any, ...]] = attrgetter(*NEW_FIELDS)
    if all(FIELDS_BY_NAME[name].default is not None for name in NEW_FIELDS):
        return attributes

    def pack(job: NewJob) -> tuple[Arg, ...]:
        return tuple("" if value is None else value for value in attributes(job))

    return pack


_new_values = _packer()


def _now(now_ms: int | None) -> Arg:
    """'' asks the script for the broker's own clock (Redis TIME)."""
    return "" if now_ms is None else now_ms


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
    return [*values, 1, *_new_values(step.job)]


def _outcomes(reply: list[bytes]) -> list[TickOutcome]:
    return [TickOutcome(value.decode()) for value in reply]


class Scripts:
    """The scripts, registered on one client (their SHA1s are computed once)."""

    def __init__(self, client: Redis, dead: DeadBounds | None = None) -> None:
        self._client = client
        self._loaded: dict[str, AsyncScript] = {}
        self._dead = dead or DeadBounds()

    def _call(
        self, name: str, keys: list[str], args: list[Arg], parse: Callable[[Any], T]
    ) -> ScriptCall[T]:
        script = self._loaded.get(name)
        if script is None:
            script = self._loaded[name] = self._client.register_script(load_source(name))
        return ScriptCall(script, keys, args, parse)

    @property
    def _dead_bounds(self) -> list[Arg]:
        return [self._dead.max_count, self._dead.ttl_ms]

    async def run(self, call: ScriptCall[T]) -> T:
        """EVALSHA one call (redis-py loads the script on NOSCRIPT and retries once)."""
        return call.parse(await call.script(keys=call.keys, args=call.args))

    async def run_all(self, calls: Sequence[ScriptCall[T]]) -> list[T]:
        """Run the calls in one pipeline round trip (no MULTI: each script is atomic)."""
        if len(calls) <= 1:
            return [await self.run(call) for call in calls]
        async with self._client.pipeline(transaction=False) as pipe:
            for call in calls:
                await call.script(keys=call.keys, args=call.args, client=pipe)
            replies = await pipe.execute()
        return [call.parse(reply) for call, reply in zip(calls, replies, strict=True)]

    # -- one wrapper per lua/*.lua ----------------------------------------------------
    def enqueue_jobs(self, keys: QueueKeys, *, jobs: Sequence[NewJob]) -> ScriptCall[list[bool]]:
        args: list[Arg] = [keys.job_prefix, PRIORITY_MAX, WAKE_CAP]
        for job in jobs:
            args += _new_values(job)
        queue_keys = [keys.ready, keys.delayed, keys.seq, keys.wake]
        return self._call("enqueue_jobs", queue_keys, args, replies.flags)

    def claim_jobs(
        self,
        keys: QueueKeys,
        *,
        holder: WorkerId,
        count: int,
        suspects: int,
        lease_ms: int,
        now_ms: int | None,
    ) -> ScriptCall[ClaimBatch]:
        queue_keys = [keys.workers, keys.ready, keys.delayed, keys.seq, keys.wake]
        queue_keys += [keys.held(holder), keys.suspects, keys.dead]
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, holder, max(0, count)]
        args += [max(0, suspects), lease_ms, _now(now_ms), BATCH, PRIORITY_MIN, PRIORITY_MAX]
        args += [*self._dead_bounds, keys.queue]
        return self._call("claim_jobs", queue_keys, args, replies.claim_batch)

    def list_held_jobs(
        self, keys: QueueKeys, *, holder: WorkerId, cursor: str
    ) -> ScriptCall[HeldStep]:
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, holder, cursor, BATCH]
        args += self._dead_bounds
        return self._call("list_held_jobs", [keys.held(holder), keys.dead], args, replies.held_step)

    def promote_due_jobs(self, keys: QueueKeys, *, now_ms: int | None) -> ScriptCall[Promoted]:
        queue_keys = [keys.delayed, keys.ready, keys.seq, keys.wake, keys.suspects, keys.dead]
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, _now(now_ms), BATCH]
        args += [PRIORITY_MIN, PRIORITY_MAX, WAKE_CAP, *self._dead_bounds]
        return self._call("promote_due_jobs", queue_keys, args, replies.promoted)

    def complete_jobs(
        self,
        keys: QueueKeys,
        *,
        holder: WorkerId,
        jobs: Sequence[tuple[JobId, int, bytes, int]],
        result_ttl_ms: int,
    ) -> ScriptCall[list[bool]]:
        """`jobs`: (id, fence, result, finished_at_ms) each."""
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, holder, result_ttl_ms]
        for job_id, fence, result, finished_at_ms in jobs:
            args += [job_id, fence, result, finished_at_ms]
        return self._call("complete_jobs", [keys.held(holder)], args, replies.flags)

    def fail_jobs(
        self, keys: QueueKeys, *, holder: WorkerId, failures: Sequence[Failure]
    ) -> ScriptCall[list[bool]]:
        args: list[Arg] = [keys.job_prefix, keys.done_prefix, holder, WAKE_CAP, BATCH]
        args += self._dead_bounds
        for f in failures:
            retry_at = "" if f.retry_at_ms is None else f.retry_at_ms
            args += [f.job_id, f.fence, int(f.counted), int(f.died), f.error, f.traceback or ""]
            args += [retry_at, f.finished_at_ms]
        queue_keys = [keys.held(holder), keys.delayed, keys.dead, keys.wake]
        return self._call("fail_jobs", queue_keys, args, replies.flags)

    def release_jobs(
        self, keys: QueueKeys, *, holder: WorkerId, releases: Sequence[Release]
    ) -> ScriptCall[list[bool]]:
        args: list[Arg] = [keys.job_prefix, holder, WAKE_CAP]
        for r in releases:
            args += [r.job_id, r.fence, int(r.unstarted), int(r.died), int(r.suspect)]
        queue_keys = [keys.held(holder), keys.ready, keys.wake, keys.suspects]
        return self._call("release_jobs", queue_keys, args, replies.flags)

    def reclaim_stalled_jobs(
        self,
        keys: QueueKeys,
        *,
        now_ms: int | None,
        max_deaths: int,
        backstop: int,
        ended_only: bool,
    ) -> ScriptCall[StalledBatch]:
        queue_keys = [keys.workers, keys.ready, keys.dead, keys.wake, keys.suspects]
        queue_keys += [keys.departed, keys.reclaiming]
        args: list[Arg] = [keys.job_prefix, keys.held_prefix, keys.reclaim_prefix]
        args += [keys.done_prefix, _now(now_ms), max_deaths, backstop, BATCH, WAKE_CAP]
        args += [int(ended_only), *self._dead_bounds]
        return self._call("reclaim_stalled_jobs", queue_keys, args, replies.stalled)

    def register_worker(
        self, keys: QueueKeys, *, holder: WorkerId, now_ms: int | None, lease_ms: int
    ) -> ScriptCall[int]:
        args: list[Arg] = [holder, _now(now_ms), lease_ms]
        return self._call("register_worker", [keys.workers, keys.departed], args, int)

    def heartbeat_worker(
        self, keys: QueueKeys, *, holder: WorkerId, now_ms: int | None, lease_ms: int
    ) -> ScriptCall[bool]:
        args: list[Arg] = [holder, _now(now_ms), lease_ms]
        return self._call("heartbeat_worker", [keys.workers], args, bool)

    def deregister_worker(
        self, keys: QueueKeys, *, holder: WorkerId, now_ms: int | None, linger_ms: int
    ) -> ScriptCall[int]:
        queue_keys = [keys.workers, keys.held(holder), keys.departed]
        args: list[Arg] = [holder, _now(now_ms), max(0, linger_ms)]
        return self._call("deregister_worker", queue_keys, args, int)

    def end_leases(
        self, keys: QueueKeys, *, worker_prefix: str, holder: WorkerId
    ) -> ScriptCall[int]:
        return self._call("end_leases", [keys.workers], [worker_prefix, holder], int)

    def cancel_job(
        self, keys: QueueKeys, *, job_id: JobId, now_ms: int | None, ttl_ms: int
    ) -> ScriptCall[bool]:
        queue_keys = [keys.job(job_id), keys.ready, keys.delayed, keys.suspects]
        args: list[Arg] = [job_id, keys.done(job_id), _now(now_ms), ttl_ms]
        return self._call("cancel_job", queue_keys, args, bool)

    def set_progress(
        self, keys: QueueKeys, *, job_id: JobId, holder: WorkerId, fence: int, progress: float
    ) -> ScriptCall[bool]:
        args: list[Arg] = [holder, fence, repr(float(progress))]
        return self._call("set_progress", [keys.job(job_id)], args, bool)

    def retry_dead_jobs(
        self,
        keys: QueueKeys,
        *,
        job_ids: Sequence[JobId],
        now_ms: int | None,
        snapshot: str | None = None,
        take_snapshot: bool = False,
    ) -> ScriptCall[tuple[int, int]]:
        """The `job_ids`, or (with `snapshot`) the next BATCH ids of that snapshot of the dead
        letters, taken now when `take_snapshot`. Returns (moved, looked at)."""
        queue_keys = [keys.dead, keys.ready, keys.seq, keys.wake]
        if snapshot is not None:
            queue_keys.append(snapshot)
        ttl_ms = SNAPSHOT_TTL_MS if take_snapshot else 0
        args: list[Arg] = [keys.job_prefix, _now(now_ms), PRIORITY_MIN, PRIORITY_MAX, WAKE_CAP]
        args += [BATCH, ttl_ms, *job_ids]
        return self._call("retry_dead_jobs", queue_keys, args, replies.pair)

    def purge_dead_jobs(
        self, keys: QueueKeys, *, job_ids: Sequence[JobId]
    ) -> ScriptCall[tuple[int, int]]:
        """No `job_ids`: the BATCH oldest dead jobs. Returns (purged, looked at)."""
        return self._call(
            "purge_dead_jobs", [keys.dead], [keys.job_prefix, BATCH, *job_ids], replies.pair
        )

    def count_queue_jobs(self, keys: QueueKeys) -> ScriptCall[QueueCounts]:
        queue_keys = [keys.ready, keys.delayed, keys.dead, keys.workers, keys.suspects]
        queue_keys.append(keys.reclaiming)
        args: list[Arg] = [keys.held_prefix, keys.reclaim_prefix]
        return self._call("count_queue_jobs", queue_keys, args, replies.counts)

    def prune_queue(self, keys: QueueKeys) -> ScriptCall[bool]:
        queue_keys = [keys.ready, keys.delayed, keys.suspects, keys.dead, keys.workers]
        queue_keys += [keys.reclaiming, keys.seq, keys.wake, keys.departed]
        return self._call("prune_queue", queue_keys, [], bool)

    def touch_queues(
        self, registry: str, *, names: Sequence[QueueName], now_ms: int | None
    ) -> ScriptCall[int]:
        return self._call("touch_queues", [registry], [_now(now_ms), *names], int)

    def forget_queues(
        self, registry: str, *, names: Sequence[bytes], cutoff_ms: int
    ) -> ScriptCall[list[bytes]]:
        return self._call("forget_queues", [registry], [cutoff_ms, *names], replies.names)

    # -- schedules: the {schedules} slot -------------------------------------------------
    def reserve_schedule_name(
        self, keys: SchedulesKeys, *, name: str, queue: QueueName, stale: QueueName | None
    ) -> ScriptCall[QueueName | None]:
        args: list[Arg] = [name, queue, stale or ""]
        return self._call("reserve_schedule_name", [keys.index], args, schedule_replies.reserved)

    def note_schedule_change(
        self, keys: SchedulesKeys, *, name: str, queue: QueueName | None, now_ms: int | None
    ) -> ScriptCall[int]:
        """`queue`: where the index must point now (a move), None to leave it."""
        schedules_keys = [keys.index, keys.changes, keys.version, keys.removed]
        args: list[Arg] = [name, queue or "", _now(now_ms)]
        return self._call("note_schedule_change", schedules_keys, args, int)

    def unindex_schedule(
        self, keys: SchedulesKeys, *, name: str, queue: QueueName, now_ms: int | None
    ) -> ScriptCall[int]:
        schedules_keys = [keys.index, keys.changes, keys.version, keys.removed]
        args: list[Arg] = [name, queue, _now(now_ms), TOMBSTONE_KEEP_MS, BATCH]
        return self._call("unindex_schedule", schedules_keys, args, int)

    def acquire_scheduler_lease(
        self, keys: SchedulesKeys, *, holder: str, lease_ms: int, now_ms: int | None
    ) -> ScriptCall[tuple[int, int] | None]:
        """(fence, deadline_ms), or None when another holder has the lease."""
        args: list[Arg] = [holder, max(0, lease_ms), _now(now_ms)]
        return self._call(
            "acquire_scheduler_lease", [keys.leader, keys.fence], args, schedule_replies.lease
        )

    def release_scheduler_lease(self, keys: SchedulesKeys, *, holder: str) -> ScriptCall[bool]:
        return self._call("release_scheduler_lease", [keys.leader], [holder], bool)

    # -- schedules: a schedule's queue slot ----------------------------------------------
    def create_schedule(
        self, keys: ScheduleKeys, *, definition: bytes, now_ms: int | None
    ) -> ScriptCall[RecordReply | None]:
        """None when a record exists."""
        args: list[Arg] = [definition, _now(now_ms)]
        return self._call("create_schedule", keys.all, args, schedule_replies.created)

    def update_schedule(
        self, keys: ScheduleKeys, *, definition: bytes, now_ms: int | None, reset_ticks: bool
    ) -> ScriptCall[RecordChange]:
        args: list[Arg] = [definition, _now(now_ms), int(reset_ticks)]
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
        args: list[Arg] = [int(paused), reason or "", _now(now_ms), SCHEDULE_LOG_KEEP]
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
        args: list[Arg] = [definition, _now(now_ms), int(reset_ticks), int(state.paused)]
        args += [state.paused_reason or "", state.last_tick_ms, state.floor_ms, buffered]
        args += [state.created_at_ms, state.fired, state.skipped]
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
        args: list[Arg] = [keys.schedule_prefix, keys.schedule_fired_prefix]
        args += [keys.schedule_runs_prefix, keys.schedule_skips_prefix, keys.job_prefix]
        args += [PRIORITY_MAX, WAKE_CAP, "" if fence is None else fence, _now(now_ms)]
        args += [SCHEDULE_FIRED_KEEP, SCHEDULE_LOG_KEEP, keys.queue]
        for step in steps:
            args += _step_values(step)
        return self._call("advance_schedules", queue_keys, args, _outcomes)
