"""Opening a connection (pragmas, schema) and the small helpers every operation shares.

Everything here runs on a backend's own SQLite thread, never in the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from corq.backends.sqlite.event_triggers import install_triggers
from corq.backends.sqlite.sql import SCHEMA_VERSION, Q, migration_steps, schema_statements
from corq.backends.sqlite.url import Target
from corq.errors import BrokerDataError

T = TypeVar("T")
Params = dict[str, Any]
Conn = sqlite3.Connection


def connect(target: Target, busy_timeout_ms: int) -> Conn:
    """A connection in autocommit mode (transactions are explicit), tuned and migrated."""
    conn = sqlite3.connect(
        target.database,
        uri=target.uri,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        cached_statements=128,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if not target.memory:
            _use_wal(conn, target, busy_timeout_ms)
        conn.execute(f"PRAGMA synchronous = {target.synchronous}")
        _migrate(conn)
        install_triggers(conn, target.events_max)
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: Conn, target: Target, busy_timeout_ms: int) -> None:
    """WAL lets readers (stats, result waits) run while a worker commits.

    Switching a new file to WAL needs an exclusive lock and SQLite does not wait for it
    (no busy handler), so processes opening a new file together retry here; once one has
    switched, the mode is stored in the file and the others only read it.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
    if str(mode).lower() != "wal":
        raise BrokerDataError(
            f"SQLite broker {target.database}: WAL journal mode unavailable (got {mode!r}); "
            "the file must be on a local file system"
        )


def _migrate(conn: Conn) -> None:
    """Create the schema on a new file, or bring an older file up to SCHEMA_VERSION; refuse
    a file written by a newer corq.

    Everything happens in one IMMEDIATE transaction, and the version is read again once the
    write lock is held: processes racing to create or upgrade a file serialize there, and
    the later ones find the work done. The schema statements are idempotent, the migration
    steps (ALTER TABLE) are not, hence the second look.
    """
    if _schema_version(conn) == SCHEMA_VERSION:
        if _missing_tables(conn):
            _complete_schema(conn)
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            raise BrokerDataError(
                f"SQLite broker file has schema version {version}, newer than this corq "
                f"understands ({SCHEMA_VERSION}); upgrade corq"
            )
        if version < SCHEMA_VERSION:
            # A new file (version 0) gets the schema as it is; an older one its steps first.
            steps = migration_steps(version) if version > 0 else []
            for statement in [*steps, *schema_statements()]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)", re.MULTILINE)


@functools.cache
def _schema_tables() -> frozenset[str]:
    return frozenset(_TABLE.findall("\n".join(schema_statements())))


def _missing_tables(conn: Conn) -> bool:
    """True when a table of schema.sql is not in the file (one written by an earlier build
    of the same schema version, before that table joined it)."""
    have = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return not _schema_tables() <= have


def _complete_schema(conn: Conn) -> None:
    """Run the (idempotent) schema on such a file; when it cannot take it (a column an
    index names is missing too), leave the file as it was."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in schema_statements():
            conn.execute(statement)
        conn.execute("COMMIT")
    except sqlite3.Error:
        _rollback(conn)


def _schema_version(conn: Conn) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def transaction(conn: Conn, fn: Callable[[Conn], T], *, write: bool) -> T:
    """Run `fn` as one transaction: BEGIN IMMEDIATE for writers, so they queue for the write
    lock up front (busy_timeout) instead of failing to upgrade a read lock mid-way.

    Text another program wrote need not be UTF-8. sqlite3's own decoding (fast, in C) fails
    on it; the transaction is then run again, from the start, with text decoded with
    replacement (records.py tells such ids apart), so a row like that never fails a call.
    """
    try:
        return _run(conn, fn, write=write)
    except sqlite3.OperationalError as exc:
        if not str(exc).startswith(_NOT_UTF8):
            raise
    conn.text_factory = _decode_with_replacement
    try:
        return _run(conn, fn, write=write)
    finally:
        conn.text_factory = str


#: How sqlite3 says a TEXT value is not valid UTF-8.
_NOT_UTF8 = "Could not decode to UTF-8"


def _decode_with_replacement(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _run(conn: Conn, fn: Callable[[Conn], T], *, write: bool) -> T:
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return result


def _rollback(conn: Conn) -> None:
    """Roll back what is left of a failed transaction; a failing rollback (the file went
    away) must not hide the error that caused it."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def take_numbers(conn: Conn, n: int) -> int:
    """Reserve `n` consecutive FIFO numbers; returns the one before the first.

    A missing or unreadable counter (written by another program) is re-created after the
    highest seq any job has, so order within each queue is kept.
    """
    row = conn.execute(Q["seq_take"], {"n": n}).fetchone()
    if row is None:
        conn.execute(Q["seq_repair"])
        row = conn.execute(Q["seq_take"], {"n": n}).fetchone()
    return int(row[0]) - n


def machine_now_ms() -> int:
    """This machine's clock, the broker's own time on SQLite."""
    return time.time_ns() // 1_000_000


def advance_clock(conn: Conn, now_ms: int | None) -> tuple[int, int]:
    """Resolve `now_ms` (None: this machine's clock, read here, inside the transaction) and
    note it as the latest time seen; returns (now, latest time seen by any call).

    Calls that carry no clock (get_job, wait_for_job) judge result expiry against the
    latest time, so a fake clock moved by the tests is honoured as soon as any call brings
    the new time.
    """
    now = machine_now_ms() if now_ms is None else now_ms
    row = conn.execute(Q["clock_advance"], {"now": now}).fetchone()
    return now, (now if row is not None else read_clock(conn))


def read_clock(conn: Conn) -> int:
    """The latest time any call brought (0 when the row is missing or unreadable)."""
    row = conn.execute(Q["clock_get"]).fetchone()
    return row[0] if row is not None and type(row[0]) is int else 0


def data_version(conn: Conn) -> int:
    """Changes whenever another connection (thread or process) commits to the file."""
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version)
