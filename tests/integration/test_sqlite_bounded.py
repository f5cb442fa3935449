"""SQLite only: no transaction of the hot path does unbounded work.

Reproduced before: with 100,000 due delayed jobs or expired results, every enqueue, claim
and complete promoted or deleted them all while holding the write lock (0.2-0.5 s per
100,000 rows). Now a claim promotes one batch, enqueue and complete expire nothing, and
promote_due_jobs and reclaim work in steps of at most BATCH rows, one transaction each.
Each test counts the rows a call changed (``total_changes`` of the backend's connection).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corq.backends.base import BATCH, Completion, NewJob, WorkerLease
from corq.backends.sqlite import SqliteBackend, claims, outcomes, reclaim
from corq.backends.sqlite.dead import DeadBounds
from corq.backends.sqlite.store import Conn, connect, transaction
from corq.backends.sqlite.thread import Tx
from corq.backends.sqlite.url import parse_url

T0 = 1_700_000_000_000
LEASE_MS = 30_000
MANY = 100_000


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "corq.db"


@pytest.fixture
async def backend(db: Path) -> AsyncIterator[SqliteBackend]:
    # No fsync per commit: the steps of a 100,000-row drain only need to be counted.
    b = SqliteBackend(f"sqlite:///{db}?synchronous=off")
    await b.ping()  # the schema exists before the tests write rows of their own
    yield b
    await b.close()


def fill(db: Path, status: str, **columns: int) -> None:
    """MANY jobs 'm<i>' in queue q with `status` and the given columns, written at once."""
    names = ", ".join(columns)
    values = ", ".join(str(v) for v in columns.values())
    conn = sqlite3.connect(db)
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO jobs (queue, id, task, status, payload, seq, enqueued_at_ms, "
        f"{names}) SELECT 'q', 'm' || i, 't', ?, x'', i, {T0}, {values} FROM n",
        (MANY, status),
    )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (MANY,))
    conn.commit()
    conn.close()


def count(db: Path, where: str) -> int:
    conn = sqlite3.connect(db)
    try:
        (n,) = conn.execute(f"SELECT count(*) FROM jobs WHERE {where}").fetchone()
        return int(n)
    finally:
        conn.close()


async def changes(backend: SqliteBackend) -> int:
    """Rows changed so far by the backend's connection."""
    return await backend._thread.run(lambda conn: conn.total_changes, Tx.NONE)


async def register(backend: SqliteBackend, worker: str = "w1", now_ms: int = T0) -> None:
    lease = WorkerLease(worker_id=worker, queues=["q"], lease_ms=LEASE_MS)
    await backend.register_worker(lease, now_ms)


def new_job(job_id: str, now_ms: int = T0) -> NewJob:
    return NewJob(
        id=job_id, task="t", queue="q", payload=b"", enqueued_at_ms=now_ms, run_at_ms=now_ms
    )


async def test_a_claim_promotes_one_batch_of_many_due_jobs(
    backend: SqliteBackend, db: Path
) -> None:
    # Given 100,000 delayed jobs, all due
    fill(db, "scheduled", run_at_ms=T0 + 1)
    await register(backend, now_ms=T0 + 1)

    # When a worker claims ten
    before = await changes(backend)
    batch = await backend.claim_jobs("q", "w1", 10, LEASE_MS, T0 + 1)

    # Then its transaction promoted one batch only, and says more are due
    assert len(batch.jobs) == 10
    # (each job claimed also writes its attempt row, its event and the event's count)
    assert await changes(backend) - before <= BATCH + 10 * 4 + 5
    assert count(db, "status = 'scheduled'") == MANY - BATCH
    assert batch.next_due_ms == T0 + 1

    # And promote_due_jobs moves the rest, in steps, until nothing is due
    assert await backend.promote_due_jobs("q", T0 + 1) is None
    assert count(db, "status = 'queued'") == MANY - 10


def test_each_promotion_step_is_one_batch(db: Path) -> None:
    conn = connect(parse_url(f"sqlite:///{db}"), 5_000)
    try:
        fill(db, "scheduled", run_at_ms=T0 + 1)
        step = transaction(
            conn,
            lambda c: claims.promote_due_jobs(c, "q", T0 + 1, DeadBounds()),
            write=True,
        )
        promoted, now = step
        assert (promoted.moved, promoted.next_due_ms, now) == (BATCH, T0 + 1, T0 + 1)
    finally:
        conn.close()


async def test_enqueue_and_complete_transactions_leave_expired_results_alone(
    backend: SqliteBackend, db: Path
) -> None:
    # Given 100,000 results that expired long ago, one of them under the id "m7"
    fill(db, "succeeded", run_at_ms=T0, expires_at_ms=T0)
    now = T0 + 10_000

    # When a producer enqueues, reusing an expired id
    before = await changes(backend)
    assert await backend.enqueue_jobs([new_job("m7", now), new_job("fresh", now)]) == [True, True]

    # Then its transaction deleted nothing, and the id starts a new job
    assert await changes(backend) - before < 10
    assert count(db, f"expires_at_ms <= {T0}") == MANY - 1
    reused = await backend.get_job("m7", "q")
    assert reused is not None
    assert (reused.status, reused.result, reused.attempt) == ("queued", None, 0)

    # And a complete transaction deletes nothing either
    await register(backend, now_ms=now)
    jobs = (await backend.claim_jobs("q", "w1", 2, LEASE_MS, now)).jobs
    done = [
        Completion(job_id=j.id, queue="q", fence=j.fence, result=b"", finished_at_ms=now)
        for j in jobs
    ]

    def complete_only(c: Conn) -> list[bool]:
        return outcomes.complete_jobs(c, "w1", done, 60_000)

    assert await backend._thread.run(complete_only) == [True, True]
    assert count(db, f"expires_at_ms <= {T0}") == MANY - 1


@pytest.mark.parametrize("call", ["promote", "complete"])
async def test_expired_results_go_in_steps_after_promotion_or_completion(
    backend: SqliteBackend, db: Path, call: str
) -> None:
    """A worker that only ever completes (no delayed job makes it promote) still keeps the
    number of expired results bounded."""
    fill(db, "succeeded", run_at_ms=T0, expires_at_ms=T0)
    await register(backend)
    await backend.enqueue_jobs([new_job("a", T0 + 1)])
    (a,) = (await backend.claim_jobs("q", "w1", 1, LEASE_MS, T0 + 1)).jobs

    if call == "promote":
        assert await backend.promote_due_jobs("q", T0 + 1) is None
    else:
        done = Completion(job_id="a", queue="q", fence=a.fence, result=b"", finished_at_ms=T0 + 1)
        assert await backend.complete_jobs("w1", [done], 60_000) == [True]

    assert count(db, f"expires_at_ms <= {T0}") == 0
    assert await backend.get_job("a", "q") is not None


def test_each_expiry_step_is_one_batch(db: Path) -> None:
    conn = connect(parse_url(f"sqlite:///{db}"), 5_000)
    try:
        fill(db, "succeeded", run_at_ms=T0, expires_at_ms=T0)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'clock_ms'", (T0 + 1,))
        deleted = transaction(conn, claims.expire_results, write=True)
        assert deleted == BATCH
        assert count(db, "1") == MANY - BATCH
    finally:
        conn.close()


async def test_a_reclaim_of_many_jobs_is_stepwise_and_unregisters_first(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a dead holder with more jobs than one batch, and a second, live one
    fill(db, "running", run_at_ms=T0)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE jobs SET worker_id = 'dead', fence = 1, attempt = 1")
    conn.commit()
    conn.close()
    await register(backend, "dead")
    lease = WorkerLease(worker_id="dead", queues=["q"], lease_ms=LEASE_MS)
    later = T0 + LEASE_MS + 1

    # When the first step of a reclaim runs (one transaction)
    def first_step(c: Conn) -> reclaim.ReclaimStep:
        return reclaim.reclaim_step(c, "q", later, 3, DeadBounds(), first=True)

    step = await backend._thread.run(first_step)

    # Then it took back one batch, and the holder is already unregistered: a heartbeat
    # landing between two steps cannot bring it back
    assert (len(step.reclaimed), step.more) == (BATCH, True)
    assert await backend.heartbeat(lease, later) == ["q"]
    assert (await backend.claim_jobs("q", "dead", 1, LEASE_MS, later)).lost

    # And a full reclaim takes back the rest, in steps
    rest = await backend.reclaim_stalled_jobs("q", later, 3)
    assert len(rest) == MANY - BATCH
    assert count(db, "status = 'running'") == 0
    assert count(db, "status = 'queued' AND deaths = 1") == MANY
