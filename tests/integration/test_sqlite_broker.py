"""What only the SQLite broker promises: durable pragmas, several processes on one file,
an event loop that never waits on the file, cross-process wakes, and reopening a file.

The Backend semantics shared with Redis are in tests/contract.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corq.backends import open_backend
from corq.backends.base import Backend, Completion, NewJob, WorkerLease
from corq.backends.sqlite import SqliteBackend
from corq.backends.sqlite.sql import SCHEMA_VERSION, Q
from corq.backends.sqlite.thread import Tx
from corq.errors import BrokerDataError, BrokerError
from corq.job import JobStatus

T0 = 1_700_000_000_000


def new_job(job_id: str, queue: str = "q", *, now_ms: int = T0) -> NewJob:
    return NewJob(
        id=job_id, task="t", queue=queue, payload=b"{}", enqueued_at_ms=now_ms, run_at_ms=now_ms
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "corq.db"


@pytest.fixture
async def backend(db: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(f"sqlite:///{db}")
    yield b
    await b.close()


async def pragma(backend: SqliteBackend, name: str) -> object:
    """A pragma as the backend's own connection sees it (run on its thread)."""
    return await backend._thread.run(
        lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0], Tx.NONE
    )


# -- settings -----------------------------------------------------------------------


async def test_wal_full_sync_busy_timeout_and_schema_version(backend: SqliteBackend) -> None:
    await backend.ping()
    assert await pragma(backend, "journal_mode") == "wal"
    assert await pragma(backend, "synchronous") == 2  # FULL: a commit survives power loss
    assert await pragma(backend, "busy_timeout") == 5000  # socket_timeout_s=5.0
    assert await pragma(backend, "user_version") == SCHEMA_VERSION


async def test_synchronous_can_be_relaxed_in_the_url(db: Path) -> None:
    b = open_backend(f"sqlite:///{db}?synchronous=normal", socket_timeout_s=0.5)
    assert isinstance(b, SqliteBackend)
    try:
        assert await pragma(b, "synchronous") == 1
        assert await pragma(b, "busy_timeout") == 500
    finally:
        await b.close()


async def test_relative_path_is_resolved_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    b = open_backend("sqlite:///rel/corq.db")
    (tmp_path / "rel").mkdir()
    clone = b.clone()
    monkeypatch.chdir("/")
    try:
        assert await b.enqueue_jobs([new_job("a")]) == [True]
        assert await clone.get_job("a", "q") is not None
        assert (tmp_path / "rel" / "corq.db").exists()
    finally:
        await clone.close()
        await b.close()


# -- durability -----------------------------------------------------------------------


async def test_a_file_survives_reopening(db: Path) -> None:
    first = open_backend(f"sqlite:///{db}")
    lease = WorkerLease(worker_id="w", queues=["q"], lease_ms=10_000)
    await first.enqueue_jobs([new_job("a"), new_job("b")])
    await first.register_worker(lease, T0)
    claimed = (await first.claim_jobs("q", "w", 1, 10_000, T0)).jobs
    await first.close()

    again = open_backend(f"sqlite:///{db}")
    try:
        job = await again.get_job("a", "q")
        assert job is not None
        assert job.status is JobStatus.RUNNING
        assert await again.complete_jobs(
            "w",
            [Completion(job_id="a", queue="q", fence=claimed[0].fence, result=b"1",
                        finished_at_ms=T0 + 1)],
            60_000,
        ) == [True]  # fmt: skip
        [stats] = await again.queue_stats(["q"])
        assert (stats.ready, stats.in_flight, stats.workers) == (1, 0, 1)
        assert await again.list_queues() == ["q"]
    finally:
        await again.close()


async def test_results_expire_by_the_callers_clock(backend: SqliteBackend) -> None:
    # Given a result kept for 1 s of (fake) time
    lease = WorkerLease(worker_id="w", queues=["q"], lease_ms=10_000)
    await backend.enqueue_jobs([new_job("a")])
    await backend.register_worker(lease, T0)
    [job] = (await backend.claim_jobs("q", "w", 1, 10_000, T0)).jobs
    done = Completion(job_id="a", queue="q", fence=job.fence, result=b"1", finished_at_ms=T0)
    await backend.complete_jobs("w", [done], 1_000)
    await backend.promote_due_jobs("q", T0 + 999)
    assert await backend.get_job("a", "q") is not None

    # When any call brings a time past it, the record is gone, and its id free again
    await backend.promote_due_jobs("q", T0 + 1_000)
    assert await backend.get_job("a") is None
    assert await backend.wait_for_job("a", "q", 1) is None
    assert await backend.enqueue_jobs([new_job("a", now_ms=T0 + 2_000)]) == [True]


async def test_a_new_job_over_an_expired_record_starts_every_column_afresh(
    backend: SqliteBackend, db: Path
) -> None:
    """The enqueue that reuses an expired record's id sets every column but the key once
    (the SET list is built from the record's fields, see columns.py), so no column of the
    old job lingers and no reserved column is set twice (SQLite keeps the last)."""
    await backend.ping()
    with sqlite3.connect(db) as conn:
        table = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
    set_list = Q["job_insert"].split("DO UPDATE SET", 1)[1].rsplit("\nWHERE", 1)[0]
    assigned = re.findall(r"(?:^|,)\s*(\w+) =", set_list)
    assert sorted(assigned) == sorted(set(table) - {"queue", "id"})


# -- the event loop -------------------------------------------------------------------


async def _max_tick_gap(duration_s: float) -> float:
    loop = asyncio.get_running_loop()
    worst, last, end = 0.0, loop.time(), loop.time() + duration_s
    while loop.time() < end:
        await asyncio.sleep(0.005)
        now = loop.time()
        worst, last = max(worst, now - last), now
    return worst


async def test_the_event_loop_runs_while_another_process_holds_the_file(db: Path) -> None:
    b = open_backend(f"sqlite:///{db}", socket_timeout_s=5)
    try:
        await b.ping()
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # what a writer in another process looks like
        enqueue = asyncio.create_task(b.enqueue_jobs([new_job("a")]))
        assert await _max_tick_gap(0.3) < 0.1
        assert not enqueue.done()  # waiting for the lock on its own thread
        blocker.execute("COMMIT")
        blocker.close()
        assert await asyncio.wait_for(enqueue, 5) == [True]
    finally:
        await b.close()


async def test_a_lock_held_past_the_timeout_is_a_broker_error(db: Path) -> None:
    b = open_backend(f"sqlite:///{db}", socket_timeout_s=0.2)
    try:
        await b.ping()
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(BrokerError, match="locked"):
                await b.enqueue_jobs([new_job("a")])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await b.enqueue_jobs([new_job("a")]) == [True]  # the backend recovered
    finally:
        await b.close()


async def test_a_file_that_cannot_be_opened_is_an_outage(tmp_path: Path) -> None:
    b = open_backend(f"sqlite:///{tmp_path / 'missing-dir' / 'corq.db'}")
    try:
        with pytest.raises(BrokerError):
            await b.ping()
    finally:
        await b.close()


async def test_a_file_that_is_not_a_database_is_refused_not_retried(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database, just some bytes" * 100)
    b = open_backend(f"sqlite:///{path}")
    try:
        with pytest.raises(BrokerDataError):
            await b.ping()
    finally:
        await b.close()


async def test_a_file_from_a_newer_corq_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    b = open_backend(f"sqlite:///{db}")
    try:
        with pytest.raises(BrokerDataError, match="newer"):
            await b.ping()
    finally:
        await b.close()


async def test_close_stops_the_thread(db: Path) -> None:
    before = {t.name for t in threading.enumerate()}
    b = open_backend(f"sqlite:///{db}")
    await b.ping()
    await b.close()
    assert {t.name for t in threading.enumerate()} <= before
    with pytest.raises(BrokerError, match="closed"):
        await b.ping()


# -- in-memory ------------------------------------------------------------------------


async def test_memory_database_is_shared_within_the_process() -> None:
    # An App opens its client's and its worker's backend from the URL separately.
    b = open_backend("sqlite:///:memory:")
    other = open_backend("sqlite:///:memory:")
    try:
        await b.enqueue_jobs([new_job("mem-a")])
        clone = b.clone()

        async def look(backend: Backend) -> JobStatus | None:
            try:
                job = await backend.get_job("mem-a", "q")
                return None if job is None else job.status
            finally:
                await backend.close()

        seen: list[JobStatus | None] = []
        thread = threading.Thread(target=lambda: seen.append(asyncio.run(look(clone))))
        thread.start()
        thread.join(10)
        assert seen == [JobStatus.QUEUED]
        job = await other.get_job("mem-a", "q")
        assert job is not None
        assert job.status is JobStatus.QUEUED
    finally:
        await other.close()
        await b.close()


async def test_memory_clone_in_same_loop_wakes_waiters() -> None:
    b = open_backend("sqlite:///:memory:")
    producer = b.clone()
    try:
        await b.ping()
        waiter = asyncio.create_task(b.wait_for_jobs("mem-q", 5))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await producer.enqueue_jobs([new_job("mem-b", "mem-q")])
        assert await asyncio.wait_for(waiter, 5) is True
        assert time.monotonic() - start < 0.05
    finally:
        await producer.close()
        await b.close()


# -- several processes ----------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from corq.backends import open_backend
    from corq.backends.base import Completion, WorkerLease

    def now():
        return time.time_ns() // 1_000_000

    async def main(url, worker_id, quota, out):
        b = open_backend(url)
        lease = WorkerLease(worker_id=worker_id, queues=["mp"], lease_ms=60_000)
        await b.register_worker(lease, now())
        claimed, quota = [], int(quota)
        while len(claimed) < quota:  # a fixed share each: the others cannot take it all
            limit = min(25, quota - len(claimed))
            batch = await b.claim_jobs("mp", worker_id, limit, 60_000, now())
            if not batch.jobs:
                await b.wait_for_jobs("mp", 0.5)
                continue
            claimed += [job.id for job in batch.jobs]
            done = [Completion(job_id=j.id, queue="mp", fence=j.fence, result=b"1",
                               finished_at_ms=now()) for j in batch.jobs]
            assert all(await b.complete_jobs(worker_id, done, 3_600_000))
        await b.deregister_worker(lease, None)
        await b.close()
        with open(out, "w") as f:
            json.dump(claimed, f)

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_four_processes_share_one_file_and_run_every_job_once(tmp_path: Path) -> None:
    db, total = tmp_path / "corq.db", 2_000
    url = f"sqlite:///{db}"
    producer = open_backend(url)
    await producer.ping()  # create the schema before the workers race for it
    outs = [tmp_path / f"w{i}.json" for i in range(4)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, url, f"w{i}", str(total // 4), str(out)
        )
        for i, out in enumerate(outs)
    ]
    try:
        for _ in range(1000):  # until all four have started and registered
            if (await producer.queue_stats(["mp"]))[0].workers == 4:
                break
            await asyncio.sleep(0.02)
        for start in range(0, total, 100):  # enqueue while the workers run
            now = time.time_ns() // 1_000_000
            batch = [new_job(f"j{i}", "mp", now_ms=now) for i in range(start, start + 100)]
            assert all(await producer.enqueue_jobs(batch))
            await asyncio.sleep(0.005)
        for proc in procs:
            assert await asyncio.wait_for(proc.wait(), 50) == 0
        claims = [job_id for out in outs for job_id in json.loads(out.read_text())]
        assert len(claims) == total  # no job claimed twice ...
        assert set(claims) == {f"j{i}" for i in range(total)}  # ... and none missed
        assert [len(json.loads(out.read_text())) for out in outs] == [total // 4] * 4
        [stats] = await producer.queue_stats(["mp"])
        assert (stats.ready, stats.delayed, stats.in_flight, stats.workers) == (0, 0, 0, 0)
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT status, attempt, count(*) FROM jobs GROUP BY 1, 2")
            assert rows.fetchall() == [("succeeded", 1, total)]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await producer.close()


ENQUEUER = textwrap.dedent(
    """
    import asyncio, sys, time
    from corq.backends import open_backend
    from corq.backends.base import NewJob

    async def main(url):
        b = open_backend(url)
        await b.ping()
        await asyncio.sleep(0.3)
        now = time.time_ns() // 1_000_000
        await b.enqueue_jobs([NewJob(id="x", task="t", queue="wake", payload=b"",
                                     enqueued_at_ms=now, run_at_ms=now)])
        print(time.time(), flush=True)
        await b.close()

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_an_enqueue_in_another_process_wakes_a_waiter_quickly(
    backend: SqliteBackend, db: Path
) -> None:
    await backend.ping()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENQUEUER, f"sqlite:///{db}", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert await backend.wait_for_jobs("wake", 20) is True
        woken_at = time.time()
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert woken_at - float(out) < 0.1  # polled every 20 ms
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_wait_for_job_sees_a_completion_from_another_connection(db: Path) -> None:
    waiter, worker = open_backend(f"sqlite:///{db}"), open_backend(f"sqlite:///{db}")
    lease = WorkerLease(worker_id="w", queues=["q"], lease_ms=10_000)
    try:
        await worker.enqueue_jobs([new_job("a")])
        await worker.register_worker(lease, T0)
        [job] = (await worker.claim_jobs("q", "w", 1, 10_000, T0)).jobs
        pending = asyncio.create_task(waiter.wait_for_job("a", "q", 10))
        await asyncio.sleep(0.1)
        assert not pending.done()
        done = Completion(job_id="a", queue="q", fence=job.fence, result=b"7",
                          finished_at_ms=T0 + 5)  # fmt: skip
        assert await worker.complete_jobs("w", [done], 60_000) == [True]
        record = await asyncio.wait_for(pending, 1)
        assert record is not None
        assert record.status is JobStatus.SUCCEEDED
        assert record.result == b"7"
    finally:
        await waiter.close()
        await worker.close()


async def test_waiting_idle_costs_little_cpu(backend: SqliteBackend) -> None:
    await backend.ping()
    wall, cpu = time.monotonic(), time.process_time()
    while time.monotonic() - wall < 1.0:
        assert await backend.wait_for_jobs("idle", 0.25) is False
    used = (time.process_time() - cpu) / (time.monotonic() - wall)
    assert used < 0.05  # ~1% in practice; loose for busy CI machines
