"""SQLite only: workflows released inside the ends' own transactions, on one shared file.

The contract suite (tests/contract/test_workflows.py) says what every broker does; these
tests pin what SQLite promises beyond it: an end and everything it releases are one
transaction (nothing to settle, nothing half-done to see), several backends and processes
completing parents of one child at once release it exactly once, damaged rows in the
workflow tables cost only themselves, and finished workflows go away in bounded steps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from corq.backends.base import (
    BATCH,
    WORKFLOW_CREATE_GRACE_MS,
    WORKFLOW_KEEP_MS,
    Completion,
    NewJob,
    NewWorkflow,
    ResultShape,
    WorkerLease,
)
from corq.backends.sqlite import SqliteBackend
from corq.backends.sqlite import outcomes as sqlite_outcomes
from corq.backends.sqlite.store import connect
from corq.backends.sqlite.url import parse_url
from corq.job import JobStatus
from tests.contract.workflows import Q2, WF, Hands, dag, edge, wjob
from tests.integration.sqlite_files import write_loose_schema, writer

S = JobStatus
Q = "default"
T0 = 1_700_000_000_000


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "corq.db"


@pytest.fixture
async def backend(db: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(f"sqlite:///{db}")
    yield b
    await b.close()


@contextmanager
def look(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the file (autocommit; a read sees the last commit)."""
    with writer(db) as conn:
        yield conn


def status_in(db: Path, job_id: str, queue: str = Q) -> str | None:
    with look(db) as conn:
        row = conn.execute("SELECT status FROM jobs WHERE queue = ? AND id = ?", (queue, job_id))
        found = row.fetchone()
    return None if found is None else str(found[0])


def rows_of(db: Path, table: str) -> int:
    with look(db) as conn:
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(n)


# -- one transaction per end ------------------------------------------------------------


async def test_the_release_is_part_of_the_completions_own_transaction(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a → b, with a held by a worker
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    a = await Hands(backend).claim_one("a")
    conn = connect(parse_url(f"sqlite:///{db}"), 5_000)
    try:
        # When a's completion runs in a transaction that has not committed yet
        conn.execute("BEGIN IMMEDIATE")
        done = Completion(job_id="a", queue=Q, fence=a.fence, result=b"1", finished_at_ms=T0)
        assert sqlite_outcomes.complete_jobs(conn, "w1", [done], 60_000) == [True]

        # Then inside it b is already queued, and nobody else sees either change
        inside = dict(conn.execute("SELECT id, status FROM jobs").fetchall())
        assert inside == {"a": "succeeded", "b": "queued"}
        assert (status_in(db, "a"), status_in(db, "b")) == ("running", "waiting")

        # And rolling the completion back takes the release back with it
        conn.execute("ROLLBACK")
        assert (status_in(db, "a"), status_in(db, "b")) == ("running", "waiting")
    finally:
        conn.close()
    # Settling finds nothing left to do, and the real completion releases b
    assert await backend.settle_workflows(Q, None) == 0
    await Hands(backend).succeed(a)
    assert status_in(db, "b") == "queued"


async def test_a_reader_never_sees_a_link_ended_while_the_next_one_still_waits(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a chain of 60 links, and another connection reading snapshots while it runs
    links = [f"l{n:02}" for n in range(60)]
    chain = [wjob(links[0]), *(wjob(link, prev) for prev, link in itertools.pairwise(links))]
    assert await backend.enqueue_workflow(dag(*chain), None)
    seen_torn: list[dict[str, str]] = []
    snapshots = 0
    stop = threading.Event()

    def read() -> None:
        nonlocal snapshots
        with look(db) as conn:
            while not stop.is_set():
                statuses = dict(conn.execute("SELECT id, status FROM jobs").fetchall())
                snapshots += 1
                for prev, link in itertools.pairwise(links):
                    if statuses[prev] == "succeeded" and statuses[link] == "waiting":
                        seen_torn.append(statuses)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        # When the links run one after the other
        hands = Hands(backend)
        for link in links:
            await hands.run(link)
    finally:
        stop.set()
        reader.join()

    # Then no snapshot caught a link's success without the next link's release
    assert snapshots > 0
    assert seen_torn == []
    assert {status_in(db, link) for link in links} == {"succeeded"}


async def test_a_whole_workflow_appears_at_once(backend: SqliteBackend, db: Path) -> None:
    # Given another connection counting the workflow's jobs while it is written
    jobs = [wjob(f"r{n}") for n in range(3_000)] + [wjob("join", *(f"r{n}" for n in range(3_000)))]
    counts: set[int] = set()
    stop = threading.Event()

    def count() -> None:
        with look(db) as conn:
            while not stop.is_set():
                (n,) = conn.execute("SELECT count(*) FROM jobs").fetchone()
                counts.add(n)

    await backend.ping()  # the schema exists before the reader looks
    reader = threading.Thread(target=count)
    reader.start()
    try:
        assert await backend.enqueue_workflow(dag(*jobs), None)
        await asyncio.to_thread(_until_seen, counts, 3_001)
    finally:
        stop.set()
        reader.join()

    # Then it only ever saw none of the jobs or all of them
    assert counts <= {0, 3_001}


def _until_seen(counts: set[int], n: int) -> None:
    deadline = time.monotonic() + 10
    while n not in counts and time.monotonic() < deadline:
        time.sleep(0.001)


async def test_a_release_by_a_backends_own_completion_wakes_its_own_waiter(db: Path) -> None:
    """A worker's fetcher waits on the backend its writer completes with: the release its
    own completion makes must wake it, even when the commit lands right after the wait's
    first look (data_version never moves for a connection's own commits)."""
    # Commits without fsync are fast enough to land before the waiter listens
    b = SqliteBackend(f"sqlite:///{db}?synchronous=normal")
    try:
        hands = Hands(b)
        for n in range(30):
            wf = dag(wjob(f"a{n}", workflow=f"wf{n}"), wjob(f"b{n}", f"a{n}", workflow=f"wf{n}"),
                     workflow_id=f"wf{n}")  # fmt: skip
            assert await b.enqueue_workflow(wf, None)
            a = await hands.claim_one(f"a{n}")
            # Given a waiter whose first look is queued before the completion
            waiter = asyncio.create_task(b.wait_for_jobs(Q, 20))
            await asyncio.sleep(0)
            # When the completion releases b, the waiter is woken, long before its timeout
            await hands.succeed(a)
            try:
                woken, _ = await asyncio.wait({waiter}, timeout=1)
            finally:
                waiter.cancel()
            assert waiter in woken, f"round {n}: the release did not wake the waiter"
            assert waiter.result() is True
            await hands.claim_one(f"b{n}")
    finally:
        await b.close()


# -- several backends and processes on one file ------------------------------------------


async def test_backends_on_one_file_completing_parents_at_once_release_the_child_once(
    db: Path,
) -> None:
    # Given a fan-in of 400 parents, and four backends (each its own connection) sharing it
    parents = [f"p{n:03}" for n in range(400)]
    backends = [SqliteBackend(f"sqlite:///{db}") for _ in range(4)]
    try:
        assert await backends[0].enqueue_workflow(
            dag(*(wjob(p) for p in parents), wjob("join", *parents)), None
        )
        hands = [Hands(b, name=f"w{n}") for n, b in enumerate(backends)]

        # When each claims and completes parents in small batches, all at the same time
        async def work(h: Hands) -> list[str]:
            done: list[str] = []
            while held := await h.claim(count=7):
                await h.succeed(*held.values())
                done += list(held)
            return done

        shares = await asyncio.gather(*(work(h) for h in hands))

        # Then every parent ran once, and the child was released exactly once
        assert sorted(p for share in shares for p in share if p != "join") == parents
        joins = [p for share in shares for p in share if p == "join"]
        assert len(joins) <= 1
        if not joins:  # released after the last claims
            assert list(await hands[0].claim()) == ["join"]
        with look(db) as conn:
            assert conn.execute(
                "SELECT pending, decided, count(*) FROM workflow_nodes WHERE job = 'join'"
            ).fetchone() == (0, 1, 1)
            assert conn.execute("SELECT attempt FROM jobs WHERE id = 'join'").fetchone() == (1,)
        record = await backends[1].get_workflow(WF)
        assert record is not None
        assert record.counts.get("succeeded", 0) >= 400
    finally:
        for b in backends:
            await b.close()


PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from corq.backends import open_backend
    from corq.backends.base import Completion, WorkerLease

    async def main(url, worker_id, out):
        b = open_backend(url)
        lease = WorkerLease(worker_id=worker_id, queues=["default"], lease_ms=60_000)
        await b.register_worker(lease, None)
        ran, idle = [], 0
        while idle < 20:  # until nothing was ready for a while (the others finish too)
            batch = await b.claim_jobs("default", worker_id, 5, 60_000, None)
            if not batch.jobs:
                idle += 1
                await b.wait_for_jobs("default", 0.05)
                continue
            idle = 0
            ran += [j.id for j in batch.jobs]
            now = time.time_ns() // 1_000_000
            done = [Completion(job_id=j.id, queue="default", fence=j.fence,
                               result=j.id.encode(), finished_at_ms=now) for j in batch.jobs]
            assert all(await b.complete_jobs(worker_id, done, 3_600_000))
        await b.deregister_worker(lease, None)
        await b.close()
        with open(out, "w") as f:
            json.dump(ran, f)

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.slow
async def test_processes_sharing_the_file_run_every_workflow_job_once(
    backend: SqliteBackend, db: Path, tmp_path: Path
) -> None:
    # Given a fan-in of 300 roots into a chain of 20 links, and 20 diamonds
    roots = [f"r{n:03}" for n in range(300)]
    links = [f"l{n:02}" for n in range(20)]
    jobs = [wjob(r) for r in roots] + [wjob(links[0], *roots)]
    jobs += [wjob(link, prev) for prev, link in itertools.pairwise(links)]
    for n in range(20):
        top, left, right, bottom = (f"d{n}{part}" for part in "tlrb")
        jobs += [wjob(top), wjob(left, top), wjob(right, top), wjob(bottom, left, right)]
    assert await backend.enqueue_workflow(dag(*jobs), None)
    everything = {j.job.id for j in jobs}

    # When three processes claim and complete what is ready, all at once
    outs = [tmp_path / f"w{n}.json" for n in range(3)]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", PROCESS, f"sqlite:///{db}", f"w{n}", str(out)
        )
        for n, out in enumerate(outs)
    ]
    try:
        for proc in procs:
            assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    # Then every job ran exactly once, each after its parents
    ran = [job_id for out in outs for job_id in json.loads(out.read_text())]
    assert sorted(ran) == sorted(everything)
    with look(db) as conn:
        rows = conn.execute("SELECT status, attempt, count(*) FROM jobs GROUP BY 1, 2")
        assert rows.fetchall() == [("succeeded", 1, len(everything))]
    record = await backend.get_workflow(WF)
    assert record is not None
    assert (record.ended, record.total, dict(record.counts)) == (
        len(everything),
        len(everything),
        {"succeeded": len(everything)},
    )
    assert record.finished_at_ms is not None


# -- bounded steps ------------------------------------------------------------------------


async def test_a_parent_with_more_children_than_a_batch_releases_them_all(
    backend: SqliteBackend,
) -> None:
    children = [f"c{n:04}" for n in range(2 * BATCH + 500)]
    assert await backend.enqueue_workflow(
        dag(wjob("root"), *(wjob(c, "root") for c in children)), None
    )
    hands = Hands(backend)

    await hands.run("root")

    released: list[str] = []
    while held := await hands.claim():
        released += list(held)
    assert sorted(released) == children


async def test_a_dead_parent_fails_more_children_than_a_batch_and_their_own(
    backend: SqliteBackend,
) -> None:
    # Given a root with 2,500 children, each with a child of its own in another workflow
    children = [f"c{n:04}" for n in range(2 * BATCH + 500)]
    assert await backend.enqueue_workflow(
        dag(wjob("root"), *(wjob(c, "root") for c in children)), None
    )
    grandchildren = [wjob(f"g{c}", c, workflow="wf_2") for c in children]
    assert await backend.enqueue_workflow(dag(*grandchildren, workflow_id="wf_2"), None)
    hands = Hands(backend)

    # When the root dies
    await hands.die(await hands.claim_one("root"))

    # Then both generations are upstream_failed, and both workflows are over
    for wf_id, total in ((WF, 1 + len(children)), ("wf_2", len(children))):
        record = await backend.get_workflow(wf_id)
        assert record is not None
        assert (record.ended, record.total) == (total, total)
        assert record.finished_at_ms is not None
    summary = await backend.batch_summary("wf_2")
    assert summary is not None
    assert (summary.failed, len(summary.failed_ids)) == (len(children), BATCH)
    assert summary.failed_ids[:2] == ("gc0000", "gc0001")
    assert await hands.claim() == {}


async def test_errors_down_a_long_failed_chain_stay_small(backend: SqliteBackend) -> None:
    # Given a chain of 300 links whose root dies with a long error
    links = [f"l{n:03}" for n in range(300)]
    chain = [wjob(links[0]), *(wjob(link, prev) for prev, link in itertools.pairwise(links))]
    assert await backend.enqueue_workflow(dag(*chain), None)
    hands = Hands(backend)

    await hands.die(await hands.claim_one(links[0]), error="ValueError:" + "é" * 3_000)

    # Then each link names its parent, the cause cut to 1,000 bytes (the 1,000th byte is
    # inside an "é": the cut goes before it)
    last = await backend.get_job(links[-1], Q)
    assert last is not None
    assert last.error is not None
    assert last.error.startswith(f"upstream_failed: {links[-2]} ended upstream_failed: ")
    assert len(last.error.encode()) <= 1_100
    second = await backend.get_job(links[1], Q)
    assert second is not None
    assert second.error is not None
    assert second.error.endswith("é...")
    assert len(second.error.encode()) <= 1_100


async def test_an_addition_waiting_for_an_earlier_job_of_its_batch_watches_nothing(
    backend: SqliteBackend, db: Path
) -> None:
    # Given an open batch with a, and b added later waiting for a
    assert await backend.enqueue_workflow(dag(wjob("a"), open=True, kind="batch"), None)
    await backend.add_to_workflow(WF, [wjob("b", "a")], None)

    # Then a is not flagged as watched by another workflow (it is its own), and its end
    # still releases b
    a = await Hands(backend).claim_one("a")
    assert a.notify is False
    await Hands(backend).succeed(a)
    assert status_in(db, "b") == "queued"


# -- damaged rows in the workflow tables ----------------------------------------------------


@pytest.fixture
async def loose(db: Path) -> AsyncIterator[SqliteBackend]:
    """A backend on a file whose schema lost its NOT NULL constraints (another writer's),
    so any value can sit in any column."""
    write_loose_schema(db)
    b = SqliteBackend(f"sqlite:///{db}")
    yield b
    await b.close()


def damage(db: Path, sql: str, *params: object) -> None:
    with writer(db) as conn:
        assert conn.execute(sql, params).rowcount >= 1, sql


async def test_a_damaged_output_is_named_in_the_outputs_read_and_hides_the_record(
    loose: SqliteBackend, db: Path
) -> None:
    # Given a group of a and b, both outputs, b's output row damaged
    group = dag(wjob("a"), wjob("b"), kind="group", outputs=["a", "b"], shape=ResultShape.LIST)
    assert await loose.enqueue_workflow(group, None)
    damage(db, "UPDATE workflow_outputs SET job = x'37' WHERE workflow = ? AND position = 1", WF)

    # When its outputs are read, the damaged one is a parent whose record is gone, with an
    # error naming the damage (never a shorter list); the record reads as absent
    first, second = await loose.output_outcomes(WF)
    assert (first.job_id, first.status) == ("a", S.QUEUED)
    assert second.status is None
    assert second.error is not None
    assert "damaged workflow record" in second.error
    assert await loose.get_workflow(WF) is None


async def test_a_damaged_workflow_row_costs_only_its_own_record(
    loose: SqliteBackend, db: Path
) -> None:
    # Given two workflows a → b and x → y, the first one's counts damaged
    assert await loose.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    other = dag(wjob("x", workflow="wf_2"), wjob("y", "x", workflow="wf_2"), workflow_id="wf_2")
    assert await loose.enqueue_workflow(other, None)
    damage(db, "UPDATE workflows SET ended = 'many' WHERE id = ?", WF)
    hands = Hands(loose)

    # When both parents succeed: no call fails, and both children are released
    held = await hands.claim()
    await hands.succeed(held["a"], held["x"])
    assert sorted(await hands.claim()) == ["b", "y"]

    # Then the damaged workflow reads as absent; the other one is counted as usual
    assert await loose.get_workflow(WF) is None
    assert await loose.workflow_nodes(WF) == []
    record = await loose.get_workflow("wf_2")
    assert record is not None
    assert (record.ended, dict(record.counts)) == (1, {"succeeded": 1})


async def test_a_damaged_node_keeps_only_its_own_job_waiting(
    loose: SqliteBackend, db: Path
) -> None:
    # Given a → b and a → c, b's pending count damaged
    assert await loose.enqueue_workflow(dag(wjob("a"), wjob("b", "a"), wjob("c", "a")), None)
    damage(db, "UPDATE workflow_nodes SET pending = 'one' WHERE job = 'b'")
    hands = Hands(loose)

    # When a succeeds, c is released and b waits (no call fails)
    await hands.run("a")
    held = await hands.claim()
    assert list(held) == ["c"]
    assert status_in(db, "b") == "waiting"

    # And b can still be cancelled, which ends the workflow
    assert await loose.cancel_job("b", Q, None) is True
    await hands.succeed(held["c"])
    record = await loose.get_workflow(WF)
    assert record is not None
    assert record.finished_at_ms is not None
    assert dict(record.counts) == {"succeeded": 2, "cancelled": 1}


async def test_a_damaged_edge_flag_reads_as_strict_and_a_damaged_parent_is_reported(
    loose: SqliteBackend, db: Path
) -> None:
    # Given a → b whose allow_failed flag is damaged, and c → d whose parent id is a blob
    assert await loose.enqueue_workflow(
        dag(wjob("a"), wjob("b", edge("a", allow_failed=True)), wjob("c"), wjob("d", "c")),
        None,
    )
    damage(db, "UPDATE workflow_edges SET allow_failed = 'yes' WHERE child = 'b'")
    damage(db, "UPDATE workflow_edges SET parent = x'00ff' WHERE child = 'd'")
    hands = Hands(loose)
    held = await hands.claim()

    # When a dies, its edge counts as one that does not allow it
    await hands.die(held["a"])
    assert status_in(db, "b") == "upstream_failed"

    # And d's unreadable edge reads as a parent whose record is gone, naming the damage
    [outcome] = await loose.parent_outcomes("d", Q)
    assert outcome.status is None
    assert outcome.error is not None
    assert outcome.error.startswith("damaged workflow record: edge parent=")
    nodes = {n.job_id: n for n in await loose.workflow_nodes(WF)}
    assert nodes["d"].parents == ()
    await hands.succeed(held["c"])  # c's end finds no edge to d: d waits, nothing fails
    assert status_in(db, "d") == "waiting"


async def test_a_damaged_workflow_job_record_dies_at_its_claim_and_fails_its_children(
    loose: SqliteBackend, db: Path
) -> None:
    assert await loose.enqueue_workflow(dag(wjob("a"), wjob("b", "a"), wjob("c", "b")), None)
    damage(db, "UPDATE jobs SET payload = 'not bytes' WHERE id = 'a'")

    # When a claim meets the damaged root, it goes to the dead letters
    assert await Hands(loose).claim() == {}

    # and its descendants are upstream_failed in the same step, naming the damage
    assert (status_in(db, "a"), status_in(db, "b"), status_in(db, "c")) == (
        "dead",
        "upstream_failed",
        "upstream_failed",
    )
    b = await loose.get_job("b", Q)
    assert b is not None
    assert b.error is not None
    assert b.error.startswith("upstream_failed: a ended dead: damaged job record: payload=")
    record = await loose.get_workflow(WF)
    assert record is not None
    assert record.finished_at_ms is not None


async def test_a_job_record_naming_a_workflow_that_is_not_text_ends_as_usual(
    loose: SqliteBackend, db: Path
) -> None:
    await loose.enqueue_jobs(
        [NewJob(id="x", task="t", queue=Q, payload=b"{}", enqueued_at_ms=T0, run_at_ms=T0)]
    )
    damage(db, "UPDATE jobs SET workflow = 42, notify = 'yes' WHERE id = 'x'")
    hands = Hands(loose)

    await hands.run("x")

    assert status_in(db, "x") == "succeeded"


async def test_damaged_counts_start_again_and_unreadable_ones_are_left_out(
    loose: SqliteBackend, db: Path
) -> None:
    assert await loose.enqueue_workflow(dag(wjob("a"), wjob("b"), wjob("c")), None)
    hands = Hands(loose)
    held = await hands.claim()
    await hands.succeed(held["a"])
    damage(db, "UPDATE workflow_counts SET n = 'lots' WHERE state = 'succeeded'")
    record = await loose.get_workflow(WF)
    assert record is not None
    assert dict(record.counts) == {}  # unreadable: left out

    await hands.succeed(held["b"], held["c"])

    record = await loose.get_workflow(WF)
    assert record is not None
    assert (record.ended, dict(record.counts)) == (3, {"succeeded": 2})


# -- keeping and forgetting -------------------------------------------------------------------


async def test_a_finished_workflow_and_its_jobs_go_once_kept_long_enough(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a finished chain a → b whose results have a one-minute TTL, on a fake clock
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), T0)
    lease = WorkerLease(worker_id="w", queues=[Q], lease_ms=60_000)
    await backend.register_worker(lease, T0)
    for job_id in ("a", "b"):
        [job] = (await backend.claim_jobs(Q, "w", 1, 60_000, T0)).jobs
        assert job.id == job_id
        done = Completion(job_id=job_id, queue=Q, fence=job.fence, result=b"1", finished_at_ms=T0)
        assert await backend.complete_jobs("w", [done], 60_000) == [True]
    record = await backend.get_workflow(WF)
    assert record is not None
    assert record.finished_at_ms == T0

    # When the result TTL has passed, the records are still there for children to read
    await backend.promote_due_jobs(Q, T0 + 60_001)
    assert await backend.get_job("a", Q) is not None
    assert await backend.get_workflow(WF) is not None

    # When WORKFLOW_KEEP_MS has passed, the workflow and its jobs are gone, rows included
    await backend.promote_due_jobs(Q, T0 + WORKFLOW_KEEP_MS + 1)
    assert await backend.get_workflow(WF) is None
    assert await backend.get_job("a", Q) is None
    await _expire_now(db)
    for table in ("workflows", "workflow_nodes", "workflow_edges", "workflow_counts", "jobs"):
        assert rows_of(db, table) == 0, table

    # And its id can be used again
    assert await backend.enqueue_workflow(dag(wjob("a")), T0 + WORKFLOW_KEEP_MS + 2)


async def _expire_now(db: Path) -> None:
    """Delete what has expired, with a backend that has not done so yet (each backend
    does at most once a second)."""
    fresh = SqliteBackend(f"sqlite:///{db}")
    try:
        await fresh.promote_due_jobs(Q, None)
    finally:
        await fresh.close()


async def test_a_workflow_job_with_a_longer_result_ttl_keeps_it(backend: SqliteBackend) -> None:
    assert await backend.enqueue_workflow(dag(wjob("a")), T0)
    lease = WorkerLease(worker_id="w", queues=[Q], lease_ms=60_000)
    await backend.register_worker(lease, T0)
    [job] = (await backend.claim_jobs(Q, "w", 1, 60_000, T0)).jobs
    ttl = 2 * WORKFLOW_KEEP_MS
    done = Completion(job_id="a", queue=Q, fence=job.fence, result=b"1", finished_at_ms=T0)
    assert await backend.complete_jobs("w", [done], ttl) == [True]

    await backend.promote_due_jobs(Q, T0 + WORKFLOW_KEEP_MS + 1)
    assert await backend.get_job("a", Q) is not None
    assert await backend.get_workflow(WF) is None  # the workflow's own rows are gone
    await backend.promote_due_jobs(Q, T0 + ttl + 1)
    assert await backend.get_job("a", Q) is None


async def test_tend_deletes_a_workflow_another_writer_left_creating(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a workflow row left 'creating' by another writer, with its waiting job
    await backend.ping()
    with look(db) as conn:
        conn.execute(
            "INSERT INTO workflows (id, kind, state, shape, total, members,"
            " created_at_ms) VALUES ('wf_half', 'dag', 'creating', 'one', 1, 1, ?)",
            (T0,),
        )
        conn.execute(
            "INSERT INTO workflow_nodes (workflow, job, queue, task, position, pending)"
            " VALUES ('wf_half', 'h', ?, 't', 0, 1)",
            (Q,),
        )
        conn.execute(
            "INSERT INTO jobs (queue, id, task, status, payload, seq, enqueued_at_ms,"
            " run_at_ms, workflow) VALUES (?, 'h', 't', 'waiting', x'7b7d', 1, ?, ?, 'wf_half')",
            (Q, T0, T0),
        )
    record = await backend.get_workflow("wf_half")
    assert record is not None
    assert record.creating is True

    # When tended within the grace, it stays; after it, it goes with its job
    assert await backend.tend_workflows(T0 + WORKFLOW_CREATE_GRACE_MS) == 0
    assert await backend.get_workflow("wf_half") is not None
    assert await backend.tend_workflows(T0 + WORKFLOW_CREATE_GRACE_MS + 1) == 1
    assert await backend.get_workflow("wf_half") is None
    assert await backend.get_job("h", Q) is None
    assert rows_of(db, "workflow_nodes") == 0


async def test_a_queue_holding_only_waiting_jobs_is_named_again_when_they_are_released(
    backend: SqliteBackend,
) -> None:
    # Given a child in queue "later" pruned while it waited (waiting jobs sit in no lane)
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a", queue="later")), T0)
    assert "later" in await backend.prune_queues(T0 + 10, 0)

    # When its parent succeeds, the queue is known again
    await Hands(backend).run("a")
    assert "later" in await backend.list_queues()
    [stats] = await backend.queue_stats(["later"])
    assert stats.ready == 1


# -- the cost of an end ----------------------------------------------------------------


def group_of(size: int, workflow_id: str, queue: str) -> NewWorkflow:
    """A group of `size` members with long ids, every member an output (a list)."""
    members = [
        wjob(f"{workflow_id}-member-{n:06d}", queue=queue, workflow=workflow_id)
        for n in range(size)
    ]
    return dag(
        *members,
        workflow_id=workflow_id,
        kind="group",
        outputs=[m.job.id for m in members],
        shape=ResultShape.LIST,
    )


def row_bytes(db: Path, workflow_id: str) -> int:
    """The bytes of every column of a workflow's own row (the row each end updates)."""
    with look(db) as conn:
        names = [row[1] for row in conn.execute("PRAGMA table_info(workflows)")]
        sizes = ", ".join(f"coalesce(length(CAST({name} AS BLOB)), 0)" for name in names)
        row = conn.execute(f"SELECT {sizes} FROM workflows WHERE id = ?", (workflow_id,))
        return sum(row.fetchone())


async def test_the_row_each_end_updates_holds_as_much_for_5000_members_as_for_10(
    backend: SqliteBackend, db: Path
) -> None:
    # Given a group of 10 and one of 5,000, every member an output
    assert await backend.enqueue_workflow(group_of(10, "wf_small", Q), T0)
    assert await backend.enqueue_workflow(group_of(5_000, "wf_big", Q2), T0)

    # When a member of each succeeds
    hands = Hands(backend)
    await hands.succeed(*(await hands.claim(Q, 1)).values())
    await hands.succeed(*(await hands.claim(Q2, 1)).values())

    # Then the workflow row each end rewrites stays under 200 bytes for both (it once held the
    # outputs: 175 KB here, read and written again by every end), and the outputs read
    # back whole and in order
    assert row_bytes(db, "wf_small") < 200
    assert row_bytes(db, "wf_big") < 200
    record = await backend.get_workflow("wf_big")
    assert record is not None
    assert record.ended == 1
    assert [job for job, _ in record.outputs] == [f"wf_big-member-{n:06d}" for n in range(5_000)]
