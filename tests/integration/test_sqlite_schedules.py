"""SQLite only: the schedule tables as another program may leave them, and the steps of a
long advance_schedules call.

A schedule row that cannot be read reads as absent (left out of lists, GONE for steps)
and costs only itself; creating its name again replaces it, and remove deletes it. A
damaged log row is left out of the history; a damaged lease or counter is made again
above every value in use, so no leader is fenced by a counter that went back.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest

from corq.backends.base import BATCH, NewJob, ScheduleStep, TickOutcome, TickStep
from corq.backends.sqlite import SqliteBackend, ticks
from corq.backends.sqlite.store import connect, transaction
from corq.backends.sqlite.url import parse_url
from corq.errors import EnqueueError
from tests.integration.sqlite_files import write_loose_schema, writer

T0 = 1_700_000_000_000
MINUTE = 60_000
ANY_VALUES: list[object] = [None, "", "text", b"\xff", 1.5, -1, 2**63 - 1, -(2**63), "9" * 5_000]


def _text(v: object) -> bool:
    return type(v) is str and v != ""


def _time(v: object) -> bool:
    return type(v) is int


def _count(v: object) -> bool:
    return type(v) is int and 0 <= v < 2**62


#: Per column of a schedule row, the values it may hold (any other is damage).
SCHEDULE_COLUMNS = {
    "queue": _text,
    "definition": lambda v: type(v) is bytes,
    "version": _count,
    "paused": lambda v: v in (0, 1) and type(v) is int,
    "paused_reason": lambda v: v is None or type(v) is str,
    "last_tick_ms": _time,
    "floor_ms": _time,
    "buffered_tick_ms": lambda v: v is None or type(v) is int,
    "created_at_ms": _time,
    "updated_at_ms": _time,
    "fired": _count,
    "skipped": _count,
}


def at(n: int) -> int:
    return T0 + n * MINUTE


def fire(name: str, tick_ms: int, queue: str = "q") -> ScheduleStep:
    job = NewJob(
        id=f"{name}@{tick_ms}",
        task="t",
        queue=queue,
        payload=b"{}",
        enqueued_at_ms=tick_ms,
        run_at_ms=tick_ms,
        schedule=name,
        tick_ms=tick_ms,
    )
    return ScheduleStep(schedule=name, step=TickStep.FIRE, tick_ms=tick_ms, job=job)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A file whose schema has no NOT NULL constraint (another writer's, or an edited one),
    so any value can sit in any column."""
    return write_loose_schema(tmp_path / "corq.db")


@pytest.fixture
async def backend(db: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(f"sqlite:///{db}")
    yield b
    await b.close()


def damage(db: Path, sql: str, *params: object) -> None:
    with writer(db) as conn, contextlib.suppress(sqlite3.IntegrityError):
        conn.execute(sql, params)


# -- damaged schedule rows ---------------------------------------------------------------


@pytest.mark.parametrize("column", SCHEDULE_COLUMNS)
async def test_a_damaged_schedule_reads_as_absent_and_costs_only_itself(
    db: Path, column: str
) -> None:
    damaged = 0
    for n, value in enumerate(ANY_VALUES):
        b = SqliteBackend(f"sqlite:///{db}")
        try:
            damaged += await _damaged_schedule_reads_as_absent(b, db, f"s{n}", column, value)
        finally:
            await b.close()
    assert damaged > 0


async def _damaged_schedule_reads_as_absent(
    b: SqliteBackend, db: Path, name: str, column: str, value: object
) -> bool:
    """False when the value, as the column stores it, is no damage (nothing checked)."""
    # Given a schedule and its healthy twin, the first damaged by another program
    twin = f"{name}-ok"
    for schedule in (name, twin):
        assert await b.add_schedule(schedule, "q", b"{}", T0) is not None
    damage(db, f"UPDATE schedules SET {column} = ? WHERE name = ?", value, name)
    with writer(db) as conn:  # (a TEXT column stores 1.5 as '1.5', say)
        (stored,) = conn.execute(
            f"SELECT {column} FROM schedules WHERE name = ?", (name,)
        ).fetchone()
    if SCHEDULE_COLUMNS[column](stored):
        return False

    # Then every read leaves it out, and its steps are GONE; the twin goes on
    assert await b.get_schedule(name) is None, (column, value)
    ours = (name, twin)
    assert [s.name for s in await b.list_schedules() if s.name in ours] == [twin]
    assert [s.name for s in (await b.changed_schedules(0)).changed if s.name in ours] == [twin]
    assert await b.set_schedule_paused(name, True, "x", at(1)) is None
    assert await b.update_schedule(name, "q", b"{}", at(1)) is None
    outcomes = await b.advance_schedules([fire(name, at(1)), fire(twin, at(1))], 1, at(1))
    assert outcomes == [TickOutcome.GONE, TickOutcome.DONE]
    await b.schedule_history(name)
    await b.schedules_version()

    # And adding the name again replaces it with a fresh schedule
    again = await b.add_schedule(name, "q", b"{}", at(2))
    assert again is not None
    assert (again.last_tick_ms, again.fired) == (at(2), 0)
    damage(db, f"UPDATE schedules SET {column} = ? WHERE name = ?", value, name)
    assert await b.remove_schedule(name) is True
    assert await b.remove_schedule(name) is False
    return True


async def test_damaged_log_rows_are_left_out_of_the_history(
    backend: SqliteBackend, db: Path
) -> None:
    assert await backend.add_schedule("s", "q", b"{}", T0) is not None
    skip = ScheduleStep(schedule="s", step=TickStep.SKIP, tick_ms=at(3), reason="x")
    steps = [fire("s", at(1)), fire("s", at(2)), skip]
    assert await backend.advance_schedules(steps, 1, at(3)) == [TickOutcome.DONE] * 3
    damage(db, "UPDATE schedule_runs SET job_id = ? WHERE tick_ms = ?", b"\xff", at(2))
    damage(db, "UPDATE schedule_skips SET count = ?", "many")

    runs, skips = await backend.schedule_history("s")

    assert [r.tick_ms for r in runs] == [at(1)]
    assert skips == []
    # the latest run is damaged: the record shows none, and still reads
    found = await backend.get_schedule("s")
    assert found is not None
    assert found.last_run is None


# -- damaged lease and counters ----------------------------------------------------------


@pytest.mark.parametrize("column", ["holder", "fence", "deadline_ms"])
async def test_a_damaged_lease_is_free_and_taken_under_a_higher_fence(
    db: Path, column: str
) -> None:
    for n, value in enumerate(ANY_VALUES):
        b = SqliteBackend(f"sqlite:///{db}")
        now = at(n)  # after the leases of the rounds before
        try:
            first = await b.acquire_scheduler_lease("s1", 1_000, now)
            assert first is not None
            damage(db, f"UPDATE scheduler_lease SET {column} = ?", value)
            await b.scheduler_lease()
            taken = await b.acquire_scheduler_lease("s2", 1_000, now + 1)
            if taken is not None:  # the damage left a lease that still holds
                assert taken.fence > first.fence, (column, value)
            await b.release_scheduler_lease("s1")
            await b.release_scheduler_lease("s2")
        finally:
            await b.close()


async def test_a_lost_fence_counter_never_hands_out_a_fence_that_is_fenced(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a leader of fence 1 whose steps wrote, then the counter and the lease are lost
    assert await backend.add_schedule("s", "q", b"{}", T0) is not None
    lease = await backend.acquire_scheduler_lease("s1", 1_000, T0)
    assert lease is not None
    assert await backend.advance_schedules([fire("s", at(1))], lease.fence, at(1)) == [
        TickOutcome.DONE
    ]
    damage(db, "DELETE FROM meta WHERE key = 'scheduler_fence'")
    damage(db, "DELETE FROM scheduler_lease")

    # When the next leader takes the lease, its fence is above every one seen
    new = await backend.acquire_scheduler_lease("s2", 1_000, at(2))
    assert new is not None
    assert new.fence > lease.fence
    assert await backend.advance_schedules([fire("s", at(2))], new.fence, at(2)) == [
        TickOutcome.DONE
    ]


@pytest.mark.parametrize("value", [None, "text", -1])
async def test_a_lost_version_counter_goes_on_above_every_version_in_use(
    backend: SqliteBackend, db: Path, value: object
) -> None:
    for name in ("a", "b"):
        assert await backend.add_schedule(name, "q", b"{}", T0) is not None
    assert await backend.remove_schedule("b") is True
    seen = await backend.schedules_version()
    if value is None:
        damage(db, "DELETE FROM meta WHERE key = 'schedules_version'")
    else:
        damage(db, "UPDATE meta SET value = ? WHERE key = 'schedules_version'", value)

    assert await backend.schedules_version() == seen
    changed = await backend.update_schedule("a", "q", b"[]", at(1))

    assert changed is not None
    assert changed.version == seen + 1 == await backend.schedules_version()
    assert [s.name for s in (await backend.changed_schedules(seen)).changed] == ["a"]


@pytest.mark.parametrize("value", [None, "text"])
async def test_a_lost_step_fence_lets_every_fence_write(
    backend: SqliteBackend, db: Path, value: object
) -> None:
    assert await backend.add_schedule("s", "q", b"{}", T0) is not None
    await backend.advance_schedules([fire("s", at(1))], 5, at(1))
    if value is None:
        damage(db, "DELETE FROM meta WHERE key = 'schedule_fence'")
    else:
        damage(db, "UPDATE meta SET value = ? WHERE key = 'schedule_fence'", value)

    assert await backend.advance_schedules([fire("s", at(2))], 2, at(2)) == [TickOutcome.DONE]
    assert await backend.advance_schedules([fire("s", at(3))], 1, at(3)) == [TickOutcome.FENCED]


# -- long calls --------------------------------------------------------------------------


async def test_a_job_in_the_wrong_queue_in_a_later_batch_still_writes_nothing(
    backend: SqliteBackend,
) -> None:
    # Given one more step than a transaction takes, the last one's job in another queue
    assert await backend.add_schedule("s", "q", b"{}", T0) is not None
    steps = [fire("s", at(n)) for n in range(1, BATCH + 1)]
    steps.append(fire("s", at(BATCH + 1), queue="other"))

    with pytest.raises(EnqueueError, match="is not the queue of schedule"):
        await backend.advance_schedules(steps, 1, at(1))

    found = await backend.get_schedule("s")
    assert found is not None
    assert (found.last_tick_ms, found.fired) == (T0, 0)
    assert await backend.get_job(f"s@{at(1)}", "q") is None


async def test_a_step_whose_schedule_moved_since_the_check_is_gone(
    backend: SqliteBackend, db: Path
) -> None:
    """A later transaction of a long call no longer checks the queues: a schedule moved
    between two of them is GONE for its steps that name the old queue, as on Redis."""
    assert await backend.add_schedule("s", "q", b"{}", T0) is not None
    assert await backend.update_schedule("s", "other", b"{}", T0) is not None
    conn = connect(parse_url(f"sqlite:///{db}"), 5_000)
    try:
        step = partial(
            ticks.advance_steps, steps=[fire("s", at(1))], fence=1, now_ms=at(1), check_queues=[]
        )
        advanced = transaction(conn, step, write=True)
    finally:
        conn.close()

    assert advanced.outcomes == [TickOutcome.GONE]
    assert await backend.get_job(f"s@{at(1)}", "q") is None
