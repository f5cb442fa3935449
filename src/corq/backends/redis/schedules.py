"""Schedules and their firing state (the ScheduleStore port, with ``ticks.py``): create,
update, move, pause, remove, read.

Each write is a fixed sequence of atomic scripts across the ``{schedules}`` slot and the
schedule's queue slot, in the order ``keys.py`` gives (create: index, record, version;
update or pause: record, version; remove: record, index; a new queue: the move protocol),
so a crash between two steps never leaves a schedule half-made or a tick fired twice. A
write that finds a move stopped after its first step finishes it before acting. Reads
resolve names as ``schedule_reads.py`` says; a damaged record is left out of listings
(logged), reported as removed by ``changed_schedules`` (nothing can fire it) and refused
by ``get_schedule`` with BrokerDataError. The scheduler's traffic (steps, the lease) is in
``ticks.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

from corq.backends.base import (
    BATCH,
    ScheduleChanges,
    ScheduleRecord,
    ScheduleRun,
    SkippedTicks,
)
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.keys import ScheduleKeys
from corq.backends.redis.schedule_reads import (
    Located,
    indexed_names,
    locate,
    locate_names,
)
from corq.backends.redis.schedule_replies import (
    DamagedScheduleError,
    RecordChange,
    RecordReply,
    decode_run,
    decode_skip,
    parse_state,
)
from corq.errors import BrokerDataError, BrokerError
from corq.types import QueueName

log = logging.getLogger(__name__)

#: How often a write looks again when a concurrent one moved or removed the schedule.
_ATTEMPTS = 3


def _damaged(name: str, problem: str) -> BrokerDataError:
    return BrokerDataError(f"redis: damaged schedule record {name!r}: {problem}")


def _busy(name: str) -> BrokerError:
    """Other writers moved or removed the schedule under each attempt: try again later."""
    return BrokerError(f"redis: schedule {name!r} kept changing while it was written")


class RedisSchedules(RedisContext):
    """Schedules in the broker (see the module docstring)."""

    def _sched(self, queue: QueueName, name: str) -> ScheduleKeys:
        return self._q(queue).schedule(name)

    async def _versioned(
        self,
        name: str,
        queue: QueueName,
        reply: RecordReply,
        now_ms: int | None,
        *,
        moved: bool = False,
    ) -> ScheduleRecord:
        """The record a change left, once the change has its version (with `moved`, the
        index is pointed at `queue` in the same step)."""
        state = parse_state(reply.fields)
        version = await self._note(name, state.rev, now_ms, queue if moved else None)
        return state.record(name, queue, version, decode_run(reply.last_run))

    async def _note(
        self, name: str, rev: int, now_ms: int | None, queue: QueueName | None = None
    ) -> int:
        """The version step of a change that left the record at `rev`."""
        call = self._scripts.note_schedule_change(
            self._keys.schedules, name=name, rev=rev, queue=queue, now_ms=now_ms
        )
        return await self._scripts.run(call)

    # -- writes ------------------------------------------------------------------------
    async def add_schedule(
        self, name: str, queue: QueueName, definition: bytes, now_ms: int | None
    ) -> ScheduleRecord | None:
        with broker_errors("add_schedule"):
            return await self._create(
                name, queue, definition, now_ms, await self._settled(name, now_ms)
            )

    async def _create(
        self, name: str, queue: QueueName, definition: bytes, now_ms: int | None, found: Located
    ) -> ScheduleRecord | None:
        """Index, record, version; None when the name exists (or another creator has it)."""
        if found.queue is not None:
            return None
        run = self._scripts.run
        sk = self._keys.schedules
        if await run(
            self._scripts.reserve_schedule_name(sk, name=name, queue=queue, stale=found.indexed)
        ):
            return None
        reply = await run(
            self._scripts.create_schedule(
                self._sched(queue, name), definition=definition, now_ms=now_ms
            )
        )
        if reply is None:
            return None
        return await self._versioned(name, queue, reply, now_ms)

    async def update_schedule(
        self,
        name: str,
        queue: QueueName,
        definition: bytes,
        now_ms: int | None,
        *,
        create: bool = False,
        reset_ticks: bool = False,
    ) -> ScheduleRecord | None:
        with broker_errors("update_schedule"):
            for _ in range(_ATTEMPTS):
                found = await self._settled(name, now_ms)
                if found.queue is None:
                    if not create:
                        return None
                    record = await self._create(name, queue, definition, now_ms, found)
                elif found.queue == queue:
                    record = await self._update_in_place(found, definition, now_ms, reset_ticks)
                else:
                    record = await self._move(found, queue, definition, now_ms, reset_ticks)
                if record is not None:
                    return record
        raise _busy(name)

    async def _update_in_place(
        self, found: Located, definition: bytes, now_ms: int | None, reset_ticks: bool
    ) -> ScheduleRecord | None:
        queue = cast(QueueName, found.queue)
        call = self._scripts.update_schedule(
            self._sched(queue, found.name),
            definition=definition,
            now_ms=now_ms,
            reset_ticks=reset_ticks,
        )
        return await self._changed(found, queue, await self._scripts.run(call), now_ms)

    async def _changed(
        self, found: Located, queue: QueueName, change: RecordChange, now_ms: int | None
    ) -> ScheduleRecord | None:
        """The record a record step left, versioned when it changed (or when its last change
        stopped before its version); None when the schedule moved or went meanwhile."""
        if change.status == "damaged":
            raise _damaged(found.name, change.detail)
        if change.reply is None:
            return None
        if change.status != "same" or found.unannounced:
            return await self._versioned(found.name, queue, change.reply, now_ms)
        state = parse_state(change.reply.fields)
        return state.record(found.name, queue, found.version, decode_run(change.reply.last_run))

    async def _move(
        self,
        found: Located,
        queue: QueueName,
        definition: bytes,
        now_ms: int | None,
        reset_ticks: bool,
    ) -> ScheduleRecord | None:
        """The move protocol (keys.py): out of the old slot, into the new one, index, then
        the old record's leftovers. None when the schedule moved or went meanwhile."""
        old = self._sched(cast(QueueName, found.queue), found.name)
        run = self._scripts.run
        moved = await run(self._scripts.move_schedule_out(old, target=queue))
        if moved.change.status == "damaged":
            raise _damaged(found.name, moved.change.detail)
        if moved.change.status != "moving":
            return None
        change = await run(
            self._scripts.move_schedule_in(
                self._sched(queue, found.name),
                state=parse_state(moved.fields),
                moved=moved,
                definition=definition,
                now_ms=now_ms,
                reset_ticks=reset_ticks,
            )
        )
        if change.status == "damaged" or change.reply is None:
            raise _damaged(found.name, f"in queue {queue!r}: {change.detail}")
        record = await self._versioned(found.name, queue, change.reply, now_ms, moved=True)
        await run(self._scripts.remove_schedule(old, moved_only=True))
        return record

    async def _settled(self, name: str, now_ms: int | None) -> Located:
        """Where the schedule is, after finishing a move that stopped between its steps."""
        found = await locate(self._redis, self._keys, name)
        state = found.state
        if state is None or found.queue is None:
            return found
        if found.indexed != found.queue:  # stopped after its second step
            await self._note(name, state.rev, now_ms, found.queue)
            indexed = cast(QueueName, found.indexed)
            await self._scripts.run(
                self._scripts.remove_schedule(self._sched(indexed, name), moved_only=True)
            )
        elif state.moved_to is not None:  # stopped after its first step
            await self._move(found, state.moved_to, state.definition, now_ms, False)
        else:
            return found
        return await locate(self._redis, self._keys, name)

    async def remove_schedule(self, name: str) -> bool:
        with broker_errors("remove_schedule"):
            found = await locate(self._redis, self._keys, name)
            if found.indexed is None:
                return False
            queues = {found.indexed}
            if found.queue is not None:
                queues.add(found.queue)
            await self._scripts.run_all(
                [self._scripts.remove_schedule(self._sched(q, name)) for q in sorted(queues)]
            )
            call = self._scripts.unindex_schedule(
                self._keys.schedules, name=name, queue=found.indexed, now_ms=None
            )
            await self._scripts.run(call)
            return found.queue is not None

    async def set_schedule_paused(
        self,
        name: str,
        paused: bool,
        reason: str | None,
        now_ms: int | None,
        *,
        skipped: SkippedTicks | None = None,
    ) -> ScheduleRecord | None:
        with broker_errors("set_schedule_paused"):
            for _ in range(_ATTEMPTS):
                found = await self._settled(name, now_ms)
                if found.queue is None:
                    return None
                if found.problem is not None:
                    raise _damaged(name, found.problem)
                call = self._scripts.set_schedule_paused(
                    self._sched(found.queue, name),
                    paused=paused,
                    reason=reason,
                    now_ms=now_ms,
                    skipped=skipped,
                )
                change = await self._scripts.run(call)
                record = await self._changed(found, found.queue, change, now_ms)
                if record is not None:
                    return record
        raise _busy(name)

    # -- reads -------------------------------------------------------------------------
    async def get_schedule(self, name: str) -> ScheduleRecord | None:
        with broker_errors("get_schedule"):
            found = await locate(self._redis, self._keys, name)
        if found.queue is None:
            return None
        try:
            return found.record()
        except DamagedScheduleError as exc:
            raise _damaged(name, str(exc)) from None

    async def list_schedules(self) -> list[ScheduleRecord]:
        records: list[ScheduleRecord] = []
        with broker_errors("list_schedules"):
            for names in await indexed_names(self._redis, self._keys, BATCH):
                records += self._readable(await locate_names(self._redis, self._keys, names))
        return sorted(records, key=lambda r: r.name)

    def _readable(self, found: Sequence[Located]) -> list[ScheduleRecord]:
        """The records of the schedules found; damaged ones are logged and left out."""
        records = []
        for f in found:
            if f.queue is None:
                continue
            try:
                records.append(f.record())
            except DamagedScheduleError as exc:
                log.warning(
                    "schedule %r in queue %r is damaged and left out: %s", f.name, f.queue, exc
                )
        return records

    async def schedules_version(self) -> int:
        with broker_errors("schedules_version"):
            value = await self._redis.get(self._keys.schedules.version)
        try:
            return int(value or 0)
        except ValueError:  # another program's: every change would be refused too
            raise BrokerDataError(
                f"redis: the schedules' change counter is not a number: {value!r}"
            ) from None

    async def changed_schedules(self, since_version: int) -> ScheduleChanges:
        with broker_errors("changed_schedules"):
            version = await self.schedules_version()
            if since_version <= 0:
                names = [
                    n for step in await indexed_names(self._redis, self._keys, BATCH) for n in step
                ]
            else:
                names = await self._changed_names(since_version, version)
            found: list[Located] = []
            for start in range(0, len(names), BATCH):
                found += await locate_names(self._redis, self._keys, names[start : start + BATCH])
        changed = self._readable(found)
        readable = {r.name for r in changed}
        removed = [
            f.name
            for f in found
            if f.indexed is None or (f.queue is not None and f.name not in readable)
        ]
        return ScheduleChanges(version=version, changed=changed, removed=removed)

    async def _changed_names(self, since_version: int, version: int) -> list[str]:
        """Names whose last change is in (since_version, version], in steps of BATCH."""
        names: list[str] = []
        low = f"({since_version}"
        while True:
            reply = await self._redis.zrangebyscore(
                self._keys.schedules.changes, low, version, start=0, num=BATCH, withscores=True
            )
            page = cast(list[tuple[bytes, float]], reply)
            names += [n for raw, _ in page if (n := _text(raw)) is not None]
            if len(page) < BATCH:
                return names
            low = f"({int(page[-1][1])}"

    async def schedule_history(
        self, name: str, limit: int = 50
    ) -> tuple[list[ScheduleRun], list[SkippedTicks]]:
        if limit <= 0:
            return [], []
        with broker_errors("schedule_history"):
            found = await locate(self._redis, self._keys, name)
            if found.queue is None:
                return [], []
            keys = self._sched(found.queue, name)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.lrange(keys.runs, 0, limit - 1)
                pipe.lrange(keys.skips, 0, limit - 1)
                runs, skips = await pipe.execute()
        return (
            [r for r in map(decode_run, runs) if r is not None],
            [s for s in map(decode_skip, skips) if s is not None],
        )


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")
