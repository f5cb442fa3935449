"""Opening a connection (pragmas, schema) and the small helpers every operation shares.

Everything here runs on a backend's own SQLite thread, never in the event loop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from corq.backends.sqlite.sql import SCHEMA_VERSION, Q, migration_steps, schema_statements
from corq.backends.sqlite.url import Target
from corq.errors import BrokerError
from corq.job import Job, JobStatus

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
        cached_statements=64,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if not target.memory:
            _use_wal(conn, target, busy_timeout_ms)
        conn.execute(f"PRAGMA synchronous = {target.synchronous}")
        _migrate(conn)
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
        raise BrokerError(
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
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            raise BrokerError(
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
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _schema_version(conn: Conn) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def transaction(conn: Conn, fn: Callable[[Conn], T], *, write: bool) -> T:
    """Run `fn` as one transaction: BEGIN IMMEDIATE for writers, so they queue for the write
    lock up front (busy_timeout) instead of failing to upgrade a read lock mid-way."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def take_numbers(conn: Conn, counter: str, n: int) -> int:
    """Reserve `n` consecutive numbers of a meta counter; returns the one before the first."""
    (last,) = conn.execute(Q["counter_take"], {"key": counter, "n": n}).fetchone()
    return int(last) - n


def counter(conn: Conn, name: str) -> int:
    (value,) = conn.execute(Q["counter_get"], {"key": name}).fetchone()
    return int(value)


def advance_clock(conn: Conn, now_ms: int) -> int:
    """Note the time a call brought; returns the latest time seen by any call.

    Calls that carry no clock (get_job, wait_for_job) judge result expiry against it, so a
    fake clock moved by the tests is honoured as soon as any call brings the new time.
    """
    conn.execute(Q["clock_advance"], {"now": now_ms})
    return counter(conn, "clock_ms")


def data_version(conn: Conn) -> int:
    """Changes whenever another connection (thread or process) commits to the file."""
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version)


#: The column list of job_get, job_get_any_queue and dead_list, named as Job's fields.
JOB_COLUMNS = (
    "id", "task", "queue", "status", "payload", "priority", "attempt", "failures", "deaths",
    "enqueued_at_ms", "run_at_ms", "started_at_ms", "finished_at_ms", "worker_id", "result",
    "error", "traceback", "progress", "death_log",
)  # fmt: skip


def job_from_row(row: tuple[Any, ...]) -> Job:
    """A Job from a row of JOB_COLUMNS."""
    fields = dict(zip(JOB_COLUMNS, row, strict=True))
    fields["status"] = JobStatus(fields["status"])
    fields["payload"] = bytes(fields["payload"])
    if fields["result"] is not None:
        fields["result"] = bytes(fields["result"])
    if fields["progress"] is not None:
        fields["progress"] = float(fields["progress"])
    # Stored space separated, as on Redis.
    fields["death_log"] = tuple(fields["death_log"].split())
    return Job(**fields)
