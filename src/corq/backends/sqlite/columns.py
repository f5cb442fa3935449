"""The jobs table's column lists and record checks in SQL, derived from the job record.

queries.sql never lists the record's columns itself: its statements name a column list
(``{checked_columns}``, ``{shown_columns}``, ``{new_columns}``, ...) that sql.py expands
from here when it loads them, so a field added to ``corq.backends.record.JOB_FIELDS`` is
selected, inserted, renewed and checked wherever its roles say, with no statement edited.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from corq.backends.record import JOB_FIELDS, JobField, Kind, Role
from corq.job import JobStatus

#: Largest value a counter may hold and still be incremented without leaving 64 bits.
COUNTER_MAX = 2**62 - 1

#: SQLite's own ordering key: FIFO order inside a priority band (Redis keeps a score).
SEQ = JobField("seq", Kind.INT, 0, frozenset({Role.CHECKED}), "INTEGER NOT NULL")
#: The record's fields as the jobs table holds them: every common field, then seq.
ROW_FIELDS: tuple[JobField, ...] = (*JOB_FIELDS, SEQ)
#: The other columns of the jobs table, as a new job starts them: its expiry, and the
#: columns reserved for later issues (see schema.sql) until they join the record.
TABLE_ONLY: dict[str, object] = {
    "expires_at_ms": None,
    "pending_deps": 0,
    "fairness_key": None,
}
if not all(f.name.isidentifier() for f in ROW_FIELDS):
    raise RuntimeError("a job record field is named by something other than an identifier")


def _names(keep: Callable[[JobField], bool]) -> tuple[str, ...]:
    return tuple(f.name for f in ROW_FIELDS if keep(f))


#: What a statement that acts on jobs (claim, promote, held, reclaim) selects: the rowid it
#: writes by, every field checked before acting, and what a claim hands to the worker.
CHECKED_COLUMNS = ("rowid", *_names(lambda f: f.has(Role.CHECKED) or f.has(Role.CLAIMED)))
#: What reads for people (get_job, list_dead) select: the Job's fields, and the checked
#: ones, so a record a claim would refuse also reads as damaged.
SHOWN_COLUMNS = _names(lambda f: f.has(Role.SHOWN) or f.has(Role.CHECKED))
#: What an enqueue writes from the NewJob.
NEW_COLUMNS = _names(lambda f: f.has(Role.NEW))

#: Fields the enqueue statement writes itself when a new job takes over an expired record:
#: the key, the status (its lane), the seq, and the fence (it keeps counting, so no outcome
#: of the old job can match the new one).
_RENEWED_BY_HAND = frozenset({"queue", "id", "status", "seq", "fence"})
#: Fields left out of ``{readable}``: the statements that include it match them by value
#: (outcomes ``id = :id AND fence = :fence``; a cancel needs no fence). records.py checks
#: them in Python, before a claim or a reclaim.
_MATCHED_BY_VALUE = frozenset({"id", "fence"})

#: Per kind, the SQL condition a stored value must meet to be read (records.KIND_CHECKS
#: says the same in Python: a test keeps the two in step). Comparisons, not typeof(), keep
#: it to about a microsecond a row: a blob sorts after all text, text after all numbers,
#: and CAST(x AS INTEGER) equals x only for an integer.
SQL_CHECKS: dict[Kind, str] = {
    Kind.TEXT: "{c} >= '' AND {c} < x'' AND {c} != ''",
    Kind.BYTES: "{c} >= x''",
    Kind.INT: "{c} = CAST({c} AS INTEGER)",
    Kind.COUNT: f"{{c}} BETWEEN 0 AND {COUNTER_MAX} AND {{c}} = CAST({{c}} AS INTEGER)",
    Kind.NUMBER: "{c} < ''",
    Kind.FLAG: "{c} IN (0, 1)",
    Kind.STATUS: "{c} IN (" + ", ".join(f"'{s.value}'" for s in JobStatus) + ")",
    Kind.WORDS: "{c} >= '' AND {c} < x''",
}


def readable() -> str:
    """The condition that a row's checked fields can be read (see records.damage), for
    statements that act on a row they match by id (outcomes, cancel)."""
    checked = [f for f in ROW_FIELDS if f.has(Role.CHECKED) and f.name not in _MATCHED_BY_VALUE]
    return "(" + " AND ".join(SQL_CHECKS[f.kind].format(c=f.name) for f in checked) + ")"


def _literal(value: object) -> str:
    """A field's default as an SQL literal (a tuple of words is stored space-separated)."""
    if value is None:
        return "NULL"
    if isinstance(value, tuple):
        value = " ".join(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bytes):
        return f"x'{value.hex()}'"
    if type(value) in (int, float):
        return repr(value)
    raise TypeError(f"no SQL literal for {value!r}")


def renewed() -> str:
    """The SET list of an enqueue over an expired record: every field of the record the new
    job brings, every other column back at its default (but see _RENEWED_BY_HAND)."""
    starts = {f.name: _literal(f.default) for f in ROW_FIELDS}
    starts |= {name: _literal(value) for name, value in TABLE_ONLY.items() if name not in starts}
    starts |= {f.name: f"excluded.{f.name}" for f in ROW_FIELDS if f.has(Role.NEW)}
    return ", ".join(
        f"{name} = {value}" for name, value in starts.items() if name not in _RENEWED_BY_HAND
    )


def _listed(columns: Iterable[str], alias: str | None) -> str:
    return ", ".join(f"{alias}.{c}" if alias else c for c in columns)


#: Placeholder -> what it stands for, given a table alias or None.
_PLACEHOLDERS: dict[str, Callable[[str | None], str]] = {
    "checked_columns": lambda alias: _listed(CHECKED_COLUMNS, alias),
    "shown_columns": lambda alias: _listed(SHOWN_COLUMNS, alias),
    "new_columns": lambda alias: _listed(NEW_COLUMNS, alias),
    "new_values": lambda _: ", ".join(f":{c}" for c in NEW_COLUMNS),
    "renewed": lambda _: renewed(),
    "readable": lambda _: readable(),
}
_PLACEHOLDER = re.compile(r"\{(?:(\w+)\.)?(\w+)\}")


def expand(sql: str) -> str:
    """`sql` with each ``{name}`` (or ``{alias.name}``, for a column list of a joined table)
    replaced by what it stands for."""
    return _PLACEHOLDER.sub(_expanded, sql)


def _expanded(match: re.Match[str]) -> str:
    alias, name = match[1], match[2]
    if name not in _PLACEHOLDERS:
        raise RuntimeError(f"queries.sql: no placeholder {{{name}}} (see columns.py)")
    return _PLACEHOLDERS[name](alias)
