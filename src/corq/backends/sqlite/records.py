"""Reading job rows without trusting them.

SQLite stores any value in any column, and the file may have been written by another
program: a priority of ``'high'``, a TEXT or NULL payload, a NULL fence. Every row a
transaction acts on is checked here first; a row that fails goes to the dead letters
(dead.py) with an error naming the field, and the rest of the call goes on. Rows shown to
people (get_job, list_dead) are decoded field by field with defaults instead, so a damaged
record still reads.

Text that is not valid UTF-8 is decoded with replacement (see store.transaction), so such an
id reads as a different string: it can never be named in a later call, so a claim or a
reclaim treats it as damaged too (``id_round_trips``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from corq.backends.base import damaged_error
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn
from corq.job import Job, JobStatus

#: Largest value a counter may hold and still be incremented without leaving 64 bits.
_COUNTER_MAX = 2**62 - 1
#: Longest rendering of an unreadable value in an error.
_SHOWN_CHARS = 60


class Checked(NamedTuple):
    """A job row as the statements that act on jobs select it (CHECKED_BY; a test checks
    that each one names these columns in this order)."""

    rowid: int
    id: Any
    task: Any
    payload: Any
    priority: Any
    seq: Any
    attempt: Any
    failures: Any
    deaths: Any
    fence: Any
    enqueued_at_ms: Any
    run_at_ms: Any
    death_log: Any
    suspect: Any


#: The statements of queries.sql whose rows are Checked (reclaiming_held adds two columns).
CHECKED_BY = (
    "claim_pick", "delayed_due", "delayed_unreadable", "held_list", "held_by_rowid",
    "reclaiming_held",
)  # fmt: skip


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_counter(value: object) -> bool:
    return type(value) is int and 0 <= value <= _COUNTER_MAX


def _any(value: object) -> bool:
    return True


#: What each checked field must be for a claim, an outcome or a reclaim to act on the row,
#: in the order of Checked's fields after rowid. (The task is not checked: a job with no
#: task name is handed out as "" and the worker dead-letters it, as on Redis.)
CHECKS: tuple[tuple[str, Callable[[object], bool]], ...] = (
    ("id", lambda v: type(v) is str and v != ""),
    ("task", _any),
    ("payload", lambda v: type(v) is bytes),
    ("priority", _is_int),
    ("seq", _is_int),
    ("attempt", _is_counter),
    ("failures", _is_counter),
    ("deaths", _is_counter),
    ("fence", _is_counter),
    ("enqueued_at_ms", _is_int),
    ("run_at_ms", _is_int),
    ("death_log", lambda v: type(v) is str),
    ("suspect", lambda v: type(v) is int and v in (0, 1)),
)


def damage(conn: Conn, row: Checked) -> str | None:
    """None when the row can be acted on, else the dead-letter error naming what is wrong.

    The common case costs one pass of type checks (well under a microsecond); a row whose
    id holds U+FFFD (the replacement of bytes that are not UTF-8) is looked up once more to
    tell the two apart.
    """
    if _looks_readable(row):
        if "\ufffd" in row.id and not _id_round_trips(conn, row):
            return damaged_error("id is not valid UTF-8")
        return None
    bad = [
        f"{name}={shown(value)}"
        for (name, ok), value in zip(CHECKS, row[1:], strict=True)
        if not ok(value)
    ]
    return damaged_error(", ".join(bad)) if bad else None


def _looks_readable(row: Checked) -> bool:
    """CHECKS written out for speed (a claim checks every row it takes); a test keeps the
    two in step."""
    (_, id_, _, payload, priority, seq, attempt, failures, deaths, fence, enqueued_at_ms,
     run_at_ms, death_log, suspect) = row  # fmt: skip
    return (
        type(id_) is str
        and id_ != ""
        and type(payload) is bytes
        and type(priority) is int
        and type(seq) is int
        and type(attempt) is int
        and type(failures) is int
        and type(deaths) is int
        and type(fence) is int
        and type(enqueued_at_ms) is int
        and type(run_at_ms) is int
        and type(death_log) is str
        and type(suspect) is int
        and (suspect == 0 or suspect == 1)
        and 0 <= attempt <= _COUNTER_MAX
        and 0 <= failures <= _COUNTER_MAX
        and 0 <= deaths <= _COUNTER_MAX
        and 0 <= fence <= _COUNTER_MAX
    )


def _id_round_trips(conn: Conn, row: Checked) -> bool:
    (same,) = conn.execute(Q["id_round_trips"], {"id": row.id, "rowid": row.rowid}).fetchone()
    return bool(same)


def shown(value: object) -> str:
    """An unreadable value as an error shows it: NULL, or its repr cut short."""
    if value is None:
        return "NULL"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def task_name(value: object) -> str:
    """The task of a claimed row: "" when there is none (the worker dead-letters it)."""
    return value if type(value) is str else ""


# -- decoding for people ---------------------------------------------------------------

#: The column list of job_get, job_get_any_queue and dead_list: Job's fields, then the
#: columns only checked (so a record a claim would refuse also reads as damaged).
JOB_COLUMNS = (
    "id", "task", "queue", "status", "payload", "priority", "attempt", "failures", "deaths",
    "enqueued_at_ms", "run_at_ms", "started_at_ms", "finished_at_ms", "worker_id", "result",
    "error", "traceback", "progress", "death_log", "fence", "seq", "suspect",
)  # fmt: skip
_CHECK_ONLY = ("fence", "seq", "suspect")
_STATUSES = frozenset(status.value for status in JobStatus)


def _optional(ok: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or ok(value)


def _is_text(value: object) -> bool:
    return type(value) is str


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


#: How each field shown in a Job is read: (must hold, else this default). Fields a claim
#: checks follow CHECKS; the others may also be NULL.
_READ: dict[str, tuple[Callable[[object], bool], Any]] = {
    **{name: (ok, 0) for name, ok in CHECKS if name not in ("id", "task")},
    "id": (_is_text, ""),
    "task": (_optional(_is_text), ""),
    "queue": (_is_text, ""),
    "status": (lambda v: v in _STATUSES and type(v) is str, JobStatus.DEAD),  # as on Redis
    "payload": (dict(CHECKS)["payload"], b""),
    "death_log": (_is_text, ""),
    "started_at_ms": (_optional(_is_int), None),
    "finished_at_ms": (_optional(_is_int), None),
    "worker_id": (_optional(_is_text), None),
    "result": (_optional(lambda v: type(v) is bytes), None),
    "error": (_optional(_is_text), None),
    "traceback": (_optional(_is_text), None),
    "progress": (_optional(_is_number), None),
}


def job_from_row(row: tuple[Any, ...]) -> Job:
    """A Job from a row of JOB_COLUMNS; unreadable fields take their defaults and the
    error names them (``damaged job record: ...``), so a damaged record still reads."""
    fields: dict[str, Any] = {}
    bad: list[str] = []
    for name, value in zip(JOB_COLUMNS, row, strict=True):
        ok, default = _READ[name]
        if ok(value):
            fields[name] = value
        else:
            fields[name] = default
            bad.append(f"{name}={shown(value)}")
    for name in _CHECK_ONLY:
        del fields[name]
    fields["status"] = JobStatus(fields["status"])
    fields["task"] = fields["task"] or ""
    if fields["progress"] is not None:
        fields["progress"] = float(fields["progress"])
    fields["death_log"] = tuple(fields["death_log"].split())  # space separated, as on Redis
    if bad:
        fields["error"] = damaged_error(", ".join(bad))
    return Job(**fields)
