"""SQLite only: the rows behind uniqueness and cooldowns, and uniqueness across processes.

The outcomes a producer sees are the contract suite's (tests/contract); these tests read
the broker's own tables (unique_keys, cooldowns, flow_queues) as another program would,
to check that every end frees a key as its window says, that promotion prunes what has
passed, and that several processes enqueueing one key into one file get one job.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from collections.abc import AsyncIterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from corq.backends.base import Admitted, Completion, Failure, NewJob, WorkerLease
from corq.backends.sqlite import SqliteBackend
from corq.flow import Dedupe, OnDuplicate, Outcome

T0 = 1_700_000_000_000
LEASE_MS = 30_000


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "corq.db"


@pytest.fixture
async def backend(db: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(f"sqlite:///{db}")
    await b.ping()
    await b.register_worker(WorkerLease(worker_id="w1", queues=["q"], lease_ms=LEASE_MS), T0)
    yield b
    await b.close()


def new_job(
    job_id: str,
    now_ms: int = T0,
    *,
    unique_key: str | None = "k",
    dedupe: Dedupe | None = None,
    payload: bytes = b"",
    priority: int = 0,
) -> NewJob:
    return NewJob(
        id=job_id,
        task="t",
        queue="q",
        payload=payload,
        priority=priority,
        enqueued_at_ms=now_ms,
        run_at_ms=now_ms,
        unique_key=unique_key,
        dedupe=dedupe,
    )


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def keys(db: Path) -> list[tuple[object, ...]]:
    """(key, job_id, until_ms) of queue q's unique keys."""
    return rows(db, "SELECT key, job_id, until_ms FROM unique_keys WHERE queue = 'q'")


async def admit(backend: SqliteBackend, *jobs: NewJob) -> list[tuple[str, Outcome]]:
    return [(a.job_id, a.outcome) for a in await backend.admit_jobs(list(jobs))]


async def run_and_complete(backend: SqliteBackend, job_id: str, now_ms: int) -> None:
    batch = await backend.claim_jobs("q", "w1", 1, LEASE_MS, now_ms)
    assert [job.id for job in batch.jobs] == [job_id]
    done = Completion(
        job_id=job_id, queue="q", fence=batch.jobs[0].fence, result=b"1", finished_at_ms=now_ms
    )
    assert await backend.complete_jobs("w1", [done], 60_000) == [True]


async def test_a_key_maps_to_its_job_and_its_end_frees_it(backend: SqliteBackend, db: Path) -> None:
    # Given a job holding the key "k"
    assert await admit(backend, new_job("a")) == [("a", Outcome.CREATED)]
    assert keys(db) == [("k", "a", None)]
    assert rows(db, "SELECT unique_key, unique_for_ms FROM jobs WHERE id = 'a'") == [("k", 0)]

    # When it completes (no window)
    await run_and_complete(backend, "a", T0 + 1)

    # Then the key is free at once: its row is gone and the next job takes it
    assert keys(db) == []
    assert await admit(backend, new_job("b", T0 + 2)) == [("b", Outcome.CREATED)]
    assert keys(db) == [("k", "b", None)]


async def test_a_window_keeps_the_key_after_the_end_and_promotion_prunes_it(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a job whose key stays taken 1 s after its end
    window = Dedupe(window_ms=1_000)
    await admit(backend, new_job("a", dedupe=window))
    assert rows(db, "SELECT unique_for_ms FROM jobs WHERE id = 'a'") == [(1_000,)]

    # When it completes at T0 + 10
    await run_and_complete(backend, "a", T0 + 10)

    # Then the key is taken until T0 + 1010, then free
    assert keys(db) == [("k", "a", T0 + 1_010)]
    assert await admit(backend, new_job("b", T0 + 1_009)) == [("a", Outcome.EXISTING)]
    await backend.promote_due_jobs("q", T0 + 1_009)
    assert keys(db) == [("k", "a", T0 + 1_010)]
    await backend.promote_due_jobs("q", T0 + 1_010)
    assert keys(db) == []
    assert await admit(backend, new_job("c", T0 + 1_010)) == [("c", Outcome.CREATED)]


async def test_a_key_whose_window_passed_is_free_before_it_is_pruned(
    backend: SqliteBackend, db: Path
) -> None:
    await admit(backend, new_job("a", dedupe=Dedupe(window_ms=100)))
    await run_and_complete(backend, "a", T0 + 1)
    assert keys(db) == [("k", "a", T0 + 101)]
    # No promotion ran: the stale row is read as free and taken over.
    assert await admit(backend, new_job("b", T0 + 101)) == [("b", Outcome.CREATED)]
    assert keys(db) == [("k", "b", None)]


async def test_dead_and_cancelled_jobs_free_their_keys_and_a_retried_one_takes_it_back(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a job that dies
    await admit(backend, new_job("a"))
    batch = await backend.claim_jobs("q", "w1", 1, LEASE_MS, T0 + 1)
    fail = Failure(
        job_id="a",
        queue="q",
        fence=batch.jobs[0].fence,
        error="E: x",
        traceback=None,
        retry_at_ms=None,
        finished_at_ms=T0 + 2,
    )
    assert await backend.fail_jobs("w1", [fail], 60_000) == [True]
    assert keys(db) == []

    # When it is retried from the dead letters, it holds its key again
    assert await backend.retry_dead("q", ["a"], T0 + 3) == 1
    assert keys(db) == [("k", "a", None)]
    assert await admit(backend, new_job("b", T0 + 4)) == [("a", Outcome.EXISTING)]

    # And a cancel frees it
    assert await backend.cancel_job("a", "q", T0 + 5)
    assert keys(db) == []


async def test_a_record_that_is_gone_frees_its_key(backend: SqliteBackend, db: Path) -> None:
    await admit(backend, new_job("a"))
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM jobs WHERE id = 'a'")
    conn.commit()
    conn.close()
    assert keys(db) == []
    assert await admit(backend, new_job("b", T0 + 1)) == [("b", Outcome.CREATED)]


async def test_a_mapping_left_to_a_missing_record_counts_as_free(
    backend: SqliteBackend, db: Path
) -> None:
    # Another program left a mapping to a job that never existed
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO unique_keys VALUES ('q', 'k', 'ghost', NULL)")
    conn.commit()
    conn.close()
    assert await admit(backend, new_job("a")) == [("a", Outcome.CREATED)]
    assert keys(db) == [("k", "a", None)]


async def test_a_cooldown_writes_its_window_counts_drops_and_is_pruned(
    backend: SqliteBackend, db: Path
) -> None:
    cool = Dedupe(cooldown_ms=500)
    # Given a call that opened a 500 ms window for the task (no unique key)
    first = new_job("a", unique_key=None, dedupe=cool)
    assert await admit(backend, first) == [("a", Outcome.CREATED)]
    assert rows(db, "SELECT key, until_ms, job_id FROM cooldowns") == [("\x1ft", T0 + 500, "a")]

    # When two more calls come within it
    later = [new_job(f"b{i}", T0 + 499, unique_key=None, dedupe=cool) for i in range(2)]
    assert await admit(backend, *later) == [("a", Outcome.DROPPED)] * 2

    # Then nothing was written, the drops are counted, and promotion prunes the window
    assert rows(db, "SELECT count(*) FROM jobs") == [(1,)]
    assert rows(db, "SELECT cooled FROM flow_queues WHERE queue = 'q'") == [(2,)]
    await backend.promote_due_jobs("q", T0 + 499)
    assert len(rows(db, "SELECT * FROM cooldowns")) == 1
    await backend.promote_due_jobs("q", T0 + 500)
    assert rows(db, "SELECT * FROM cooldowns") == []


async def test_cancel_fences_off_a_running_holder_and_the_new_job_takes_the_key(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a running job holding the key
    await admit(backend, new_job("a"))
    batch = await backend.claim_jobs("q", "w1", 1, LEASE_MS, T0 + 1)
    fence = batch.jobs[0].fence

    # When a duplicate asks to cancel it
    cancel = Dedupe(on_duplicate=OnDuplicate.CANCEL)
    assert await admit(backend, new_job("b", T0 + 2, dedupe=cancel)) == [("b", Outcome.CREATED)]

    # Then it is cancelled, its holder's outcome is refused, and b holds the key
    assert rows(db, "SELECT status, fence FROM jobs WHERE id = 'a'") == [("cancelled", fence + 1)]
    done = Completion(job_id="a", queue="q", fence=fence, result=b"1", finished_at_ms=T0 + 3)
    assert await backend.complete_jobs("w1", [done], 60_000) == [False]
    assert await backend.list_held_jobs("q", "w1") == []
    assert keys(db) == [("k", "b", None)]


async def test_replace_and_debounce_rewrite_the_pending_row(
    backend: SqliteBackend, db: Path
) -> None:
    await admit(backend, new_job("a", payload=b"1"))
    replace = Dedupe(on_duplicate=OnDuplicate.REPLACE)
    got = await admit(backend, new_job("b", T0 + 1, dedupe=replace, payload=b"2", priority=5))
    assert got == [("a", Outcome.REPLACED)]
    assert rows(db, "SELECT id, payload, priority, status FROM jobs") == [("a", b"2", 5, "queued")]

    # A debounce moves the queued job later (capped by max_wait from its first enqueue)
    debounce = Dedupe(debounce_ms=1_000, max_wait_ms=1_500)
    got = await admit(backend, new_job("c", T0 + 800, dedupe=debounce, payload=b"3"))
    assert got == [("a", Outcome.DEBOUNCED)]
    assert rows(db, "SELECT payload, run_at_ms, status FROM jobs") == [
        (b"3", T0 + 1_500, "scheduled")
    ]


async def test_two_jobs_of_one_call_with_one_key_the_second_sees_the_first(
    backend: SqliteBackend, db: Path
) -> None:
    got = await admit(backend, new_job("a"), new_job("b"), new_job("c", unique_key="other"))
    assert got == [("a", Outcome.CREATED), ("a", Outcome.EXISTING), ("c", Outcome.CREATED)]
    assert await backend.enqueue_jobs([new_job("d"), new_job("e", unique_key=None)]) == [
        False,
        True,
    ]


# -- several processes, one file ------------------------------------------------------

PROCESSES = 4
KEYS = 20


def _enqueue_all(db: str, name: str, start: Event, out: Queue[list[str]]) -> None:
    """In a child process: once the parent says start, admit one job per key (ids of its
    own), one call per key so the processes interleave; the outcomes go to `out`."""

    async def run() -> list[str]:
        backend = SqliteBackend(f"sqlite:///{db}")
        await backend.ping()
        start.wait()
        outcomes: list[Admitted] = []
        for i in range(KEYS):
            job = new_job(f"{name}-{i}", unique_key=f"key-{i}")
            outcomes += await backend.admit_jobs([job])
        await backend.close()
        return [f"{a.job_id} {a.outcome.value}" for a in outcomes]

    out.put(asyncio.run(run()))


@pytest.mark.slow  # four spawned interpreters
async def test_processes_enqueueing_the_same_keys_at_once_create_one_job_per_key(
    db: Path, backend: SqliteBackend
) -> None:
    # Given several processes ready to enqueue the same 20 keys into one file
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    children = [
        ctx.Process(target=_enqueue_all, args=(str(db), f"p{n}", start, out))
        for n in range(PROCESSES)
    ]
    for child in children:
        child.start()
    # When they all go at once
    start.set()
    results = [line.split() for _ in children for line in out.get(timeout=60)]
    for child in children:
        child.join(30)
        assert child.exitcode == 0

    # Then each key has exactly one CREATED job, and every other call names it
    created = {job_id for job_id, outcome in results if outcome == "created"}
    assert len(created) == KEYS
    assert len(results) == KEYS * PROCESSES
    assert all(outcome in ("created", "existing") for _, outcome in results)
    assert {job_id for job_id, _ in results} == created
    assert rows(db, "SELECT count(*) FROM jobs") == [(KEYS,)]
    assert sorted(str(r[1]) for r in keys(db)) == sorted(created)
