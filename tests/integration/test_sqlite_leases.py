"""SQLite only: registrations as rows, on the clock of the machine that holds the file.

Regression: version 2 deleted the registration of a worker that deregistered while still
holding jobs (a claim in flight at shutdown), so nothing ever reclaimed them and they stayed
running for ever. Now such a holder departs: its row stays, flagged, until its linger
passes and reclaim gives the jobs back as releases.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corq.backends.base import Completion, NewJob, Reclaimed, WorkerLease
from corq.backends.sqlite import SqliteBackend
from corq.job import JobStatus

T0 = 1_700_000_000_000
LEASE_MS = 30_000


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "corq.db"


@pytest.fixture
async def backend(db: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(f"sqlite:///{db}")
    yield b
    await b.close()


def workers(db: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT worker_id, lease_deadline_ms, departed FROM workers ORDER BY worker_id"
        ).fetchall()
    finally:
        conn.close()


def new_job(job_id: str, now_ms: int = T0) -> NewJob:
    return NewJob(
        id=job_id, task="t", queue="q", payload=b"", enqueued_at_ms=now_ms, run_at_ms=now_ms
    )


async def test_a_worker_that_deregisters_holding_jobs_departs_and_its_jobs_come_back(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a worker holding two jobs (claimed as it shut down) and done with a third
    await backend.enqueue_jobs([new_job("a"), new_job("b"), new_job("c")])
    lease = WorkerLease(worker_id="w1", queues=["q"], lease_ms=LEASE_MS)
    await backend.register_worker(lease, T0)
    a, b, c = (await backend.claim_jobs("q", "w1", 3, LEASE_MS, T0)).jobs
    done = Completion(job_id=c.id, queue="q", fence=c.fence, result=b"", finished_at_ms=T0)
    assert await backend.complete_jobs("w1", [done], 60_000) == [True]

    # When it deregisters with a linger of 5 s
    await backend.deregister_worker(lease, T0 + 1, linger_ms=5_000)

    # Then its row stays, departed, with the linger as its lease (version 2 deleted it)
    assert workers(db) == [("w1", T0 + 5_001, 1)]
    assert await backend.heartbeat(lease, T0 + 2) == ["q"]  # it left: not renewed
    # and nothing is taken back before the linger passes
    assert await backend.reclaim_stalled_jobs("q", T0 + 5_001, max_deaths=3) == []

    # And after it, both jobs come back as releases: no death, attempt kept
    reclaimed = await backend.reclaim_stalled_jobs("q", T0 + 5_002, max_deaths=3)
    assert sorted(r.job_id for r in reclaimed) == ["a", "b"]
    assert all(r.released and not r.dead and r.worker_id == "w1" for r in reclaimed)
    for job_id in ("a", "b"):
        job = await backend.get_job(job_id, "q")
        assert job is not None
        assert (job.status, job.deaths, job.attempt, job.worker_id) == (
            JobStatus.QUEUED,
            0,
            1,
            None,
        )
    assert workers(db) == []
    await backend.register_worker(WorkerLease(worker_id="w2", queues=["q"], lease_ms=1), T0)
    again = await backend.claim_jobs("q", "w2", 5, LEASE_MS, T0 + 5_003)
    assert [(j.id, j.attempt) for j in again.jobs] == [("a", 2), ("b", 2)]
    assert {a.id, b.id} == {"a", "b"}


async def test_a_departed_worker_still_records_the_outcome_of_a_job_that_outlived_it(
    backend: SqliteBackend,
) -> None:
    # A plain function whose thread outlived the grace period finishes during the linger
    await backend.enqueue_jobs([new_job("a")])
    lease = WorkerLease(worker_id="w1", queues=["q"], lease_ms=LEASE_MS)
    await backend.register_worker(lease, T0)
    (a,) = (await backend.claim_jobs("q", "w1", 1, LEASE_MS, T0)).jobs
    await backend.deregister_worker(lease, T0, linger_ms=10_000)

    done = Completion(job_id="a", queue="q", fence=a.fence, result=b"7", finished_at_ms=T0 + 9)
    assert await backend.complete_jobs("w1", [done], 60_000) == [True]
    assert await backend.reclaim_stalled_jobs("q", T0 + 20_000, max_deaths=3) == []


async def test_a_worker_holding_nothing_is_removed_at_once(
    backend: SqliteBackend, db: Path
) -> None:
    lease = WorkerLease(worker_id="w1", queues=["q", "r"], lease_ms=LEASE_MS)
    await backend.register_worker(lease, T0)
    await backend.enqueue_jobs([new_job("a")])
    await backend.claim_jobs("q", "w1", 1, LEASE_MS, T0)

    await backend.deregister_worker(lease, T0, linger_ms=0)

    # departed where it holds a job, gone where it holds none
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT queue, departed FROM workers").fetchall()
    finally:
        conn.close()
    assert rows == [("q", 1)]


def machine_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_without_a_time_the_machine_clock_is_read_inside_the_transaction(
    backend: SqliteBackend, db: Path
) -> None:
    # Given times given by nobody (None): the broker's own clock
    lease = WorkerLease(worker_id="w1", queues=["q"], lease_ms=LEASE_MS)
    before = machine_ms()
    await backend.register_worker(lease, None)
    await backend.enqueue_jobs([new_job("a", before)])
    (a,) = (await backend.claim_jobs("q", "w1", 1, LEASE_MS, None)).jobs
    after = machine_ms()

    # Then the lease and the start are stamped by this machine's clock
    [(_, deadline, _)] = workers(db)
    assert isinstance(deadline, int)
    assert before + LEASE_MS <= deadline <= after + LEASE_MS
    job = await backend.get_job("a", "q")
    assert job is not None
    assert job.started_at_ms is not None
    assert before <= job.started_at_ms <= after

    # And the lease is judged by that clock too: a reclaim on broker time finds it alive,
    # while a time handed in (a fake clock's) is taken as given
    assert await backend.heartbeat(lease, None) == []
    assert await backend.reclaim_stalled_jobs("q", None, max_deaths=3) == []
    reclaimed = await backend.reclaim_stalled_jobs("q", after + 2 * LEASE_MS, max_deaths=3)
    assert reclaimed == [Reclaimed(job_id=a.id, queue="q", worker_id="w1", dead=False)]
