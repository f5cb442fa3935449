"""Schedule rows read without trusting them, written whole, and the counters they share.

Rows are read by column name (``sqlite3.Row``, from the ``schedule_rows`` view) and every
value is checked by its kind (``records.CHECKS_BY_KIND``) before anything is decided from
it. A schedule row that fails a check reads as absent (schedules.py says what each call
then does); a run or a skip that fails is left out of the history, and a latest run that
fails reads as none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from corq.backends.base import (
    SCHEDULE_FIRED_KEEP,
    SCHEDULE_LOG_KEEP,
    ScheduleRecord,
    ScheduleRun,
    SkippedTicks,
)
from corq.backends.record import Kind
from corq.backends.sqlite.records import CHECKS_BY_KIND
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn

Check = Callable[[object], bool]


def _any_text(value: object) -> bool:
    return type(value) is str


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


_TEXT, _INT, _COUNT = (
    CHECKS_BY_KIND[Kind.TEXT],
    CHECKS_BY_KIND[Kind.INT],
    CHECKS_BY_KIND[Kind.COUNT],
)
#: Per column of a schedule row, what its value must be.
_SCHEDULE_CHECKS: dict[str, Check] = {
    "name": _any_text,
    "queue": _TEXT,
    "definition": CHECKS_BY_KIND[Kind.BYTES],
    "version": _COUNT,
    "paused": CHECKS_BY_KIND[Kind.FLAG],
    "paused_reason": _optional(_any_text),
    "last_tick_ms": _INT,
    "floor_ms": _INT,
    "buffered_tick_ms": _optional(_INT),
    "created_at_ms": _INT,
    "updated_at_ms": _INT,
    "fired": _COUNT,
    "skipped": _COUNT,
}
_RUN_CHECKS: dict[str, Check] = {
    "tick_ms": _INT,
    "job_id": _TEXT,
    "queue": _TEXT,
    "kind": _TEXT,
    "fired_at_ms": _INT,
}
_SKIP_CHECKS: dict[str, Check] = {
    "first_tick_ms": _INT,
    "last_tick_ms": _INT,
    "count": _COUNT,
    "reason": _any_text,
    "at_ms": _INT,
}
#: The columns of a schedule row that are written (all but the view's run_* columns).
_WRITTEN = tuple(_SCHEDULE_CHECKS)


def _named(cursor: sqlite3.Cursor) -> sqlite3.Cursor:
    cursor.row_factory = sqlite3.Row
    return cursor


def _readable(row: sqlite3.Row, checks: dict[str, Check], prefix: str = "") -> bool:
    return all(check(row[prefix + name]) for name, check in checks.items())


def schedule_from_row(row: sqlite3.Row) -> ScheduleRecord | None:
    """The record of a ``schedule_rows`` row; None when a value cannot be read."""
    if not _readable(row, _SCHEDULE_CHECKS):
        return None
    fields: dict[str, Any] = {name: row[name] for name in _WRITTEN}
    fields["paused"] = bool(fields["paused"])
    run = None
    if _readable(row, _RUN_CHECKS, "run_"):
        run = ScheduleRun(**{name: row["run_" + name] for name in _RUN_CHECKS})
    return ScheduleRecord(**fields, last_run=run)


def schedules_of(rows: Iterable[sqlite3.Row]) -> list[ScheduleRecord]:
    """The readable records of ``schedule_rows`` rows (damaged ones are left out)."""
    return [record for record in map(schedule_from_row, rows) if record is not None]


def read_schedule(conn: Conn, name: str) -> ScheduleRecord | None:
    """A schedule with its latest run; None when absent or damaged."""
    row = _named(conn.execute(Q["schedule_get"], {"name": name})).fetchone()
    return None if row is None else schedule_from_row(row)


def read_schedules(conn: Conn, statement: str, **params: object) -> list[ScheduleRecord]:
    """The readable schedules a statement over ``schedule_rows`` selects."""
    return schedules_of(_named(conn.execute(Q[statement], params)))


def put_schedule(conn: Conn, record: ScheduleRecord) -> None:
    """Write the whole row of `record` (its last_run is the runs log's, not written)."""
    params = {name: getattr(record, name) for name in _WRITTEN}
    params["paused"] = int(record.paused)
    conn.execute(Q["schedule_put"], params)


def exists(conn: Conn, name: str) -> bool:
    """Whether a row of that name is there, readable or not."""
    (found,) = conn.execute(Q["schedule_exists"], {"name": name}).fetchone()
    return bool(found)


# -- logs and fired ticks ----------------------------------------------------------------


def log_run(conn: Conn, name: str, run: ScheduleRun) -> None:
    """Add a run to the schedule's log, keeping the newest SCHEDULE_LOG_KEEP."""
    conn.execute(
        Q["schedule_run_add"],
        {"name": name, **{field: getattr(run, field) for field in _RUN_CHECKS}},
    )
    conn.execute(Q["schedule_runs_trim"], {"name": name, "keep": SCHEDULE_LOG_KEEP})


def log_skip(conn: Conn, name: str, skip: SkippedTicks) -> None:
    """Add a skip to the schedule's log, keeping the newest SCHEDULE_LOG_KEEP."""
    conn.execute(
        Q["schedule_skip_add"],
        {"name": name, **{field: getattr(skip, field) for field in _SKIP_CHECKS}},
    )
    conn.execute(Q["schedule_skips_trim"], {"name": name, "keep": SCHEDULE_LOG_KEEP})


def history(conn: Conn, name: str, limit: int) -> tuple[list[ScheduleRun], list[SkippedTicks]]:
    """The newest `limit` runs and skips (each bounded by the log), newest first."""
    params = {"name": name, "limit": max(0, min(limit, SCHEDULE_LOG_KEEP))}
    runs = [
        ScheduleRun(**{field: row[field] for field in _RUN_CHECKS})
        for row in _named(conn.execute(Q["schedule_runs_list"], params))
        if _readable(row, _RUN_CHECKS)
    ]
    skips = [
        SkippedTicks(**{field: row[field] for field in _SKIP_CHECKS})
        for row in _named(conn.execute(Q["schedule_skips_list"], params))
        if _readable(row, _SKIP_CHECKS)
    ]
    return runs, skips


def has_fired(conn: Conn, name: str, tick_ms: int) -> bool:
    """Whether the tick is among the schedule's fired ticks."""
    params = {"name": name, "tick_ms": tick_ms}
    (found,) = conn.execute(Q["schedule_fired_has"], params).fetchone()
    return bool(found)


def add_fired(conn: Conn, name: str, tick_ms: int, floor_ms: int) -> int:
    """Note a fired tick, keeping the highest SCHEDULE_FIRED_KEEP; returns the new floor
    (the highest tick dropped, if above `floor_ms`)."""
    conn.execute(Q["schedule_fired_add"], {"name": name, "tick_ms": tick_ms})
    params = {"name": name, "keep": SCHEDULE_FIRED_KEEP}
    dropped = [t for (t,) in conn.execute(Q["schedule_fired_trim"], params) if type(t) is int]
    return max([floor_ms, *dropped])


def forget(conn: Conn, name: str) -> None:
    """Delete the fired ticks and logs kept under a name (bounded: KEEP rows each)."""
    for statement in ("schedule_fired_forget", "schedule_runs_forget", "schedule_skips_forget"):
        conn.execute(Q[statement], {"name": name})


# -- counters ----------------------------------------------------------------------------


def meta_value(conn: Conn, key: str) -> int | None:
    """A meta counter, None when missing or unreadable."""
    row = conn.execute(Q["meta_get"], {"key": key}).fetchone()
    return row[0] if row is not None and _COUNT(row[0]) else None


def take(conn: Conn, key: str, known: str) -> int:
    """Raise the meta counter `key` by one and return it; a missing or unreadable one is
    re-created after the highest value the statement `known` finds in use."""
    row = conn.execute(Q["counter_take"], {"key": key}).fetchone()
    if row is not None:
        return int(row[0])
    (highest,) = conn.execute(Q[known]).fetchone()
    put_meta(conn, key, int(highest) + 1)
    return int(highest) + 1


def put_meta(conn: Conn, key: str, value: int) -> None:
    """Write a meta counter."""
    conn.execute(Q["meta_put"], {"key": key, "value": value})


def take_version(conn: Conn) -> int:
    """The next schedules version (a change is being written)."""
    return take(conn, "schedules_version", "schedules_version_known")


def current_version(conn: Conn) -> int:
    """The schedules version (what the tables show, when the counter is unreadable)."""
    value = meta_value(conn, "schedules_version")
    if value is None:
        (value,) = conn.execute(Q["schedules_version_known"]).fetchone()
    return int(value)
