"""Broker contract, JobStore port: producers and readers of jobs.

Methods: ``enqueue_jobs``, ``get_job``, ``wait_for_job``, ``cancel_job``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from corq.backends import Backend, open_backend
from corq.backends.base import (
    MAX_JOB_ID_CHARS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Completion,
    Failure,
    Release,
    TaskRules,
    WorkerLease,
)
from corq.errors import EnqueueError
from corq.job import JobStatus
from tests.contract.conftest import Damage
from tests.contract.jobs import (
    LEASE_MS,
    T0,
    Q,
    assert_damaged,
    claim,
    claim_batch,
    dead_ids,
    ids,
    make_suspects,
    new_job,
    record,
    register,
)
from tests.contract.workflows import WF, Hands, dag, error_of, settle, statuses, wjob

# ------------------------------------------------------------------------------------------------
# Enqueue and read back
# ------------------------------------------------------------------------------------------------


async def test_enqueue_stores_a_queued_job(backend: Backend) -> None:
    assert await backend.enqueue_jobs([new_job("a", priority=3, payload=b"\x00\xffargs")]) == [True]

    job = await backend.get_job("a", Q)

    assert job is not None
    assert (job.id, job.task, job.queue, job.status) == ("a", "tasks.add", Q, JobStatus.QUEUED)
    assert (job.payload, job.priority, job.attempt, job.failures, job.deaths) == (
        b"\x00\xffargs",
        3,
        0,
        0,
        0,
    )
    assert (job.enqueued_at_ms, job.run_at_ms) == (T0, T0)
    assert job.started_at_ms is None
    assert job.finished_at_ms is None
    assert job.worker_id is None
    assert job.result is None


async def test_enqueue_an_existing_id_leaves_it_untouched(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a", payload=b"first")])

    created = await backend.enqueue_jobs([new_job("a", payload=b"second"), new_job("b")])

    assert created == [False, True]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.payload == b"first"


async def test_a_repeated_id_in_one_batch_is_created_once(backend: Backend) -> None:
    created = await backend.enqueue_jobs([new_job("a", payload=b"1"), new_job("a", payload=b"2")])

    assert created == [True, False]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.payload == b"1"


async def test_enqueue_spans_queues_and_get_job_searches_them(backend: Backend) -> None:
    created = await backend.enqueue_jobs([new_job("a", queue="q1"), new_job("b", queue="q2")])

    assert created == [True, True]
    found = await backend.get_job("b")
    assert found is not None
    assert found.queue == "q2"
    assert await backend.get_job("b", "q1") is None
    assert await backend.get_job("nope") is None
    assert {"q1", "q2"} <= set(await backend.list_queues())


async def test_many_jobs_in_one_call(backend: Backend) -> None:
    jobs = [new_job(f"j{i}") for i in range(2500)]

    assert await backend.enqueue_jobs(jobs) == [True] * 2500

    (stats,) = await backend.queue_stats([Q])
    assert stats.ready == 2500


async def test_a_new_job_has_no_progress_and_no_death_log(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])

    job = await record(backend, "a")

    assert (job.progress, job.death_log) == (None, ())
    any_queue = await backend.get_job("a")
    assert any_queue is not None
    assert (any_queue.progress, any_queue.death_log) == (None, ())


async def test_an_id_whose_record_expired_can_be_enqueued_again(backend: Backend) -> None:
    """An expired record is gone: its id is free again (SQLite deletes expired rows lazily,
    so an enqueue that meets one must replace it)."""
    # Given a job that succeeded with its result kept for 1 ms (by this machine's clock,
    # the broker's too)
    now = time.time_ns() // 1_000_000
    await backend.enqueue_jobs([new_job("a")])
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=30_000), None)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, 30_000, None)).jobs
    done = Completion(job_id="a", queue=Q, fence=claimed.fence, result=b"1", finished_at_ms=now)
    assert await backend.complete_jobs("w1", [done], 1) == [True]

    # When its record has expired
    deadline = time.monotonic() + 5
    while await backend.get_job("a", Q) is not None:
        assert time.monotonic() < deadline, "the record never expired"
        await backend.promote_due_jobs(Q, None)  # brings the broker's time along
        await asyncio.sleep(0.01)

    # Then the same id can be enqueued again, as a new job
    assert await backend.enqueue_jobs([new_job("a", payload=b"again")]) == [True]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.payload, job.attempt) == (JobStatus.QUEUED, b"again", 0)


# ------------------------------------------------------------------------------------------------
# What enqueue refuses
#
# ``enqueue_jobs`` refuses an empty id, an id over MAX_JOB_ID_CHARS and a priority outside
# PRIORITY_MIN..PRIORITY_MAX with an EnqueueError, the same message on every broker, and
# writes nothing of the batch.
# ------------------------------------------------------------------------------------------------


REFUSED = {
    "empty id": new_job(""),
    "id too long": new_job("x" * (MAX_JOB_ID_CHARS + 1)),
    "priority too high": new_job("p", priority=PRIORITY_MAX + 1),
    "priority too low": new_job("p", priority=PRIORITY_MIN - 1),
}


#: What each message must name, so the producer knows what to fix.
NAMED = {
    "empty id": "id",
    "id too long": str(MAX_JOB_ID_CHARS),
    "priority too high": "priority",
    "priority too low": "priority",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_enqueue_refuses_a_bad_id_or_priority_and_writes_nothing(
    backend: Backend, case: str
) -> None:
    with pytest.raises(EnqueueError) as refused:
        await backend.enqueue_jobs([new_job("fine"), REFUSED[case], new_job("fine2", queue="q2")])

    assert NAMED[case] in str(refused.value)
    assert await backend.get_job("fine", Q) is None
    assert await backend.get_job("fine2") is None
    (stats,) = await backend.queue_stats([Q])
    assert stats.ready == 0


async def test_enqueue_accepts_the_limits_themselves(backend: Backend) -> None:
    longest = "x" * MAX_JOB_ID_CHARS
    jobs = [
        new_job(longest, priority=PRIORITY_MIN),
        new_job("top", priority=PRIORITY_MAX),
    ]

    assert await backend.enqueue_jobs(jobs) == [True, True]

    assert (await record(backend, longest)).priority == PRIORITY_MIN
    await register(backend, "w1")
    assert [j.id for j in await claim(backend, "w1")] == ["top", longest]


async def test_both_brokers_refuse_with_the_same_message(
    redis_url: str, tmp_path: Path, prefix: str
) -> None:
    brokers = [
        open_backend(redis_url, prefix=prefix),
        open_backend(f"sqlite:///{tmp_path / 'corq.db'}"),
    ]
    try:
        for case, bad in sorted(REFUSED.items()):
            messages = []
            for backend in brokers:
                with pytest.raises(EnqueueError) as refused:
                    await backend.enqueue_jobs([bad])
                messages.append(str(refused.value))
            assert messages[0] == messages[1], case
    finally:
        for backend in brokers:
            await backend.close()


# ------------------------------------------------------------------------------------------------
# Cancel
# ------------------------------------------------------------------------------------------------


async def test_cancel_queued_and_scheduled_jobs(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("now"), new_job("later", delay_ms=5000), new_job("kept")])
    await register(backend)

    assert await backend.cancel_job("now", Q, T0 + 1) is True
    assert await backend.cancel_job("later", Q, T0 + 2) is True

    cancelled = await backend.get_job("now", Q)
    assert cancelled is not None
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.finished_at_ms == T0 + 1
    batch = await backend.claim_jobs(Q, "w1", 10, 30_000, T0 + 10_000)
    assert [j.id for j in batch.jobs] == ["kept"]
    assert batch.next_due_ms is None


async def test_cancel_a_failed_job_waiting_for_its_retry(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, 30_000, T0)).jobs
    failure = Failure(
        job_id="a",
        queue=Q,
        fence=claimed.fence,
        error="E: x",
        traceback=None,
        retry_at_ms=T0 + 1000,
        finished_at_ms=T0,
    )
    await backend.fail_jobs("w1", [failure], 60_000)

    assert await backend.cancel_job("a", Q, T0 + 10) is True

    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.status == JobStatus.CANCELLED
    batch = await backend.claim_jobs(Q, "w1", 1, 30_000, T0 + 5000)
    assert batch.jobs == []
    assert batch.next_due_ms is None


async def test_cancel_refuses_finished_and_unknown_jobs(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    a, b = (await backend.claim_jobs(Q, "w1", 2, 30_000, T0)).jobs
    done = Completion(job_id=b.id, queue=Q, fence=b.fence, result=b"1", finished_at_ms=T0)
    await backend.complete_jobs("w1", [done], 60_000)

    assert await backend.cancel_job(b.id, Q, T0) is False
    assert await backend.cancel_job("missing", Q, T0) is False
    assert await backend.cancel_job(a.id, Q, T0) is True
    assert await backend.cancel_job(a.id, Q, T0) is False  # once
    assert (await record(backend, b.id)).status == JobStatus.SUCCEEDED


async def test_a_cancelled_running_job_refuses_its_holders_outcomes(backend: Backend) -> None:
    # Given three running jobs of one holder, cancelled in the broker
    await backend.enqueue_jobs([new_job("a"), new_job("b"), new_job("c")])
    await register(backend)
    a, b, c = (await backend.claim_jobs(Q, "w1", 3, 30_000, T0)).jobs
    for job in (a, b, c):
        assert await backend.cancel_job(job.id, Q, T0 + 1) is True

    # When the holder still reports on them
    done = Completion(job_id=a.id, queue=Q, fence=a.fence, result=b"1", finished_at_ms=T0 + 2)
    failed = Failure(
        job_id=b.id,
        queue=Q,
        fence=b.fence,
        error="boom",
        traceback="",
        retry_at_ms=T0 + 3,
        finished_at_ms=T0 + 2,
    )
    back = Release(job_id=c.id, queue=Q, fence=c.fence)
    assert await backend.complete_jobs("w1", [done], 60_000) == [False]
    assert await backend.fail_jobs("w1", [failed], 60_000) == [False]
    assert await backend.release_jobs("w1", [back]) == [False]

    # Then each stays cancelled, still naming its holder, and nothing runs them again
    for job in (a, b, c):
        got = await record(backend, job.id)
        assert (got.status, got.worker_id, got.finished_at_ms) == (
            JobStatus.CANCELLED,
            "w1",
            T0 + 1,
        )
    assert await backend.count_held_jobs(Q, "w1") == 0
    assert await backend.list_held_jobs(Q, "w1") == []
    assert await claim(backend, "w1", T0 + 10) == []
    later = T0 + 10 * LEASE_MS
    await backend.reclaim_stalled_jobs(Q, later, 3)  # w1's lease passed
    await register(backend, "w2", later)
    assert await claim(backend, "w2", later) == []
    assert (await record(backend, b.id)).status == JobStatus.CANCELLED


async def test_cancelling_a_running_job_wakes_its_waiters(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    assert ids(await claim_batch(backend, "w1", T0)) == ["a"]
    waiting = asyncio.create_task(backend.wait_for_job("a", Q, 10))
    await asyncio.sleep(0.05)  # the waiter is subscribed (or watching) before the cancel

    assert await backend.cancel_job("a", Q, T0 + 1) is True

    job = await asyncio.wait_for(waiting, 5)
    assert job is not None
    assert job.status == JobStatus.CANCELLED


async def test_cancelling_a_running_job_frees_its_concurrency_slot(backend: Backend) -> None:
    rules = TaskRules(task="tasks.add", concurrency=1)
    await backend.set_rules(Q, [rules])
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    assert ids(await claim_batch(backend, "w1", T0, count=2)) == ["a"]

    assert await backend.cancel_job("a", Q, T0 + 1) is True

    assert ids(await claim_batch(backend, "w1", T0 + 2, count=2)) == ["b"]


async def test_cancelling_a_running_workflow_job_fails_its_dependents(backend: Backend) -> None:
    # Given a → b, with a running
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    await register(backend)
    assert ids(await claim_batch(backend, "w1", T0)) == ["a"]

    # When a is cancelled and its queue settled
    assert await backend.cancel_job("a", Q, T0 + 1) is True
    await settle(backend)

    # Then b ends upstream_failed
    assert await statuses(backend, "a", "b") == {
        "a": JobStatus.CANCELLED,
        "b": JobStatus.UPSTREAM_FAILED,
    }


async def test_a_waiting_suspect_can_be_cancelled(backend: Backend) -> None:
    now = await make_suspects(backend)

    assert await backend.cancel_job("poison", Q, now) is True

    job = await record(backend, "poison")
    assert job.status == JobStatus.CANCELLED
    (stats,) = await backend.queue_stats([Q])
    assert stats.ready == 1
    await register(backend, "w3", now)
    batch = await claim_batch(backend, "w3", now, suspects=1)
    assert (ids(batch), batch.suspects) == (["innocent"], 0)
    assert ids(await claim_batch(backend, "w3", now, suspects=1)) == []
    assert await backend.cancel_job("innocent", Q, now) is True  # running: fenced off


async def test_cancelling_a_waiting_job_of_a_workflow_fails_its_children(backend: Backend) -> None:
    # Given a → b → c
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a"), wjob("c", "b")), None)

    # When the waiting b is cancelled (and its queue settled)
    assert await backend.cancel_job("b", Q, T0) is True
    await settle(backend)

    # Then c is upstream_failed by it; a still runs, and its success releases nothing
    assert await statuses(backend, "a", "b", "c") == {
        "a": JobStatus.QUEUED,
        "b": JobStatus.CANCELLED,
        "c": JobStatus.UPSTREAM_FAILED,
    }
    error = await error_of(backend, "c")
    assert error is not None
    assert error.startswith("upstream_failed: b ended cancelled"), error
    hands = Hands(backend)
    await hands.run("a")
    assert await hands.claim() == {}
    assert await statuses(backend, "b", "c") == {
        "b": JobStatus.CANCELLED,
        "c": JobStatus.UPSTREAM_FAILED,
    }
    workflow = await backend.get_workflow(WF)
    assert workflow is not None
    assert workflow.finished_at_ms is not None
    assert workflow.first_failure is not None
    assert workflow.first_failure[0] == "b"


# ------------------------------------------------------------------------------------------------
# Waiting for a job's outcome
# ------------------------------------------------------------------------------------------------


async def test_wait_for_job_returns_as_soon_as_the_job_completes(backend: Backend) -> None:
    # Given a running job and a caller waiting for it
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, 30_000, T0)).jobs
    waiter = asyncio.create_task(backend.wait_for_job("a", Q, timeout_s=10))
    await asyncio.sleep(0.1)
    assert not waiter.done()

    # When the worker completes it
    started = time.perf_counter()
    done = Completion(job_id="a", queue=Q, fence=claimed.fence, result=b"42", finished_at_ms=T0 + 5)
    assert await backend.complete_jobs("w1", [done], 60_000) == [True]
    job = await asyncio.wait_for(waiter, 5)

    # Then the waiter wakes at once with the final record
    assert time.perf_counter() - started < 0.5
    assert job is not None
    assert (job.status, job.result, job.finished_at_ms) == (JobStatus.SUCCEEDED, b"42", T0 + 5)


async def test_wait_for_job_returns_at_once_for_a_finished_or_unknown_job(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await backend.cancel_job("a", Q, T0)

    started = time.perf_counter()
    job = await backend.wait_for_job("a", Q, timeout_s=10)

    assert job is not None
    assert job.status == JobStatus.CANCELLED
    assert await backend.wait_for_job("missing", Q, timeout_s=10) is None
    assert time.perf_counter() - started < 0.5


async def test_wait_for_job_returns_the_live_record_on_timeout(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])

    started = time.perf_counter()
    job = await backend.wait_for_job("a", Q, timeout_s=0.3)

    assert 0.25 <= time.perf_counter() - started < 2
    assert job is not None
    assert job.status == JobStatus.QUEUED


async def test_many_waiters_on_many_jobs(backend: Backend) -> None:
    # Given 200 callers waiting on 100 running jobs (two per job)
    jobs = [new_job(f"j{i}") for i in range(100)]
    await backend.enqueue_jobs(jobs)
    await register(backend)
    claimed = (await backend.claim_jobs(Q, "w1", 100, 30_000, T0)).jobs
    waiters = [
        asyncio.create_task(backend.wait_for_job(job.id, Q, timeout_s=10)) for job in jobs + jobs
    ]
    await asyncio.sleep(0.2)

    # When every job completes
    started = time.perf_counter()
    done = [
        Completion(job_id=c.id, queue=Q, fence=c.fence, result=b"ok", finished_at_ms=T0)
        for c in claimed
    ]
    await backend.complete_jobs("w1", done, 60_000)
    results = await asyncio.wait_for(asyncio.gather(*waiters), 10)

    # Then every waiter gets its job's final record promptly
    assert time.perf_counter() - started < 2
    assert [r.id if r else None for r in results] == [j.id for j in jobs + jobs]
    assert all(r is not None and r.status == JobStatus.SUCCEEDED for r in results)


# ------------------------------------------------------------------------------------------------
# Damaged records
#
# Damaged data costs only itself (see the damaged section of test_claims.py).
# ------------------------------------------------------------------------------------------------


async def test_a_damaged_record_still_reads_with_defaults_and_says_so(
    backend: Backend, damage: Damage
) -> None:
    await backend.enqueue_jobs([new_job(f"j{i}", priority=3) for i in range(4)])
    await damage.set_field(Q, "j0", "attempt", "seven")
    await damage.set_field(Q, "j1", "status", "lost-in-space")
    await damage.set_field(Q, "j2", "progress", "half")
    await damage.wrong_type(Q, "j3")

    # A field that is not a number takes its default; the rest reads as written
    j0 = await record(backend, "j0")
    assert (j0.id, j0.queue, j0.status, j0.attempt, j0.priority, j0.task) == (
        "j0",
        Q,
        JobStatus.QUEUED,
        0,
        3,
        "tasks.add",
    )
    assert_damaged(j0, "attempt", "seven")
    # an unknown status reads as dead
    j1 = await record(backend, "j1")
    assert j1.status == JobStatus.DEAD
    assert_damaged(j1, "status", "lost-in-space")
    j2 = await record(backend, "j2")
    assert j2.progress is None
    assert_damaged(j2, "progress", "half")
    # a record that cannot be read as a job at all still reads, saying so
    j3 = await record(backend, "j3")
    assert (j3.id, j3.queue) == ("j3", Q)
    assert_damaged(j3)
    # and so does each, searched for in every queue
    for job_id in ("j0", "j1", "j2", "j3"):
        found = await backend.get_job(job_id)
        assert found is not None
        assert (found.id, found.queue) == (job_id, Q)
        assert_damaged(found)


async def test_cancel_of_a_damaged_record_is_refused(backend: Backend, damage: Damage) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await damage.wrong_type(Q, "a")

    assert await backend.cancel_job("a", Q, T0) is False
    assert await backend.cancel_job("b", Q, T0) is True

    # and the damaged one is never handed out
    await register(backend, "w1")
    assert await claim(backend, "w1") == []
    assert await dead_ids(backend) == {"a"}


async def test_a_lost_counter_is_made_again_and_order_goes_on(
    backend: Backend, damage: Damage
) -> None:
    # Given two queued jobs, and the broker's FIFO counter deleted (SQLite's meta row)
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await damage.drop_meta("seq")

    # When more jobs arrive
    assert await backend.enqueue_jobs([new_job("c"), new_job("d")]) == [True, True]

    # Then they queue behind the earlier ones
    await register(backend, "w1")
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0)
    assert [j.id for j in batch.jobs] == ["a", "b", "c", "d"]
