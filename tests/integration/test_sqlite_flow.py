"""SQLite only: flow control's rows, the migration that brought them, and limits held
across connections and processes.

What a worker sees of the rules is the contract suite's (tests/contract/test_flow_control);
these tests read the broker's own columns and tables (jobs.lane, jobs.limited, flow_limits,
flow_lanes) as another program would: a version 5 file keeps its jobs, every step that
makes a job ready keeps it in its lane, a reclaim gives slots back, several connections
and processes never run more than a limit, and expiry works in bounded steps.
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

from corq.backends.base import (
    BATCH,
    Completion,
    Edge,
    Failure,
    NewJob,
    NewWorkflow,
    Release,
    WorkerLease,
    WorkflowJob,
)
from corq.backends.sqlite import SqliteBackend
from corq.backends.sqlite.sql import SCHEMA_VERSION
from corq.flow import TaskRules
from corq.job import JobStatus
from tests.integration.test_sqlite_migrations import SCHEMA_V5, old_file

T0 = 1_700_000_000_000
LEASE_MS = 30_000
RULED = "ruled"
PLAIN = "plain"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "corq.db"


@pytest.fixture
async def backend(db: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(f"sqlite:///{db}")
    await register(b, "w1")
    yield b
    await b.close()


async def register(backend: SqliteBackend, worker: str, now_ms: int = T0) -> None:
    await backend.register_worker(
        WorkerLease(worker_id=worker, queues=["q"], lease_ms=LEASE_MS), now_ms
    )


def new_job(
    job_id: str,
    *,
    task: str = RULED,
    key: str | None = None,
    delay_ms: int = 0,
    start_by_ms: int | None = None,
    queue: str = "q",
) -> NewJob:
    return NewJob(
        id=job_id,
        task=task,
        queue=queue,
        payload=b"",
        enqueued_at_ms=T0,
        run_at_ms=T0 + delay_ms,
        key=key,
        start_by_ms=start_by_ms,
    )


def column(db: Path, job_id: str, name: str) -> object:
    """One column of a job's row, read as another program would."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(f"SELECT {name} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert row is not None, job_id
    return row[0]


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def claim(
    backend: SqliteBackend, worker: str = "w1", now_ms: int = T0, count: int = 10
) -> list[str]:
    batch = await backend.claim_jobs("q", worker, count, LEASE_MS, now_ms)
    assert not batch.lost
    return [j.id for j in batch.jobs]


# -- the migration ---------------------------------------------------------------------


async def test_a_version_5_file_keeps_its_jobs_and_takes_rules(tmp_path: Path) -> None:
    # Given a file of schema version 5 with a ready job and a held one
    path = old_file(tmp_path / "v5.db", SCHEMA_V5)
    b = SqliteBackend(f"sqlite:///{path}")
    try:
        # When the current corq opens it and a task gets rules
        await register(b, "w2")
        await b.set_rules("q", [TaskRules(task=RULED, concurrency=1)])
        await b.enqueue_jobs([new_job("new1"), new_job("new2")])

        # Then the old jobs wait in the plain ready set (lane '') and are claimed, and the
        # new ones in their task's lane, one at a time
        assert (column(path, "ready", "lane"), column(path, "held", "lane")) == ("", "")
        assert (column(path, "new1", "lane"), column(path, "ready", "limited")) == (
            RULED + "\x1f",
            0,
        )
        taken = await claim(b, "w2")
        assert sorted(taken) == ["new1", "ready"]
        assert (await b.flow_stats("q")).active == {"t:" + RULED: 1}
        held = await b.get_job("held", "q")
        assert held is not None
        assert held.status is JobStatus.RUNNING
    finally:
        await b.close()
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


# -- lanes -----------------------------------------------------------------------------


async def test_a_job_takes_its_lane_when_first_made_ready(db: Path, backend: SqliteBackend) -> None:
    await backend.set_rules("q", [TaskRules(task=RULED, keyed=True, key_concurrency=1)])
    await backend.enqueue_jobs(
        [
            new_job("now", key="a"),
            new_job("later", key="b", delay_ms=1_000),
            new_job("p", task=PLAIN),
        ]
    )
    # A scheduled job has no lane until it is made ready; a job without rules never has.
    assert [column(db, i, "lane") for i in ("now", "later", "p")] == [RULED + "\x1fa", "", ""]

    await backend.promote_due_jobs("q", T0 + 1_000)

    assert column(db, "later", "lane") == RULED + "\x1fb"
    assert (await backend.queue_stats(["q"]))[0].ready == 3
    assert (await backend.flow_stats("q")).laned == 2


async def test_every_step_that_makes_a_job_ready_again_keeps_its_lane(
    db: Path, backend: SqliteBackend
) -> None:
    # Given a job of a keyed task, claimed
    await backend.set_rules("q", [TaskRules(task=RULED, keyed=True, key_concurrency=1)])
    await backend.enqueue_jobs([new_job("j", key="a")])
    lane = RULED + "\x1fa"
    assert await claim(backend) == ["j"]

    # When it is released, retried after a failure and retried from the dead letters, with
    # the rules removed meanwhile (they apply to jobs made ready for the first time)
    release = Release(job_id="j", queue="q", fence=1, unstarted=False)
    assert await backend.release_jobs("w1", [release]) == [True]
    assert column(db, "j", "lane") == lane
    await backend.set_rules("q", [TaskRules(task=RULED)])
    assert await claim(backend) == ["j"]
    retry = Failure(job_id="j", queue="q", fence=2, error="boom", traceback="",
                    retry_at_ms=T0 + 10, finished_at_ms=T0)  # fmt: skip
    assert await backend.fail_jobs("w1", [retry], 0) == [True]
    await backend.promote_due_jobs("q", T0 + 10)
    assert column(db, "j", "lane") == lane
    assert await claim(backend, now_ms=T0 + 10) == ["j"]
    dead = Failure(job_id="j", queue="q", fence=3, error="boom", traceback="",
                   retry_at_ms=None, finished_at_ms=T0 + 10)  # fmt: skip
    assert await backend.fail_jobs("w1", [dead], 0) == [True]
    assert await backend.retry_dead("q", ["j"], T0 + 20) == 1

    # Then it waits in its lane each time, and its lane (without limits now) gives it out
    assert column(db, "j", "lane") == lane
    assert await claim(backend, now_ms=T0 + 20) == ["j"]


# -- counters --------------------------------------------------------------------------


async def test_a_reclaim_gives_the_slots_of_a_dead_workers_jobs_back(
    db: Path, backend: SqliteBackend
) -> None:
    # Given a task of concurrency 2 whose two slots a worker holds, and a third job waiting
    await backend.set_rules("q", [TaskRules(task=RULED, concurrency=2)])
    await backend.enqueue_jobs([new_job(f"j{n}") for n in range(3)])
    assert sorted(await claim(backend)) == ["j0", "j1"]
    await register(backend, "w2")
    assert await claim(backend, "w2") == []
    assert (await backend.flow_stats("q")).parked == 1

    # When the worker dies (its lease passes) and its jobs are reclaimed
    later = T0 + LEASE_MS + 1
    await register(backend, "w2", later)
    reclaimed = await backend.reclaim_stalled_jobs("q", later, max_deaths=5)

    # Then its slots are free (each lowered once), and another worker starts two jobs
    assert sorted(r.job_id for r in reclaimed) == ["j0", "j1"]
    stats = await backend.flow_stats("q")
    assert (stats.active, stats.parked) == ({}, 0)
    assert rows(db, "SELECT running FROM flow_limits") == [(0,)]
    assert rows(db, "SELECT count(*) FROM jobs WHERE limited = 1") == [(0,)]
    assert len(await claim(backend, "w2", later)) == 2
    assert (await backend.flow_stats("q")).active == {"t:" + RULED: 2}


async def test_a_completion_unparks_only_its_own_key(db: Path, backend: SqliteBackend) -> None:
    await backend.set_rules("q", [TaskRules(task=RULED, keyed=True, key_concurrency=1)])
    await backend.enqueue_jobs([new_job(f"{k}{n}", key=k) for k in "ab" for n in range(2)])
    assert sorted(await claim(backend)) == ["a0", "b0"]
    assert await claim(backend) == []

    done = Completion(job_id="a0", queue="q", fence=1, result=b"", finished_at_ms=T0)
    assert await backend.complete_jobs("w1", [done], 60_000) == [True]

    assert rows(db, "SELECT lane, state FROM flow_lanes ORDER BY lane") == [
        (RULED + "\x1fa", "ready"),
        (RULED + "\x1fb", "parked"),
    ]
    assert await claim(backend) == ["a1"]


# -- several connections and processes ------------------------------------------------

LIMIT = 3
JOBS = 60
PROCESSES = 3


def _claim_and_complete(path: str, worker: str, start: Event, out: Queue[int]) -> None:
    """A child process: claim the limited task one job at a time and complete it, until
    the queue is empty; report how many it ran."""

    async def run() -> int:
        b = SqliteBackend(f"sqlite:///{path}", socket_timeout_s=30)
        try:
            await register(b, worker)
            start.wait()
            ran = idle = 0
            while idle < 20:
                batch = await b.claim_jobs("q", worker, 2, LEASE_MS, T0)
                if not batch.jobs:
                    idle += 1
                    await b.wait_for_jobs("q", 0.05)
                    continue
                idle = 0
                done = [Completion(job_id=j.id, queue="q", fence=j.fence, result=b"",
                                   finished_at_ms=T0) for j in batch.jobs]  # fmt: skip
                await b.complete_jobs(worker, done, 60_000)
                ran += len(done)
            return ran
        finally:
            await b.close()

    out.put(asyncio.run(run()))


@pytest.mark.slow  # spawned interpreters
async def test_processes_claiming_a_limited_task_never_exceed_its_limit(
    db: Path, backend: SqliteBackend
) -> None:
    # Given a task of concurrency LIMIT with JOBS jobs over several keys
    rule = TaskRules(task=RULED, concurrency=LIMIT, keyed=True, key_concurrency=2)
    await backend.set_rules("q", [rule])
    await backend.enqueue_jobs([new_job(f"j{n}", key=f"k{n % 4}") for n in range(JOBS)])
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    children = [
        ctx.Process(target=_claim_and_complete, args=(str(db), f"p{n}", start, out))
        for n in range(PROCESSES)
    ]
    for child in children:
        child.start()

    # When they all claim and complete at once, while this test watches the file
    start.set()
    most = 0
    with sqlite3.connect(db, timeout=30) as conn:
        while any(child.is_alive() for child in children):
            (running,) = conn.execute(
                "SELECT count(*) FROM jobs WHERE status = 'running' AND task = ?", (RULED,)
            ).fetchone()
            most = max(most, running)
            await asyncio.sleep(0.005)  # sampling pace of the watcher, not a wait for a state
    ran = [out.get(timeout=30) for _ in children]
    for child in children:
        child.join(30)

    # Then every job ran once, and never more than LIMIT at a time
    assert sum(ran) == JOBS
    assert 1 <= most <= LIMIT
    assert rows(db, "SELECT count(*) FROM jobs WHERE status = 'succeeded'") == [(JOBS,)]
    assert rows(db, "SELECT max(running) FROM flow_limits") == [(0,)]


async def test_connections_claiming_at_once_never_exceed_the_limit(
    db: Path, backend: SqliteBackend
) -> None:
    """Several backends (each its own connection and thread) in one process."""
    await backend.set_rules("q", [TaskRules(task=RULED, concurrency=2)])
    await backend.enqueue_jobs([new_job(f"j{n}") for n in range(20)])
    others = [SqliteBackend(f"sqlite:///{db}") for _ in range(4)]
    try:
        for n, other in enumerate(others):
            await register(other, f"c{n}")
        batches = await asyncio.gather(
            *(o.claim_jobs("q", f"c{n}", 5, LEASE_MS, T0) for n, o in enumerate(others))
        )
        assert sum(len(b.jobs) for b in batches) == 2
        assert (await backend.flow_stats("q")).active == {"t:" + RULED: 2}
    finally:
        for other in others:
            await other.close()


# -- bounded steps ---------------------------------------------------------------------


async def test_expiry_works_in_bounded_steps(db: Path, backend: SqliteBackend) -> None:
    # Given more jobs past their deadline than one step ends
    n = BATCH + 500
    await backend.set_rules("q", [TaskRules(task=RULED, concurrency=5)])
    await backend.enqueue_jobs([new_job(f"j{i}", start_by_ms=T0 + 10) for i in range(n)])

    # When one claim runs after the deadline
    taken = await claim(backend, now_ms=T0 + 11)

    # Then it ended one batch expired and started none of the others past the deadline
    assert taken == []
    assert (await backend.flow_stats("q")).expired == BATCH
    assert rows(db, "SELECT count(*) FROM jobs WHERE status = 'running'") == [(0,)]

    # And promotion, step after step, ends the rest
    await backend.promote_due_jobs("q", T0 + 12)
    stats = await backend.flow_stats("q")
    assert (stats.expired, stats.laned) == (n, 0)
    assert rows(db, "SELECT count(*) FROM jobs WHERE status = 'expired'") == [(n,)]


async def test_a_claim_in_a_queue_of_many_parked_keys_visits_a_bounded_number(
    db: Path, backend: SqliteBackend
) -> None:
    """Parked lanes leave the rotation: a claim never walks them again."""
    keys = 300
    await backend.set_rules("q", [TaskRules(task=RULED, keyed=True, key_concurrency=1)])
    jobs = [new_job(f"{k}-{n}", key=f"k{k}") for k in range(keys) for n in range(2)]
    await backend.enqueue_jobs(jobs)
    assert len(await claim(backend, count=keys + 10)) == keys
    assert (await backend.flow_stats("q")).parked == keys

    # A claim now finds the task's group out of the rotation and reads nothing more.
    with sqlite3.connect(db) as conn:
        (group,) = conn.execute("SELECT state FROM flow_groups WHERE task = ?", (RULED,)).fetchone()
    assert group == "waiting"
    assert await claim(backend) == []


# -- expiry of a workflow's job ----------------------------------------------------------


async def test_a_workflow_job_that_expires_fails_its_dependents_in_the_same_step(
    db: Path, backend: SqliteBackend
) -> None:
    # Given a chain whose first job must start by T0 + 10 (in a ruled task's lane)
    await backend.set_rules("q", [TaskRules(task=RULED, concurrency=1)])
    first = NewJob(id="first", task=RULED, queue="q", payload=b"", enqueued_at_ms=T0,
                   run_at_ms=T0, workflow="wf", start_by_ms=T0 + 10)  # fmt: skip
    then = NewJob(id="then", task=RULED, queue="q", payload=b"", enqueued_at_ms=T0,
                  run_at_ms=T0, workflow="wf")  # fmt: skip
    chain = NewWorkflow(
        id="wf",
        kind="chain",
        jobs=[
            WorkflowJob(job=first),
            WorkflowJob(job=then, parents=(Edge(parent="first", queue="q"),)),
        ],
        outputs=("then",),
        created_at_ms=T0,
    )
    assert await backend.enqueue_workflow(chain, T0)
    assert column(db, "first", "lane") == RULED + "\x1f"

    # When a claim comes after the deadline
    assert await claim(backend, now_ms=T0 + 11) == []

    # Then the job ended expired, counted, and its dependent upstream_failed at once
    assert column(db, "first", "status") == "expired"
    assert column(db, "then", "status") == "upstream_failed"
    assert (await backend.flow_stats("q")).expired == 1
    record = await backend.get_workflow("wf")
    assert record is not None
    assert record.ended == 2
