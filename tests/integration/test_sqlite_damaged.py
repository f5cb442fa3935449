"""SQLite only: rows another program damaged cost only themselves.

SQLite stores any value in any column, and a file may come from another writer whose
schema has no NOT NULL constraints (here: this corq's schema with them taken out, which is
also what an edited schema looks like). Each case writes the damage with plain sqlite3 and
checks that the one job goes to the dead letters, that every other job goes on, and that no
call fails (a failing claim would make every worker of the queue crash in turn).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corq.backends.base import BATCH, Completion, NewJob, WorkerLease, damaged_error
from corq.backends.record import Kind
from corq.backends.sqlite import SqliteBackend
from corq.backends.sqlite.columns import CHECKED_COLUMNS, ROW_FIELDS, SHOWN_COLUMNS, SQL_CHECKS
from corq.backends.sqlite.records import CHECKS, CHECKS_BY_KIND, Checked, damage, looks_readable
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import connect
from corq.backends.sqlite.url import parse_url
from corq.job import Job, JobStatus
from tests.integration.sqlite_files import write_loose_schema, writer

T0 = 1_700_000_000_000
LEASE_MS = 30_000
DAMAGED = damaged_error("")


def new_job(job_id: str, *, delay_ms: int = 0, queue: str = "q") -> NewJob:
    return NewJob(
        id=job_id,
        task="t",
        queue=queue,
        payload=b"{}",
        enqueued_at_ms=T0,
        run_at_ms=T0 + delay_ms,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "corq.db"


@pytest.fixture
def loose_db(db: Path) -> Path:
    """A file whose schema has no NOT NULL constraint (another writer's, or an edited one),
    so NULLs can sit where corq never writes them."""
    return write_loose_schema(db)


@pytest.fixture
async def backend(db: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(f"sqlite:///{db}")
    yield b
    await b.close()


def corrupt(db: Path, job_id: str, column: str, value: object) -> None:
    with writer(db) as conn:
        changed = conn.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))
        assert changed.rowcount == 1


async def register(backend: SqliteBackend, worker: str = "w1", now_ms: int = T0) -> None:
    await backend.register_worker(
        WorkerLease(worker_id=worker, queues=["q"], lease_ms=LEASE_MS), now_ms
    )


async def claimed_ids(backend: SqliteBackend, worker: str = "w1", now_ms: int = T0) -> list[str]:
    batch = await backend.claim_jobs("q", worker, 100, LEASE_MS, now_ms)
    assert not batch.lost
    return [job.id for job in batch.jobs]


async def dead(backend: SqliteBackend) -> dict[str, Job]:
    return {job.id: job for job in await backend.list_dead("q", limit=1000)}


# -- ready rows -----------------------------------------------------------------------

READY_DAMAGE = [
    pytest.param("payload", "{}", id="text payload"),
    pytest.param("priority", "high", id="text priority"),
    pytest.param("attempt", 1.5, id="real attempt"),
    pytest.param("fence", 2**63 - 1, id="fence that cannot grow"),
    pytest.param("suspect", 7, id="suspect flag not 0 or 1"),
    pytest.param("death_log", b"\x00", id="blob death log"),
]
NULL_DAMAGE = ["payload", "priority", "seq", "fence", "attempt", "enqueued_at_ms", "death_log"]


async def _claim_around_damage(
    backend: SqliteBackend, db: Path, column: str, value: object
) -> None:
    # Given three ready jobs, the middle one damaged by another program
    await backend.enqueue_jobs([new_job("a"), new_job("b"), new_job("c")])
    corrupt(db, "b", column, value)
    await register(backend)

    # When a worker claims (twice: nothing is left behind for a second claim to trip on)
    assert await claimed_ids(backend) == ["a", "c"]
    assert await claimed_ids(backend) == []

    # Then the damaged one is a dead letter naming the column, the others are held
    (job,) = (await dead(backend)).values()
    assert job.id == "b"
    assert job.error is not None
    assert job.error.startswith(DAMAGED)
    assert column in job.error
    [stats] = await backend.queue_stats(["q"])
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 2, 1)


@pytest.mark.parametrize(("column", "value"), READY_DAMAGE)
async def test_a_damaged_ready_row_is_dead_lettered_by_the_claim(
    backend: SqliteBackend, db: Path, column: str, value: object
) -> None:
    await _claim_around_damage(backend, db, column, value)


@pytest.mark.parametrize("column", NULL_DAMAGE)
async def test_a_null_where_corq_never_writes_one_is_dead_lettered_by_the_claim(
    loose_db: Path, column: str
) -> None:
    b = SqliteBackend(f"sqlite:///{loose_db}")
    try:
        await _claim_around_damage(b, loose_db, column, None)
    finally:
        await b.close()


async def test_two_workers_meet_a_damaged_row_and_both_go_on(db: Path) -> None:
    # Given a queue whose oldest job another program damaged, served by two workers
    first, second = SqliteBackend(f"sqlite:///{db}"), SqliteBackend(f"sqlite:///{db}")
    try:
        await first.enqueue_jobs([new_job(f"j{i}") for i in range(5)])
        corrupt(db, "j0", "payload", "not bytes")
        await register(first, "w1")
        await register(second, "w2")

        # When both claim, one at a time
        got = []
        for _ in range(3):
            for backend, worker in ((first, "w1"), (second, "w2")):
                batch = await backend.claim_jobs("q", worker, 1, LEASE_MS, T0)
                got += [job.id for job in batch.jobs]

        # Then every healthy job was handed out once, the damaged one to nobody
        assert got == ["j1", "j2", "j3", "j4"]
        assert set(await dead(first)) == {"j0"}
    finally:
        await first.close()
        await second.close()


async def test_a_row_with_no_task_is_handed_out_with_an_empty_name(
    loose_db: Path,
) -> None:
    b = SqliteBackend(f"sqlite:///{loose_db}")
    try:
        await b.enqueue_jobs([new_job("a")])
        corrupt(loose_db, "a", "task", None)
        await register(b)
        batch = await b.claim_jobs("q", "w1", 1, LEASE_MS, T0)
        assert [(job.id, job.task) for job in batch.jobs] == [("a", "")]
    finally:
        await b.close()


# -- delayed rows ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [("run_at_ms", "tomorrow"), ("run_at_ms", b"\x01"), ("run_at_ms", T0 + 0.5), ("payload", "x")],
)
async def test_a_damaged_delayed_row_is_dead_lettered_by_promotion(
    backend: SqliteBackend, db: Path, column: str, value: object
) -> None:
    # Given delayed jobs due at +1 s, one damaged, and one due at +9 s
    await backend.enqueue_jobs(
        [new_job(f"d{i}", delay_ms=1_000) for i in range(3)] + [new_job("later", delay_ms=9_000)]
    )
    corrupt(db, "d1", column, value)

    # When they are due, then the healthy ones are promoted, the damaged one is dead
    assert await backend.promote_due_jobs("q", T0 + 1_000) == T0 + 9_000
    assert set(await dead(backend)) == {"d1"}
    await register(backend)
    assert await claimed_ids(backend, now_ms=T0 + 1_000) == ["d0", "d2"]
    # and later promotions go on
    assert await claimed_ids(backend, now_ms=T0 + 9_000) == ["later"]


async def test_a_delayed_row_with_no_run_time_is_dead_lettered_by_a_claim(loose_db: Path) -> None:
    b = SqliteBackend(f"sqlite:///{loose_db}")
    try:
        await b.enqueue_jobs([new_job("d0", delay_ms=1_000), new_job("d1", delay_ms=1_000)])
        corrupt(loose_db, "d0", "run_at_ms", None)
        await register(b)
        assert await claimed_ids(b, now_ms=T0 + 1_000) == ["d1"]
        assert set(await dead(b)) == {"d0"}
    finally:
        await b.close()


# -- held rows ------------------------------------------------------------------------


async def test_a_held_row_damaged_while_it_runs_is_never_left_running(
    backend: SqliteBackend, db: Path
) -> None:
    # Given w1 holding two jobs, one of which another program damaged
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    a, b = (await backend.claim_jobs("q", "w1", 2, LEASE_MS, T0)).jobs
    corrupt(db, "b", "attempt", "many")

    # When w1 completes both, the damaged one is refused without an error
    done = [
        Completion(job_id=j.id, queue="q", fence=j.fence, result=b"1", finished_at_ms=T0)
        for j in (a, b)
    ]
    assert await backend.complete_jobs("w1", done, 60_000) == [True, False]

    # Then its next look at what it holds sends the damaged one to the dead letters
    assert await backend.list_held_jobs("q", "w1") == []
    assert set(await dead(backend)) == {"b"}
    assert await backend.count_held_jobs("q", "w1") == 0


async def test_a_running_row_with_no_holder_is_dead_lettered_by_reclaim(
    loose_db: Path,
) -> None:
    b = SqliteBackend(f"sqlite:///{loose_db}")
    try:
        await b.enqueue_jobs([new_job("a"), new_job("b")])
        await register(b)
        assert len((await b.claim_jobs("q", "w1", 2, LEASE_MS, T0)).jobs) == 2
        corrupt(loose_db, "a", "worker_id", None)

        reclaimed = await b.reclaim_stalled_jobs("q", T0 + LEASE_MS + 1, max_deaths=3)

        assert sorted((r.job_id, r.dead) for r in reclaimed) == [("b", False)]
        assert set(await dead(b)) == {"a"}
        [stats] = await b.queue_stats(["q"])
        assert (stats.ready, stats.in_flight) == (1, 0)
    finally:
        await b.close()


# -- the meta rows ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "garbage", 2**62])
async def test_a_missing_or_unreadable_fifo_counter_is_made_again(
    backend: SqliteBackend, db: Path, value: object
) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    with writer(db) as conn:
        if value is None:
            conn.execute("DELETE FROM meta WHERE key = 'seq'")
        else:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (value,))

    assert await backend.enqueue_jobs([new_job("c"), new_job("d")]) == [True, True]

    await register(backend)
    assert await claimed_ids(backend) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("value", [None, "garbage"])
async def test_a_missing_or_unreadable_clock_is_made_again(
    backend: SqliteBackend, db: Path, value: object
) -> None:
    # Given a result kept for 1 s, and the clock row damaged
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (a,) = (await backend.claim_jobs("q", "w1", 1, LEASE_MS, T0)).jobs
    with writer(db) as conn:
        if value is None:
            conn.execute("DELETE FROM meta WHERE key = 'clock_ms'")
        else:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'clock_ms'", (value,))
    done = Completion(job_id="a", queue="q", fence=a.fence, result=b"1", finished_at_ms=T0)
    assert await backend.complete_jobs("w1", [done], 1_000) == [True]

    # Then reads and expiry work on the clock made again
    assert (await backend.get_job("a", "q")) is not None
    await backend.promote_due_jobs("q", T0 + 1_000)
    assert await backend.get_job("a", "q") is None


# -- text that is not UTF-8 -------------------------------------------------------------


def raw_text(data: bytes) -> str:
    """SQL for TEXT holding `data` as is (another program's bytes, maybe not UTF-8)."""
    return f"CAST(x'{data.hex()}' AS TEXT)"


async def test_an_id_that_is_not_utf8_is_dead_lettered_and_can_be_purged(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a ready job whose id another program wrote as bytes that are not UTF-8
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    bad_id = raw_text(b"bad-\xff")
    with writer(db) as conn:
        conn.execute(f"UPDATE jobs SET id = {bad_id} WHERE id = 'a'")
    await register(backend)

    # When a worker claims, it gets the healthy job; the other (which no later call could
    # name) is a dead letter, listed under its id decoded with replacement
    assert await claimed_ids(backend) == ["b"]
    (job,) = (await dead(backend)).values()
    assert job.id == "bad-\ufffd"
    assert job.error == damaged_error("id is not valid UTF-8")

    # And the operator can retry it (it comes back, dies again) and purge it
    assert await backend.retry_dead("q", None, T0 + 1) == 1
    assert await claimed_ids(backend, now_ms=T0 + 1) == []
    assert await backend.purge_dead("q", None) == 1
    assert await backend.list_dead("q") == []


async def test_text_that_is_not_utf8_reads_with_replacement(
    backend: SqliteBackend, db: Path
) -> None:
    await backend.enqueue_jobs([new_job("a")])
    task, error, log, name = (raw_text(b) for b in (b"t\xfe", b"e\xff", b"w\xff", b"q\xff"))
    with writer(db) as conn:
        conn.execute(f"UPDATE jobs SET task = {task}, error = {error}, death_log = {log}")
        conn.execute(f"INSERT INTO queues (name) VALUES ({name})")

    job = await backend.get_job("a")
    assert job is not None
    assert (job.task, job.error, job.death_log) == ("t\ufffd", "e\ufffd", ("w\ufffd",))
    assert await backend.list_queues() == ["q"]
    assert [s.queue for s in await backend.queue_stats()] == ["q"]


async def test_names_that_are_not_queue_names_are_skipped_and_pruned(
    backend: SqliteBackend, db: Path
) -> None:
    await backend.enqueue_jobs([new_job("a")])
    not_utf8 = raw_text(b"\xff")
    with writer(db) as conn:
        conn.execute("INSERT INTO queues (name, last_used_ms) VALUES ('has space', 0)")
        conn.execute(f"INSERT INTO queues (name, last_used_ms) VALUES ({not_utf8}, 0)")

    assert await backend.list_queues() == ["q"]
    assert await backend.prune_queues(T0, 1) == []  # the invalid ones go, unreported
    with writer(db) as conn:
        assert conn.execute("SELECT count(*) FROM queues").fetchone() == (1,)


# -- dead letters -----------------------------------------------------------------------


async def test_a_corrupt_dead_letter_is_listed_retried_and_purged(loose_db: Path) -> None:
    b = SqliteBackend(f"sqlite:///{loose_db}")
    try:
        # Given dead letters garbled every way another program could
        await b.enqueue_jobs([new_job(j) for j in "abcde"])
        await register(b)
        with writer(loose_db) as conn:
            conn.execute("UPDATE jobs SET status = 'dead', finished_at_ms = 1")
            conn.execute("UPDATE jobs SET finished_at_ms = 'yesterday' WHERE id = 'a'")
            conn.execute("UPDATE jobs SET finished_at_ms = NULL, fence = NULL WHERE id = 'b'")
            conn.execute("UPDATE jobs SET attempt = NULL, priority = 'x' WHERE id = 'c'")
            conn.execute("UPDATE jobs SET progress = 'half', result = 'r' WHERE id = 'd'")

        # Then all are listed and read, each damaged one saying so
        listed = await dead(b)
        assert set(listed) == set("abcde")
        for job_id in "abcd":
            error = listed[job_id].error
            assert error is not None
            assert error.startswith(DAMAGED), job_id
        [stats] = await b.queue_stats(["q"])
        assert stats.dead == 5

        # And retrying them all queues each once, its unreadable numbers reset
        assert await b.retry_dead("q", None, T0 + 1) == 5
        got = (await b.claim_jobs("q", "w1", 10, LEASE_MS, T0 + 1)).jobs
        assert sorted(j.id for j in got) == list("abcde")
        by_id = {j.id: j for j in got}
        assert (by_id["b"].fence, by_id["c"].attempt, by_id["c"].priority) == (1, 1, 0)

        # And purging works on what is left dead
        with writer(loose_db) as conn:
            conn.execute("UPDATE jobs SET status = 'dead', payload = NULL")
        assert await b.purge_dead("q", ["a"]) == 1
        assert await b.purge_dead("q", None) == 4
        assert await b.list_dead("q") == []
    finally:
        await b.close()


async def test_many_damaged_rows_cost_a_claim_one_batch_of_dead_letters(
    backend: SqliteBackend, db: Path
) -> None:
    # Given more damaged ready rows than one batch, then a healthy job
    await backend.enqueue_jobs([new_job(f"x{i}") for i in range(BATCH + 5)] + [new_job("ok")])
    with writer(db) as conn:
        conn.execute("UPDATE jobs SET payload = 'text' WHERE id != 'ok'")
    await register(backend)

    # When workers claim, each claim goes on past the damaged rows to the healthy one
    assert await claimed_ids(backend) == ["ok"]
    [stats] = await backend.queue_stats(["q"])
    assert (stats.ready, stats.dead) == (0, BATCH + 5)


# -- one rule in SQL and in Python ------------------------------------------------------


_CHECKED_COLUMNS = ", ".join(CHECKED_COLUMNS)


def _row(conn: sqlite3.Connection, job_id: str) -> Checked:
    found = conn.execute(f"SELECT {_CHECKED_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
    row: Checked = Checked._make(found.fetchone())
    return row


def _row_by_rowid(conn: sqlite3.Connection, rowid: int) -> Checked:
    found = conn.execute(f"SELECT {_CHECKED_COLUMNS} FROM jobs WHERE rowid = ?", (rowid,))
    row: Checked = Checked._make(found.fetchone())
    return row


BAD_VALUES: list[object] = [None, "text", b"blob", 1.5, -1, 2**62, 2**63 - 1]


def _checks_pass(row: Checked) -> bool:
    return all(ok(getattr(row, name)) for name, ok in CHECKS)


def test_the_sql_readable_part_and_the_python_checks_agree(loose_db: Path) -> None:
    """Outcomes check rows in SQL (`{readable}` in queries.sql), claims check them in
    Python (records.CHECKS, and all at once in looks_readable): for every checked field and
    damaging value, all three agree."""
    checked_in_sql = {name for name, _ in CHECKS} - {"id", "task", "fence"}
    with writer(loose_db) as conn:
        conn.execute(
            "INSERT INTO jobs (queue, id, task, status, payload, seq, enqueued_at_ms, run_at_ms)"
            " VALUES ('q', 'a', 't', 'queued', x'00', 1, 1, 1)"
        )
        readable_sql = "SELECT count(*) FROM jobs WHERE id = 'a' AND " + _readable_part()
        assert conn.execute(readable_sql).fetchone() == (1,)
        assert damage(conn, _row(conn, "a")) is None
        for name in ("id", "fence"):  # checked in Python only (SQL matches them by value)
            for value in [*BAD_VALUES, ""]:
                original = conn.execute(f"SELECT {name} FROM jobs WHERE id = 'a'").fetchone()[0]
                conn.execute(f"UPDATE jobs SET {name} = ? WHERE rowid = 1", (value,))
                row = _row_by_rowid(conn, 1)
                assert looks_readable(row) == _checks_pass(row), (name, value)
                conn.execute(f"UPDATE jobs SET {name} = ? WHERE rowid = 1", (original,))
        for name in sorted(checked_in_sql):
            for value in BAD_VALUES:
                original = conn.execute(f"SELECT {name} FROM jobs WHERE id = 'a'").fetchone()[0]
                conn.execute(f"UPDATE jobs SET {name} = ? WHERE id = 'a'", (value,))
                stored = conn.execute(f"SELECT {name} FROM jobs WHERE id = 'a'").fetchone()[0]
                in_sql = conn.execute(readable_sql).fetchone() == (1,)
                row = _row(conn, "a")
                in_python = damage(conn, row) is None
                assert in_sql == in_python == _checks_pass(row), (name, value, stored)
                assert looks_readable(row) == in_python, (name, value, stored)
                conn.execute(f"UPDATE jobs SET {name} = ? WHERE id = 'a'", (original,))


KIND_VALUES: list[object] = [
    *BAD_VALUES,
    "",
    "queued",
    "dead",
    b"",
    0,
    1,
    2,
    0.0,
    float("inf"),
    -(2**63),
    "a b",
]


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_is_checked_alike_in_sql_and_in_python(kind: Kind) -> None:
    """Every kind, used by a checked field today or not, has the same check in SQL
    (columns.SQL_CHECKS) and in Python (records.KIND_CHECKS), for any value stored in a
    column of the type the kind's fields declare (the SQL checks lean on its affinity: an
    INTEGER column keeps no whole REAL, it stores it as an integer)."""
    declared = next(f.sql.split()[0] for f in ROW_FIELDS if f.kind is kind)
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE TABLE t (v {declared})")
        in_sql = f"SELECT {SQL_CHECKS[kind].format(c='v')} IS 1 FROM t"
        in_python = CHECKS_BY_KIND[kind]
        for value in KIND_VALUES:
            conn.execute("DELETE FROM t")
            conn.execute("INSERT INTO t VALUES (?)", (value,))
            (stored,) = conn.execute("SELECT v FROM t").fetchone()
            (ok,) = conn.execute(in_sql).fetchone()
            assert bool(ok) == in_python(stored), (kind, value)
    finally:
        conn.close()


def _readable_part() -> str:
    """The readable part as job_complete includes it (its WHERE clause after the fence,
    before what it returns)."""
    where = Q["job_complete"].split("AND fence = :fence AND", 1)[1]
    return where.split("RETURNING", 1)[0].strip()


#: The statements whose rows are read as records.Checked (reclaiming_held adds two columns).
CHECKED_BY = (
    "claim_pick", "claim_pick_suspects", "delayed_due", "delayed_unreadable", "held_list",
    "held_by_rowid", "reclaiming_held",
)  # fmt: skip


def test_every_statement_that_acts_on_jobs_selects_the_checked_columns(db: Path) -> None:
    """Rows are read by the names of CHECKED_COLUMNS (and SHOWN_COLUMNS for reads): the
    column names each statement returns must be those, in that order."""
    conn = connect(parse_url(f"sqlite:///{db}"), 5_000)
    try:
        params = {"queue": "q", "worker": "w", "limit": 1, "after": 0, "rowid": 1, "suspect": 0,
                  "lane": "", "now": 0, "count": 1, "id": "a", "clock": 0, "offset": 0}  # fmt: skip
        for name in CHECKED_BY:
            described = [d[0] for d in conn.execute(Q[name], params).description]
            plain = [column.split(".")[-1] for column in described]
            extra = ["holder", "departed"] if name == "reclaiming_held" else []
            assert plain == [*CHECKED_COLUMNS, *extra], name
        for name in ("job_get", "job_get_any_queue", "dead_list"):
            described = [d[0] for d in conn.execute(Q[name], params).description]
            assert described == list(SHOWN_COLUMNS), name
    finally:
        conn.close()


#: Every column of a job row but its queue (part of the key, and of every lookup).
JOB_TABLE_COLUMNS = [*(f.name for f in ROW_FIELDS if f.name != "queue"), "expires_at_ms"]
ANY_VALUES: list[object] = [None, "", "text", b"\xff", 1.5, -1, 2**63 - 1, -(2**63), "9" * 5_000]


@pytest.mark.parametrize("column", JOB_TABLE_COLUMNS)
async def test_no_value_in_any_column_fails_a_call_or_holds_up_other_jobs(
    loose_db: Path, column: str
) -> None:
    """Whatever another program writes into one column of one job (ready, delayed or held),
    every call still answers, and the healthy jobs beside it all run."""
    for n, value in enumerate(ANY_VALUES):
        b = SqliteBackend(f"sqlite:///{loose_db}")
        queue = f"q{n}"
        try:
            await _every_call_answers(b, loose_db, queue, column, value)
        finally:
            await b.close()


async def _every_call_answers(
    b: SqliteBackend, db: Path, queue: str, column: str, value: object
) -> None:
    now = T0 + 1_000
    lease = WorkerLease(worker_id="w", queues=[queue], lease_ms=LEASE_MS)
    # Given a held job, then a ready one and a due delayed one, each beside a healthy twin
    await b.enqueue_jobs([new_job("held", queue=queue), new_job("held-ok", queue=queue)])
    await b.register_worker(lease, T0)
    assert len((await b.claim_jobs(queue, "w", 2, LEASE_MS, T0)).jobs) == 2
    jobs = [new_job(j, queue=queue) for j in ("ready", "ready-ok")]
    jobs += [new_job(j, queue=queue, delay_ms=500) for j in ("later", "later-ok")]
    await b.enqueue_jobs(jobs)
    with writer(db) as conn:
        for job_id in ("held", "ready", "later"):
            # one row at a time: a unique id can be given to one row only
            with contextlib.suppress(sqlite3.IntegrityError):
                sql = f"UPDATE jobs SET {column} = ? WHERE queue = ? AND id = ?"
                conn.execute(sql, (value, queue, job_id))

    # When every call meets the damaged rows, then each answers
    for job_id in ("held", "ready", "later", "held-ok"):
        await b.get_job(job_id, queue)
        await b.get_job(job_id)
    await b.list_held_jobs(queue, "w")
    await b.count_held_jobs(queue, "w")
    await b.set_progress("held", queue, "w", 1, 0.5)
    await b.cancel_job("ready", queue, now)
    await b.promote_due_jobs(queue, now)
    got = (await b.claim_jobs(queue, "w", 10, LEASE_MS, now)).jobs
    await b.wait_for_jobs(queue, 0)
    await b.queue_stats([queue])
    await b.list_queues()
    await b.list_dead(queue)
    await b.reclaim_stalled_jobs(queue, now + 2 * LEASE_MS, max_deaths=3)
    # (nothing is left running: a reclaim takes back or dead-letters every held job, even
    # one whose holder another program renamed to an id nobody registered)
    with writer(db) as conn:
        running = "SELECT count(*) FROM jobs WHERE queue = ? AND status = 'running'"
        assert conn.execute(running, (queue,)).fetchone() == (0,), (column, value)
    await b.retry_dead(queue, None, now)
    await b.purge_dead(queue, None)

    # And the healthy twins were claimed (the held one was reclaimed back to the queue)
    claimed = {j.id for j in got}
    assert {"ready-ok", "later-ok"} <= claimed, (column, value, claimed)
    twin = await b.get_job("held-ok", queue)
    assert twin is not None
    assert twin.status is JobStatus.QUEUED, (column, value)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("workers", "lease_deadline_ms"),
        ("workers", "departed"),
        ("workers", "worker_id"),
        ("queues", "last_used_ms"),
        ("meta", "value"),
    ],
)
async def test_no_value_in_a_registration_or_counter_fails_a_call(
    loose_db: Path, table: str, column: str
) -> None:
    """A damaged worker registration, queue name row or counter costs at most that
    registration (its holder is reclaimed, or told it is lost and registers again)."""
    for n, value in enumerate(ANY_VALUES):
        b = SqliteBackend(f"sqlite:///{loose_db}")
        queue = f"q{n}"
        lease = WorkerLease(worker_id="w", queues=[queue], lease_ms=LEASE_MS)
        try:
            await b.enqueue_jobs([new_job(j, queue=queue) for j in ("a", "b")])
            await b.register_worker(lease, T0)
            assert len((await b.claim_jobs(queue, "w", 1, LEASE_MS, T0)).jobs) == 1
            with writer(loose_db) as conn, contextlib.suppress(sqlite3.IntegrityError):
                conn.execute(f"UPDATE {table} SET {column} = ?", (value,))

            lost = await b.heartbeat(lease, T0 + 1)
            if lost:
                await b.register_worker(lease, T0 + 1)
            batch = await b.claim_jobs(queue, "w", 5, LEASE_MS, T0 + 1)
            assert not batch.lost
            await b.end_leases(lease)
            await b.queue_stats()
            await b.list_queues()
            await b.prune_queues(T0, 0)
            await b.reclaim_stalled_jobs(queue, T0 + 2 * LEASE_MS, max_deaths=3)
            await b.deregister_worker(lease, T0 + 2 * LEASE_MS)
            assert await b.enqueue_jobs([new_job("c", queue=queue)]) == [True]
            await b.register_worker(lease, T0 + 2 * LEASE_MS)
            got = (await b.claim_jobs(queue, "w", 5, LEASE_MS, T0 + 2 * LEASE_MS)).jobs
            assert "c" in {j.id for j in got}, (table, column, value)
        finally:
            await b.close()
