"""The ScheduleStore port on SQLite: schedules, their firing state, the scheduler lease.

One row per schedule (``schedules``) holds the definition and the firing state; the fired
ticks, the runs and the skips have tables of their own, bounded per schedule; removals
leave a tombstone for a day so readers of changes learn of them. Each call is one
transaction (``advance_schedules`` one per BATCH steps, see ticks.py).

A schedule row that cannot be read (another program wrote it) reads as absent: reads leave
it out, pause and update find nothing, steps get GONE; creating the name again (add, or
update with ``create``) replaces it with a fresh schedule, and remove deletes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

from corq.backends.base import (
    BATCH,
    ScheduleChanges,
    ScheduleRecord,
    SchedulerLease,
    ScheduleRun,
    ScheduleStep,
    SkippedTicks,
    TickOutcome,
)
from corq.backends.sqlite import schedule_rows as rows
from corq.backends.sqlite import ticks
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock, machine_now_ms
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.types import QueueName

#: How long a removal is remembered for readers of changes (a scheduler polls every second).
TOMBSTONE_TTL_MS = 24 * 3600 * 1000


class SqliteSchedules:
    """The ScheduleStore methods of SqliteBackend, on its connection thread."""

    _thread: ConnectionThread

    async def add_schedule(
        self, name: str, queue: QueueName, definition: bytes, now_ms: int | None
    ) -> ScheduleRecord | None:
        return await self._thread.run(
            partial(add_schedule, name=name, queue=queue, definition=definition, now_ms=now_ms)
        )

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
        change = Definition(
            name=name, queue=queue, definition=definition, create=create, reset_ticks=reset_ticks
        )
        return await self._thread.run(partial(update_schedule, change=change, now_ms=now_ms))

    async def remove_schedule(self, name: str) -> bool:
        return await self._thread.run(partial(remove_schedule, name=name))

    async def set_schedule_paused(
        self,
        name: str,
        paused: bool,
        reason: str | None,
        now_ms: int | None,
        *,
        skipped: SkippedTicks | None = None,
    ) -> ScheduleRecord | None:
        pause = partial(
            set_schedule_paused,
            name=name,
            paused=paused,
            reason=reason,
            now_ms=now_ms,
            skipped=skipped,
        )
        return await self._thread.run(pause)

    async def get_schedule(self, name: str) -> ScheduleRecord | None:
        return await self._thread.run(partial(rows.read_schedule, name=name), Tx.READ)

    async def list_schedules(self) -> list[ScheduleRecord]:
        """One read transaction: a WAL reader holds up no writer, and one snapshot lists
        every schedule exactly once."""
        return await self._thread.run(
            partial(rows.read_schedules, statement="schedules_all"), Tx.READ
        )

    async def schedules_version(self) -> int:
        return await self._thread.run(rows.current_version, Tx.READ)

    async def changed_schedules(self, since_version: int) -> ScheduleChanges:
        """One read transaction, as list_schedules."""
        return await self._thread.run(partial(changed_schedules, since=since_version), Tx.READ)

    async def schedule_history(
        self, name: str, limit: int = 50
    ) -> tuple[list[ScheduleRun], list[SkippedTicks]]:
        return await self._thread.run(partial(rows.history, name=name, limit=limit), Tx.READ)

    async def advance_schedules(
        self, steps: Sequence[ScheduleStep], fence: int | None, now_ms: int | None
    ) -> list[TickOutcome]:
        """Steps checked first (ValueError, EnqueueError), then applied BATCH at a time, one
        transaction each, all at the first one's time; the first also checks every job's
        queue against its schedule's before it writes (see ticks.py)."""
        steps = list(steps)
        ticks.check_steps(steps, fence)
        outcomes: list[TickOutcome] = []
        for start in range(0, len(steps), BATCH):
            chunk = partial(
                ticks.advance_steps,
                steps=steps[start : start + BATCH],
                fence=fence,
                now_ms=now_ms,
                check_queues=steps if start == 0 else [],
            )
            advanced = await self._thread.run(chunk)
            outcomes += advanced.outcomes
            now_ms = advanced.now_ms
        return outcomes

    async def acquire_scheduler_lease(
        self, holder: str, lease_ms: int, now_ms: int | None
    ) -> SchedulerLease | None:
        return await self._thread.run(
            partial(acquire_scheduler_lease, holder=holder, lease_ms=lease_ms, now_ms=now_ms)
        )

    async def release_scheduler_lease(self, holder: str) -> bool:
        return await self._thread.run(partial(release_scheduler_lease, holder=holder))

    async def scheduler_lease(self) -> SchedulerLease | None:
        return await self._thread.run(scheduler_lease, Tx.READ)


# -- definitions -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Definition:
    """What update_schedule was asked to write."""

    name: str
    queue: QueueName
    definition: bytes
    create: bool
    reset_ticks: bool


def _create(conn: Conn, name: str, queue: QueueName, definition: bytes, now: int) -> ScheduleRecord:
    """A new schedule whose ticks start after `now`, replacing a damaged row of the name
    (with what was kept under it) if there is one."""
    rows.forget(conn, name)
    record = ScheduleRecord(
        name=name,
        queue=queue,
        definition=definition,
        version=rows.take_version(conn),
        paused=False,
        paused_reason=None,
        last_tick_ms=now,
        floor_ms=0,
        buffered_tick_ms=None,
        created_at_ms=now,
        updated_at_ms=now,
        fired=0,
        skipped=0,
    )
    rows.put_schedule(conn, record)
    conn.execute(Q["schedule_untombstone"], {"name": name})
    return record


def add_schedule(
    conn: Conn, name: str, queue: QueueName, definition: bytes, now_ms: int | None
) -> ScheduleRecord | None:
    now, _ = advance_clock(conn, now_ms)
    if rows.read_schedule(conn, name) is not None:
        return None
    return _create(conn, name, queue, definition, now)


def update_schedule(conn: Conn, change: Definition, now_ms: int | None) -> ScheduleRecord | None:
    now, _ = advance_clock(conn, now_ms)
    current = rows.read_schedule(conn, change.name)
    if current is None:
        if not change.create:
            return None
        return _create(conn, change.name, change.queue, change.definition, now)
    if (current.queue, current.definition) == (change.queue, change.definition):
        return current
    last_tick_ms = max(current.last_tick_ms, now) if change.reset_ticks else current.last_tick_ms
    updated = replace(
        current,
        queue=change.queue,
        definition=change.definition,
        version=rows.take_version(conn),
        updated_at_ms=now,
        last_tick_ms=last_tick_ms,
    )
    rows.put_schedule(conn, updated)
    return updated


def remove_schedule(conn: Conn, name: str) -> bool:
    """Delete the row (damaged or not) with what is kept under its name; the tombstone
    carries a new version, and tombstones older than TOMBSTONE_TTL_MS go (BATCH at most)."""
    if not rows.exists(conn, name):
        return False
    conn.execute(Q["schedule_delete"], {"name": name})
    rows.forget(conn, name)
    now = machine_now_ms()
    version = rows.take_version(conn)
    conn.execute(Q["schedule_tombstone"], {"name": name, "version": version, "now": now})
    trim = {"before": now - TOMBSTONE_TTL_MS, "limit": BATCH}
    conn.execute(Q["schedule_tombstones_trim"], trim)
    return True


def set_schedule_paused(
    conn: Conn,
    name: str,
    paused: bool,
    reason: str | None,
    now_ms: int | None,
    skipped: SkippedTicks | None,
) -> ScheduleRecord | None:
    now, _ = advance_clock(conn, now_ms)
    current = rows.read_schedule(conn, name)
    if current is None or current.paused == paused:
        return current
    changed = replace(current, paused=paused, version=rows.take_version(conn), updated_at_ms=now)
    if paused:
        changed = replace(changed, paused_reason=reason)
    else:
        changed = replace(changed, paused_reason=None, last_tick_ms=max(current.last_tick_ms, now))
        if skipped is not None:
            rows.log_skip(conn, name, skipped)
            changed = replace(changed, skipped=current.skipped + skipped.count)
    rows.put_schedule(conn, changed)
    return changed


def changed_schedules(conn: Conn, since: int) -> ScheduleChanges:
    """Changes after `since`, and the version they bring the reader to (one snapshot)."""
    return ScheduleChanges(
        version=rows.current_version(conn),
        changed=rows.read_schedules(conn, "schedules_changed", since=since),
        removed=[
            name
            for (name,) in conn.execute(Q["schedules_removed_since"], {"since": since})
            if type(name) is str
        ],
    )


# -- the scheduler lease -----------------------------------------------------------------


def _lease(conn: Conn) -> SchedulerLease | None:
    """The lease row; None when there is none or it cannot be read (then it is free)."""
    row = conn.execute(Q["scheduler_lease_get"]).fetchone()
    if row is None:
        return None
    holder, fence, deadline_ms = row
    if type(holder) is not str or type(fence) is not int or type(deadline_ms) is not int:
        return None
    return SchedulerLease(holder=holder, fence=fence, deadline_ms=deadline_ms)


def acquire_scheduler_lease(
    conn: Conn, holder: str, lease_ms: int, now_ms: int | None
) -> SchedulerLease | None:
    """Renew a lease `holder` has (same fence), refuse one another holder has, else take
    it under the next fence."""
    now, _ = advance_clock(conn, now_ms)
    current = _lease(conn)
    if current is not None and now <= current.deadline_ms:
        if current.holder != holder:
            return None
        fence = current.fence
    else:
        fence = rows.take(conn, "scheduler_fence", "scheduler_fence_known")
    lease = SchedulerLease(holder=holder, fence=fence, deadline_ms=now + lease_ms)
    params = {"holder": holder, "fence": fence, "deadline_ms": lease.deadline_ms}
    conn.execute(Q["scheduler_lease_put"], params)
    return lease


def release_scheduler_lease(conn: Conn, holder: str) -> bool:
    return conn.execute(Q["scheduler_lease_release"], {"holder": holder}).rowcount == 1


def scheduler_lease(conn: Conn) -> SchedulerLease | None:
    """The lease, unless it passed by this machine's clock (the broker's)."""
    lease = _lease(conn)
    return lease if lease is not None and machine_now_ms() <= lease.deadline_ms else None
