"""Reading job rows without trusting them.

SQLite stores any value in any column, and the file may have been written by another
program: a priority of ``'high'``, a TEXT or NULL payload, a NULL fence. Every row a
transaction acts on is checked here first; a row that fails goes to the dead letters
(dead.py) with an error naming the field, and the rest of the call goes on. Rows shown to
people (get_job, list_dead) are decoded field by field with defaults instead, so a damaged
record still reads.

Nothing here names a field of the record: rows are read by the names of the column lists
in columns.py, and each field is checked and decoded by its kind (``KIND_CHECKS``,
``KIND_DECODES``), so a field added to the record is checked, handed out and shown like
the others of its kind. The per-row functions of the claim path are generated from the
same expressions (see _compiled).

Text that is not valid UTF-8 is decoded with replacement (see store.transaction), so such an
id reads as a different string: it can never be named in a later call, so a claim or a
reclaim treats it as damaged too (``id_round_trips``).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable
from typing import Any, cast

from corq.backends.base import damaged_error
from corq.backends.record import SHOWN_FIELDS, ClaimedJob, JobField, Kind, Role
from corq.backends.sqlite.columns import CHECKED_COLUMNS, COUNTER_MAX, ROW_FIELDS, SHOWN_COLUMNS
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn
from corq.job import Job, JobStatus

#: Longest rendering of an unreadable value in an error.
_SHOWN_CHARS = 60
_STATUSES = frozenset(status.value for status in JobStatus)

#: Per kind, what a value `{v}` must be for a claim, an outcome or a reclaim to act on the
#: row (a Python expression, so the per-field checks and the fast check of whole rows are
#: made from the same text; columns.py says the same in SQL, and a test keeps the two in
#: step). A checked text must not be empty: an empty id names no job.
KIND_CHECKS: dict[Kind, str] = {
    Kind.TEXT: "type({v}) is str and {v} != ''",
    Kind.BYTES: "type({v}) is bytes",
    Kind.INT: "type({v}) is int",
    Kind.COUNT: "type({v}) is int and 0 <= {v} <= COUNTER_MAX",
    Kind.NUMBER: "(type({v}) is int or type({v}) is float)",
    Kind.FLAG: "type({v}) is int and ({v} == 0 or {v} == 1)",
    Kind.STATUS: "type({v}) is str and {v} in STATUSES",
    Kind.WORDS: "type({v}) is str",
}
#: What a value of a field shown to people must be to be read as it is (else the field's
#: default, and the error names it): a checked field's check, any text for TEXT.
_SHOWN_CHECKS = {**KIND_CHECKS, Kind.TEXT: "type({v}) is str"}
_NAMESPACE = {"COUNTER_MAX": COUNTER_MAX, "STATUSES": _STATUSES, "JobStatus": JobStatus}


def _compiled(source: str, name: str, names: dict[str, object] | None = None) -> Any:
    """The function `name` that `source` defines: Python generated from the field list and
    the kinds above (as namedtuple and dataclasses generate theirs), because a claim runs
    it for every job it takes, and a loop calling one function per field costs about three
    times as much. Field names are identifiers (columns.py checks)."""
    namespace = {**_NAMESPACE, **(names or {})}
    exec(compile(source, f"<corq.backends.sqlite.records.{name}>", "exec"), namespace)
    return namespace[name]


def _check(template: str) -> Callable[[object], bool]:
    check: Callable[[object], bool] = _compiled(
        f"def check(v):\n    return {template.format(v='v')}\n", "check"
    )
    return check


# -- rows read by name -----------------------------------------------------------------


def row_class(name: str, columns: Iterable[str]) -> Any:
    """A tuple class with one attribute per column, so a row is read by column name (as
    fast as by position). (The field list is built, so mypy cannot type it.)"""
    return namedtuple(name, tuple(columns))


class Checked(row_class("CheckedRow", CHECKED_COLUMNS)):  # type: ignore[misc]
    """A job row as the statements that act on jobs select it (``{checked_columns}``)."""

    __slots__ = ()


def checked_rows(rows: Iterable[tuple[Any, ...]]) -> list[Checked]:
    """The rows of a statement that selects ``{checked_columns}``."""
    return list(map(Checked._make, rows))


#: The fields checked before a row is acted on (the SQLite ordering key seq included).
_CHECKED = tuple(f for f in ROW_FIELDS if f.has(Role.CHECKED))
#: KIND_CHECKS as functions.
CHECKS_BY_KIND = {kind: _check(template) for kind, template in KIND_CHECKS.items()}
#: Per checked field, what its value must be (in column order, as errors name them).
CHECKS = tuple((f.name, CHECKS_BY_KIND[f.kind]) for f in _CHECKED)


def _fast_check_source() -> str:
    """One function checking every field of a row at once: a claim checks every row it
    takes, and one expression costs a third of a call per field."""
    lines = [f"    {f.name}_ = row.{f.name}" for f in _CHECKED]
    terms = [KIND_CHECKS[f.kind].format(v=f"{f.name}_") for f in _CHECKED]
    return "def looks_readable(row):\n" + "\n".join(lines) + "\n    return " + " and ".join(terms)


#: True when every check of CHECKS passes (any row with the checked columns).
looks_readable: Callable[[Any], bool] = _compiled(_fast_check_source(), "looks_readable")


def damage(conn: Conn, row: Any) -> str | None:
    """None when the row (a Checked one, or any with its columns) can be acted on, else the
    dead-letter error naming what is wrong.

    The common case costs one pass of type checks (well under a microsecond); a row whose
    id holds U+FFFD (the replacement of bytes that are not UTF-8) is looked up once more to
    tell the two apart.
    """
    if not looks_readable(row):
        bad = [
            f"{name}={shown(getattr(row, name))}"
            for name, ok in CHECKS
            if not ok(getattr(row, name))
        ]
        return damaged_error(", ".join(bad))
    if "\ufffd" in row.id and not _id_round_trips(conn, row):
        return damaged_error("id is not valid UTF-8")
    return None


def _id_round_trips(conn: Conn, row: Any) -> bool:
    (same,) = conn.execute(Q["id_round_trips"], {"id": row.id, "rowid": row.rowid}).fetchone()
    return bool(same)


def shown(value: object) -> str:
    """An unreadable value as an error shows it: NULL, or its repr cut short."""
    if value is None:
        return "NULL"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


# -- decoding ----------------------------------------------------------------------------

#: Fields whose absence (NULL) is no damage: a job with no task name is handed out and
#: read with "" (the worker dead-letters it with an unknown-task error), as on Redis.
_ABSENT_IS_EMPTY = frozenset({"task"})
#: Per kind, how a readable value `{v}` becomes the attribute (others are kept as read).
KIND_DECODES: dict[Kind, str] = {
    Kind.NUMBER: "float({v})",
    Kind.FLAG: "bool({v})",
    Kind.STATUS: "JobStatus({v})",
    Kind.WORDS: "tuple({v}.split())",  # space separated, as on Redis
}
#: What an unreadable value of a kind reads as, when not the field's default: an unknown
#: status reads as dead, as on Redis.
_UNREADABLE_AS: dict[Kind, object] = {Kind.STATUS: JobStatus.DEAD}


def _decoded(f: JobField, value: str) -> str:
    """The expression of `f`'s attribute, given the expression of its readable value."""
    return KIND_DECODES[f.kind].format(v=value) if f.kind in KIND_DECODES else value


def _unreadable(f: JobField) -> object:
    """What `f` reads as when its value cannot be read."""
    return _UNREADABLE_AS.get(f.kind, f.default)


def _absent_ok(f: JobField) -> bool:
    """Whether NULL is no damage for `f` (it reads as its default)."""
    return f.default is None or f.name in _ABSENT_IS_EMPTY


def _reader(f: JobField) -> Callable[[object], tuple[Any, bool]]:
    """Reads a value of `f` into (attribute, whether it was unreadable)."""
    ok = _check(_SHOWN_CHECKS[f.kind])
    decode: Callable[[object], Any] = _compiled(f"def d(v):\n    return {_decoded(f, 'v')}\n", "d")
    absent_ok, unreadable = _absent_ok(f), _unreadable(f)

    def read(value: object) -> tuple[Any, bool]:
        if value is None and absent_ok:
            return f.default, False
        if ok(value):
            return decode(value), False
        return unreadable, True

    return read


_READERS = {f.name: _reader(f) for f in ROW_FIELDS}


def claimed_job_maker(*given: str) -> Callable[..., ClaimedJob]:
    """A function making the ClaimedJob of a checked row, with the attributes named in
    `given` passed as keywords (what the claim itself changes, such as the attempt).

    The function is made from the field list (one expression per attribute): a claim makes
    one for every job it takes. Checked fields are taken as they are (decoded); the others
    are read like a shown field, their default standing in for a value that is unreadable.
    """
    claimed = [f.name for f in ROW_FIELDS if f.has(Role.CLAIMED)]
    if not set(given) <= set(claimed):
        raise ValueError(f"not ClaimedJob attributes: {sorted(set(given) - set(claimed))}")
    attributes = []
    namespace: dict[str, object] = {"ClaimedJob": ClaimedJob}
    for f in ROW_FIELDS:
        if not f.has(Role.CLAIMED):
            continue
        value = f"row.{f.name}"
        if f.name in given:
            value = f.name
        elif not f.has(Role.CHECKED):
            namespace[f"{f.name}_if_bad"] = _unreadable(f)
            namespace[f"{f.name}_if_null"] = f.default if _absent_ok(f) else _unreadable(f)
            value = (
                f"({_decoded(f, value)} if {_SHOWN_CHECKS[f.kind].format(v=value)} else "
                f"{f.name}_if_null if {value} is None else {f.name}_if_bad)"
            )
        else:
            value = _decoded(f, value)
        attributes.append(f"{f.name}={value}")
    source = (
        f"def claimed_job(row, *, {', '.join(given)}):\n"
        f"    return ClaimedJob({', '.join(attributes)})\n"
    )
    return cast("Callable[..., ClaimedJob]", _compiled(source, "claimed_job", namespace))


def job_from_row(row: tuple[Any, ...]) -> Job:
    """A Job from a row of ``{shown_columns}``; unreadable fields take their defaults and
    the error names them (``damaged job record: ...``), so a damaged record still reads."""
    fields: dict[str, Any] = {}
    bad: list[str] = []
    for name, value in zip(SHOWN_COLUMNS, row, strict=True):
        fields[name], unreadable = _READERS[name](value)
        if unreadable:
            bad.append(f"{name}={shown(value)}")
    job = {name: fields[name] for name in SHOWN_FIELDS}
    if bad:
        job["error"] = damaged_error(", ".join(bad))
    return Job(**job)
