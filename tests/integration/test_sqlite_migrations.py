"""SQLite only: files written by older corq versions open, upgraded to the current schema.

Each test builds a real file with the old schema (its DDL kept here as it shipped), fills
it the way that version did, opens it with this corq, and checks that every job still
moves on. A file this corq cannot use (newer, or half migrated) is refused at once.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from corq.backends.base import (
    Completion,
    Edge,
    NewJob,
    NewWorkflow,
    Reclaimed,
    ScheduleStep,
    TickOutcome,
    TickStep,
    WorkerLease,
    WorkflowJob,
)
from corq.backends.sqlite import SqliteBackend
from corq.backends.sqlite.columns import ROW_FIELDS
from corq.backends.sqlite.sql import SCHEMA_VERSION
from corq.errors import BrokerDataError
from corq.job import JobStatus

T0 = 1_700_000_000_000
LEASE_MS = 30_000
#: The tables schema version 5 added.
WORKFLOW_TABLES = (
    "workflows",
    "workflow_outputs",
    "workflow_counts",
    "workflow_nodes",
    "workflow_edges",
    "workflow_failed",
)

_TABLES_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('seq', 0), ('clock_ms', 0);
CREATE TABLE queues (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE workers (
    queue TEXT NOT NULL, worker_id TEXT NOT NULL, lease_deadline_ms INTEGER NOT NULL,
    PRIMARY KEY (queue, worker_id)
) WITHOUT ROWID;
CREATE TABLE jobs (
    queue TEXT NOT NULL, id TEXT NOT NULL, task TEXT NOT NULL, status TEXT NOT NULL,
    payload BLOB NOT NULL, priority INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    deaths INTEGER NOT NULL DEFAULT 0, enqueued_at_ms INTEGER NOT NULL,
    run_at_ms INTEGER NOT NULL, started_at_ms INTEGER, finished_at_ms INTEGER,
    worker_id TEXT, fence INTEGER NOT NULL DEFAULT 0, result BLOB, error TEXT,
    traceback TEXT, death_log TEXT NOT NULL DEFAULT '', expires_at_ms INTEGER,
    pending_deps INTEGER NOT NULL DEFAULT 0, schedule_tick_id TEXT, fairness_key TEXT,
    PRIMARY KEY (queue, id)
);
"""
_INDEXES = """
CREATE INDEX jobs_delayed ON jobs (queue, run_at_ms, seq) WHERE status IN ('scheduled', 'failed');
CREATE INDEX jobs_held ON jobs (queue, worker_id) WHERE status = 'running';
CREATE INDEX jobs_dead ON jobs (queue, finished_at_ms DESC, id DESC) WHERE status = 'dead';
CREATE INDEX jobs_expiry ON jobs (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE INDEX jobs_by_id ON jobs (id);
"""
#: Schema version 1, as corq shipped it (the first SQLite broker).
SCHEMA_V1 = (
    _TABLES_V1
    + _INDEXES
    + "CREATE INDEX jobs_ready ON jobs (queue, priority DESC, seq) WHERE status = 'queued';\n"
    + "PRAGMA user_version = 1;"
)
#: Schema version 2 (suspects and progress), as corq shipped it.
SCHEMA_V2 = (
    _TABLES_V1.replace(
        "PRIMARY KEY (queue, id)\n);",
        "suspect INTEGER NOT NULL DEFAULT 0, isolated INTEGER NOT NULL DEFAULT 0,\n"
        "    progress REAL, PRIMARY KEY (queue, id)\n);",
    )
    + _INDEXES
    + "CREATE INDEX jobs_ready ON jobs (queue, suspect, priority DESC, seq)"
    " WHERE status = 'queued';\n" + "PRAGMA user_version = 2;"
)
#: Schema version 3 (departed workers, the reclaiming table, queue last-use), as shipped.
SCHEMA_V3 = (
    SCHEMA_V2.replace(
        "CREATE TABLE queues (name TEXT PRIMARY KEY) WITHOUT ROWID;",
        "CREATE TABLE queues (name TEXT PRIMARY KEY,"
        " last_used_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;",
    )
    .replace(
        "lease_deadline_ms INTEGER NOT NULL,\n",
        "lease_deadline_ms INTEGER NOT NULL,\n    departed INTEGER NOT NULL DEFAULT 0,\n",
    )
    .replace("PRAGMA user_version = 2;", "")
    + """
CREATE TABLE reclaiming (
    queue TEXT NOT NULL, worker_id TEXT NOT NULL, departed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, worker_id)
) WITHOUT ROWID;
CREATE INDEX queues_idle ON queues (last_used_ms);
PRAGMA user_version = 3;
"""
)
_SCHEDULE_TABLES_V4 = """
INSERT INTO meta (key, value)
VALUES ('schedules_version', 0), ('schedule_fence', 0), ('scheduler_fence', 0);
CREATE TABLE schedules (
    name TEXT PRIMARY KEY, queue TEXT NOT NULL, definition BLOB NOT NULL,
    version INTEGER NOT NULL, paused INTEGER NOT NULL DEFAULT 0, paused_reason TEXT,
    last_tick_ms INTEGER NOT NULL, floor_ms INTEGER NOT NULL DEFAULT 0, buffered_tick_ms INTEGER,
    created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,
    fired INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX schedules_by_version ON schedules (version);
CREATE TABLE schedule_removed (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, removed_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX schedule_removed_by_version ON schedule_removed (version);
CREATE INDEX schedule_removed_by_age ON schedule_removed (removed_at_ms);
CREATE TABLE schedule_fired (
    name TEXT NOT NULL, tick_ms INTEGER NOT NULL, PRIMARY KEY (name, tick_ms)
) WITHOUT ROWID;
CREATE TABLE schedule_runs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, tick_ms INTEGER NOT NULL,
    job_id TEXT NOT NULL, queue TEXT NOT NULL, kind TEXT NOT NULL, fired_at_ms INTEGER NOT NULL
);
CREATE INDEX schedule_runs_by_name ON schedule_runs (name, id);
CREATE TABLE schedule_skips (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, first_tick_ms INTEGER NOT NULL,
    last_tick_ms INTEGER NOT NULL, count INTEGER NOT NULL, reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX schedule_skips_by_name ON schedule_skips (name, id);
CREATE VIEW schedule_rows AS
SELECT s.name, s.queue, s.definition, s.version, s.paused, s.paused_reason, s.last_tick_ms,
       s.floor_ms, s.buffered_tick_ms, s.created_at_ms, s.updated_at_ms, s.fired, s.skipped,
       r.tick_ms AS run_tick_ms, r.job_id AS run_job_id, r.queue AS run_queue,
       r.kind AS run_kind, r.fired_at_ms AS run_fired_at_ms
FROM schedules AS s
LEFT JOIN schedule_runs AS r
    ON r.id = (SELECT max(id) FROM schedule_runs WHERE schedule_runs.name = s.name);
CREATE TABLE scheduler_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, fence INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL
);
PRAGMA user_version = 4;
"""
#: Schema version 4 (schedules: jobs.schedule and jobs.tick_ms, the schedule tables), as
#: shipped.
SCHEMA_V4 = (
    SCHEMA_V3.replace("schedule_tick_id TEXT", "schedule TEXT")
    .replace("progress REAL, PRIMARY KEY", "progress REAL, tick_ms INTEGER, PRIMARY KEY")
    .replace("PRAGMA user_version = 3;", "")
    + _SCHEDULE_TABLES_V4
)
#: Schema version 5 (workflows: jobs.workflow, inputs, notify; its workflow tables are as
#: schema.sql creates them, so they are left for the migration to create), as shipped.
_WORKFLOW_COLUMNS_V5 = "workflow TEXT, inputs TEXT, notify INTEGER NOT NULL DEFAULT 0, "
SCHEMA_V5 = SCHEMA_V4.replace(
    "tick_ms INTEGER, PRIMARY KEY", "tick_ms INTEGER, " + _WORKFLOW_COLUMNS_V5 + "PRIMARY KEY"
).replace("PRAGMA user_version = 4;", "PRAGMA user_version = 5;")

#: Rows as the older versions wrote them: (id, status, worker_id, run_at_ms, expires_at_ms).
OLD_JOBS = [
    ("ready", "queued", None, T0, None),
    ("later", "scheduled", None, T0 + 60_000, None),
    ("held", "running", "live", T0, None),
    # held by a worker whose row the deregistration bug of version 2 deleted
    ("orphan", "running", "gone", T0, None),
    ("dead", "dead", "live", T0, None),
    ("done", "succeeded", "live", T0, T0 + 3_600_000),
]


def old_file(path: Path, ddl: str) -> Path:
    """A file in an older schema with a live worker and one job in each state."""
    conn = sqlite3.connect(path)
    conn.executescript(ddl)
    conn.execute("INSERT INTO queues (name) VALUES ('q')")
    conn.execute(
        "INSERT INTO workers (queue, worker_id, lease_deadline_ms) VALUES ('q', 'live', ?)",
        (T0 + 10 * LEASE_MS,),
    )
    for seq, (job_id, status, worker, run_at, expires) in enumerate(OLD_JOBS, start=1):
        conn.execute(
            "INSERT INTO jobs (queue, id, task, status, payload, seq, enqueued_at_ms, run_at_ms,"
            " worker_id, fence, attempt, expires_at_ms, error, finished_at_ms)"
            " VALUES ('q', ?, 't', ?, x'7b7d', ?, ?, ?, ?, 1, ?, ?, ?, ?)",
            (
                job_id,
                status,
                seq,
                T0,
                run_at,
                worker,
                int(status != "queued"),
                expires,
                "E: boom" if status == "dead" else None,
                T0 if status in ("dead", "succeeded") else None,
            ),
        )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (len(OLD_JOBS),))
    conn.commit()
    conn.close()
    return path


@contextmanager
def look(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


def columns(path: Path, table: str) -> set[str]:
    with look(path) as conn:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


async def _every_job_moves_on(path: Path) -> None:
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        # The file is at the current version, with the columns and tables of every version
        await b.ping()
        with look(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            assert conn.execute("SELECT count(*) FROM reclaiming").fetchone() == (0,)
        assert "departed" in columns(path, "workers")
        assert "last_used_ms" in columns(path, "queues")
        assert {"suspect", "isolated", "progress", "schedule", "tick_ms"} <= columns(path, "jobs")
        assert {"workflow", "inputs", "notify"} <= columns(path, "jobs")
        assert "schedule_tick_id" not in columns(path, "jobs")
        with look(path) as conn:
            for table in WORKFLOW_TABLES:
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table

        # Every record still reads as it was written
        statuses = {}
        for job_id, *_ in OLD_JOBS:
            job = await b.get_job(job_id, "q")
            assert job is not None, job_id
            assert job.error is None or not job.error.startswith("damaged"), job_id
            assert (job.schedule, job.tick_ms) == (None, None), job_id
            assert (job.workflow, job.inputs) == (None, None), job_id
            statuses[job_id] = job.status
        assert statuses == {
            "ready": JobStatus.QUEUED,
            "later": JobStatus.SCHEDULED,
            "held": JobStatus.RUNNING,
            "orphan": JobStatus.RUNNING,
            "dead": JobStatus.DEAD,
            "done": JobStatus.SUCCEEDED,
        }
        assert await b.list_queues() == ["q"]

        # The orphan comes back at the first reclaim, as a release (no death); the live
        # worker's job stays with it
        reclaimed = await b.reclaim_stalled_jobs("q", T0, 3, ended_only=True)
        assert reclaimed == [
            Reclaimed(job_id="orphan", queue="q", worker_id="gone", dead=False, released=True)
        ]
        orphan = await b.get_job("orphan", "q")
        assert orphan is not None
        assert (orphan.status, orphan.deaths, orphan.attempt) == (JobStatus.QUEUED, 0, 1)

        # And every lane works: claims (in the old order), outcomes, delays, dead letters
        lease = WorkerLease(worker_id="new", queues=["q"], lease_ms=LEASE_MS)
        await b.register_worker(lease, T0)
        batch = await b.claim_jobs("q", "new", 10, LEASE_MS, T0)
        assert [j.id for j in batch.jobs] == ["ready", "orphan"]
        assert batch.next_due_ms == T0 + 60_000
        done = [
            Completion(job_id=j.id, queue="q", fence=j.fence, result=b"1", finished_at_ms=T0)
            for j in batch.jobs
        ]
        assert await b.complete_jobs("new", done, 60_000) == [True, True]
        assert await b.set_progress("held", "q", "live", 1, 0.5) is True
        assert await b.retry_dead("q", None, T0) == 1
        assert [j.id for j in (await b.claim_jobs("q", "new", 10, LEASE_MS, T0)).jobs] == ["dead"]
        assert await b.promote_due_jobs("q", T0 + 60_000) is None
        [stats] = await b.queue_stats(["q"])
        assert (stats.ready, stats.delayed, stats.in_flight, stats.workers) == (1, 0, 2, 2)

        # And schedules work on it: one fires its tick into the old queue
        await _a_schedule_fires(b)
    finally:
        await b.close()


async def _a_schedule_fires(b: SqliteBackend) -> None:
    assert await b.schedules_version() == 0
    assert await b.add_schedule("s", "q", b"{}", T0) is not None
    job = NewJob(id="s@1", task="t", queue="q", payload=b"{}", enqueued_at_ms=T0 + 1,
                 run_at_ms=T0 + 1, schedule="s", tick_ms=T0 + 1)  # fmt: skip
    fire = ScheduleStep(schedule="s", step=TickStep.FIRE, tick_ms=T0 + 1, job=job)
    assert await b.advance_schedules([fire], 1, T0 + 1) == [TickOutcome.DONE]
    fired = await b.get_job("s@1", "q")
    assert fired is not None
    assert (fired.status, fired.schedule, fired.tick_ms) == (JobStatus.QUEUED, "s", T0 + 1)


async def test_a_version_1_file_is_upgraded_and_its_jobs_move_on(tmp_path: Path) -> None:
    await _every_job_moves_on(old_file(tmp_path / "v1.db", SCHEMA_V1))


async def test_a_version_2_file_is_upgraded_and_its_jobs_move_on(tmp_path: Path) -> None:
    await _every_job_moves_on(old_file(tmp_path / "v2.db", SCHEMA_V2))


async def test_a_version_3_file_is_upgraded_and_its_jobs_move_on(tmp_path: Path) -> None:
    await _every_job_moves_on(old_file(tmp_path / "v3.db", SCHEMA_V3))


async def test_a_version_4_file_is_upgraded_and_its_jobs_move_on(tmp_path: Path) -> None:
    await _every_job_moves_on(old_file(tmp_path / "v4.db", SCHEMA_V4))


async def test_a_version_5_file_is_upgraded_and_its_jobs_move_on(tmp_path: Path) -> None:
    await _every_job_moves_on(old_file(tmp_path / "v5.db", SCHEMA_V5))


async def test_a_version_4_file_keeps_its_schedules_and_their_jobs(tmp_path: Path) -> None:
    # Given a version 4 file with a schedule that fired a tick
    path = old_file(tmp_path / "v4.db", SCHEMA_V4)
    with look(path) as conn:
        conn.execute(
            "INSERT INTO schedules (name, queue, definition, version, last_tick_ms,"
            " created_at_ms, updated_at_ms, fired) VALUES ('s', 'q', x'7b7d', 1, ?, ?, ?, 1)",
            (T0, T0, T0),
        )
        conn.execute("INSERT INTO schedule_fired (name, tick_ms) VALUES ('s', ?)", (T0,))
        conn.execute(
            "INSERT INTO schedule_runs (name, tick_ms, job_id, queue, kind, fired_at_ms)"
            " VALUES ('s', ?, 's@1', 'q', 'tick', ?)",
            (T0, T0),
        )
        conn.execute(
            "INSERT INTO jobs (queue, id, task, status, payload, seq, enqueued_at_ms, run_at_ms,"
            " schedule, tick_ms) VALUES ('q', 's@1', 't', 'queued', x'7b7d', 99, ?, ?, 's', ?)",
            (T0, T0, T0),
        )
        conn.execute("UPDATE meta SET value = 1 WHERE key = 'schedules_version'")
        conn.commit()
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        # When this corq opens it, the schedule, its firing state and its job are as written
        record = await b.get_schedule("s")
        assert record is not None
        assert (record.version, record.last_tick_ms, record.fired) == (1, T0, 1)
        assert record.last_run is not None
        assert record.last_run.job_id == "s@1"
        job = await b.get_job("s@1", "q")
        assert job is not None
        assert (job.status, job.schedule, job.tick_ms, job.workflow) == (
            JobStatus.QUEUED,
            "s",
            T0,
            None,
        )
        # and a backfill of the fired tick is still refused as fired
        again = NewJob(id="s@1b", task="t", queue="q", payload=b"{}", enqueued_at_ms=T0,
                       run_at_ms=T0, schedule="s", tick_ms=T0)  # fmt: skip
        step = ScheduleStep(schedule="s", step=TickStep.BACKFILL, tick_ms=T0, job=again)
        assert await b.advance_schedules([step], None, T0 + 1) == [TickOutcome.STALE]
    finally:
        await b.close()


async def test_names_known_before_the_upgrade_count_as_used_at_it(tmp_path: Path) -> None:
    path = old_file(tmp_path / "v2.db", SCHEMA_V2)
    with look(path) as conn:
        conn.execute("INSERT INTO queues (name) VALUES ('empty')")
        conn.commit()
    before = time.time_ns() // 1_000_000
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        # An hour-idle prune on the broker's clock keeps them: their history is unknown
        assert await b.prune_queues(None, 3_600_000) == []
        with look(path) as conn:
            (used,) = conn.execute(
                "SELECT last_used_ms FROM queues WHERE name = 'empty'"
            ).fetchone()
        assert before - 1_000 <= used <= time.time_ns() // 1_000_000 + 1_000
        # and a prune with no idle time forgets the empty one only
        assert await b.prune_queues(None, 0) == ["empty"]
    finally:
        await b.close()


async def test_backends_opening_an_old_file_together_migrate_it_once(tmp_path: Path) -> None:
    path = old_file(tmp_path / "v1.db", SCHEMA_V1)
    backends = [SqliteBackend(f"sqlite:///{path}") for _ in range(4)]
    try:
        await asyncio.gather(*(b.ping() for b in backends))
        counts = await asyncio.gather(*(b.queue_stats(["q"]) for b in backends))
        assert {stats.ready for [stats] in counts} == {1}
    finally:
        for b in backends:
            await b.close()


async def test_a_half_migrated_file_is_refused_at_once(tmp_path: Path) -> None:
    # A version 2 file where another tool already added one of the version 3 columns: the
    # upgrade cannot run, and retrying will not help
    path = old_file(tmp_path / "v2.db", SCHEMA_V2)
    with look(path) as conn:
        conn.execute("ALTER TABLE workers ADD COLUMN departed INTEGER NOT NULL DEFAULT 0")
        conn.commit()
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        started = time.monotonic()
        with pytest.raises(BrokerDataError, match="duplicate column"):
            await b.ping()
        assert time.monotonic() - started < 2
        with look(path) as conn:  # nothing of the upgrade was kept
            assert conn.execute("PRAGMA user_version").fetchone() == (2,)
            assert "last_used_ms" not in {r[1] for r in conn.execute("PRAGMA table_info(queues)")}
    finally:
        await b.close()


async def test_a_version_3_file_with_a_version_4_column_is_refused(tmp_path: Path) -> None:
    path = old_file(tmp_path / "v3.db", SCHEMA_V3)
    with look(path) as conn:
        conn.execute("ALTER TABLE jobs ADD COLUMN tick_ms INTEGER")
        conn.commit()
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        with pytest.raises(BrokerDataError, match="duplicate column"):
            await b.ping()
        with look(path) as conn:  # nothing of the upgrade was kept
            assert conn.execute("PRAGMA user_version").fetchone() == (3,)
            assert "schedule_tick_id" in columns(path, "jobs")
            assert conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'schedules'"
            ).fetchone() == (0,)
    finally:
        await b.close()


async def test_a_workflow_on_an_upgraded_file_waits_for_a_job_of_the_old_version(
    tmp_path: Path,
) -> None:
    # Given a version 4 file with a job held by a live worker
    path = old_file(tmp_path / "v4.db", SCHEMA_V4)
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        # When a workflow depends on that old job (an external parent)
        child = NewJob(id="child", task="t", queue="q", payload=b"{}", enqueued_at_ms=T0,
                       run_at_ms=T0, workflow="child")  # fmt: skip
        workflow = NewWorkflow(
            id="child",
            kind="depends",
            jobs=[WorkflowJob(job=child, parents=(Edge(parent="held", queue="q"),))],
            outputs=("child",),
            created_at_ms=T0,
        )
        assert await b.enqueue_workflow(workflow, T0) is True
        waiting = await b.get_job("child", "q")
        assert waiting is not None
        assert waiting.status == JobStatus.WAITING

        # Then its completion by the old worker releases the child
        done = Completion(job_id="held", queue="q", fence=1, result=b"1", finished_at_ms=T0)
        assert await b.complete_jobs("live", [done], 60_000) == [True]
        released = await b.get_job("child", "q")
        assert released is not None
        assert released.status == JobStatus.QUEUED
        record = await b.get_workflow("child")
        assert record is not None
        assert (record.ended, record.total) == (0, 1)
    finally:
        await b.close()


async def test_a_version_4_file_with_a_version_5_column_is_refused(tmp_path: Path) -> None:
    path = old_file(tmp_path / "v4.db", SCHEMA_V4)
    with look(path) as conn:
        conn.execute("ALTER TABLE jobs ADD COLUMN notify INTEGER NOT NULL DEFAULT 0")
        conn.commit()
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        with pytest.raises(BrokerDataError, match="duplicate column"):
            await b.ping()
        with look(path) as conn:  # nothing of the upgrade was kept
            assert conn.execute("PRAGMA user_version").fetchone() == (4,)
            assert "workflow" not in columns(path, "jobs")
            assert conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'workflow%'"
            ).fetchone() == (0,)
    finally:
        await b.close()


async def test_a_file_marked_current_without_the_current_schema_is_refused(
    tmp_path: Path,
) -> None:
    # A version 2 file whose version another tool bumped without migrating it
    path = old_file(tmp_path / "v2.db", SCHEMA_V2)
    with look(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        started = time.monotonic()
        with pytest.raises(BrokerDataError):
            await b.register_worker(WorkerLease(worker_id="w", queues=["q"], lease_ms=1), T0)
        with pytest.raises(BrokerDataError):
            await b.enqueue_jobs(
                [NewJob(id="x", task="t", queue="q", payload=b"", enqueued_at_ms=T0, run_at_ms=T0)]
            )
        assert time.monotonic() - started < 2
    finally:
        await b.close()


_DECLARED = re.compile(r"(?P<type>\w+)(?P<not_null> NOT NULL)?(?: DEFAULT (?P<default>.+))?")


def _declared(sql: str) -> tuple[str, bool, str | None]:
    """(type, NOT NULL, default) of a column declaration as record.py writes it."""
    match = _DECLARED.fullmatch(sql)
    assert match is not None, sql
    return match["type"], match["not_null"] is not None, match["default"]


@pytest.mark.parametrize(
    "ddl",
    [None, SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5],
    ids=["new", "v1", "v2", "v3", "v4", "v5"],
)
async def test_the_jobs_table_holds_every_field_of_the_record_as_declared(
    tmp_path: Path, ddl: str | None
) -> None:
    """A field added to the job record (record.JOB_FIELDS) needs a column: schema.sql for
    new files and a migration for older ones. Whichever way a file came to the current
    version, each field has its column, of the declared type, NOT NULL and default."""
    path = tmp_path / "corq.db"
    if ddl is not None:
        old_file(path, ddl)
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        await b.ping()
    finally:
        await b.close()
    with look(path) as conn:
        table = {
            name: (kind, bool(not_null), default)
            for _, name, kind, not_null, default, _ in conn.execute("PRAGMA table_info(jobs)")
        }
    for field in ROW_FIELDS:
        assert field.name in table, f"jobs has no column {field.name}: add a migration"
        assert table[field.name] == _declared(field.sql), field.name
