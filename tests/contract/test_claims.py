"""Broker contract, Claims port: a worker's job traffic.

Methods: ``claim_jobs``, ``count_held_jobs``, ``list_held_jobs``, ``set_progress``,
``wait_for_jobs``, ``promote_due_jobs``, ``complete_jobs``, ``fail_jobs``, ``release_jobs``,
``reclaim_stalled_jobs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

from corq.backends import Backend
from corq.backends.base import (
    BATCH,
    WORKFLOW_KEEP_MS,
    ClaimedJob,
    Completion,
    Failure,
    HeldJob,
    NewJob,
    ParentOutcome,
    Reclaimed,
    Release,
    WorkerLease,
    backstop_deaths,
)
from corq.job import JobStatus
from tests.contract.conftest import Damage
from tests.contract.jobs import (
    HOUR_MS,
    LATER,
    LEASE_MS,
    MAX_DEATHS,
    T0,
    Q,
    assert_damaged,
    claim,
    claim_batch,
    completion,
    dead_ids,
    failure,
    flagged,
    hold,
    ids,
    lease_of,
    make_suspects,
    new_job,
    record,
    register,
    release,
    run_and_die,
    wall_ms,
)
from tests.contract.workflows import Hands, dag, wjob
from tests.waiting import until

# Helpers of the claiming, outcome and reclaim tests: the ids claimed, outcomes by id and fence.


async def claim_ids(
    backend: Backend, worker: str = "w1", count: int = 10, now: int = T0
) -> list[str]:
    return [job.id for job in (await backend.claim_jobs(Q, worker, count, LEASE_MS, now)).jobs]


def done(job_id: str, fence: int, *, result: bytes = b"r", queue: str = Q) -> Completion:
    return Completion(job_id=job_id, queue=queue, fence=fence, result=result, finished_at_ms=T0 + 9)


def failed(job_id: str, fence: int, retry_at_ms: int | None, *, counted: bool = True) -> Failure:
    return Failure(
        job_id=job_id,
        queue=Q,
        fence=fence,
        error="ValueError: boom",
        traceback="Traceback (most recent call last): ...",
        retry_at_ms=retry_at_ms,
        finished_at_ms=T0 + 7,
        counted=counted,
    )


# ------------------------------------------------------------------------------------------------
# Claiming
# ------------------------------------------------------------------------------------------------


async def test_claim_takes_higher_priority_first_then_oldest(backend: Backend) -> None:
    await backend.enqueue_jobs(
        [new_job("a"), new_job("b", priority=5), new_job("c"), new_job("d", priority=-1)]
    )
    await backend.enqueue_jobs([new_job("e", priority=5), new_job("f", priority=100)])
    await register(backend)

    assert await claim_ids(backend, count=10) == ["f", "b", "e", "a", "c", "d"]


async def test_claim_takes_at_most_count(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(5)])
    await register(backend)

    assert await claim_ids(backend, count=2) == ["j0", "j1"]
    assert await claim_ids(backend, count=10) == ["j2", "j3", "j4"]
    assert await claim_ids(backend, count=10) == []


async def test_claimed_job_is_running_under_the_worker(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a", priority=2)])
    await register(backend)

    batch = await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0 + 3)

    (claimed,) = batch.jobs
    assert not batch.lost
    assert (claimed.task, claimed.queue, claimed.payload, claimed.priority) == (
        "tasks.add",
        Q,
        b"{}",
        2,
    )
    assert (claimed.attempt, claimed.failures, claimed.deaths) == (1, 0, 0)
    assert (claimed.enqueued_at_ms, claimed.run_at_ms) == (T0, T0)
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.worker_id, job.attempt, job.started_at_ms) == (
        JobStatus.RUNNING,
        "w1",
        1,
        T0 + 3,
    )


async def test_unregistered_worker_is_told_it_is_lost_and_claims_nothing(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])

    batch = await backend.claim_jobs(Q, "stranger", 10, LEASE_MS, T0)

    assert batch.lost
    assert batch.jobs == []
    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.status == JobStatus.QUEUED


# ------------------------------------------------------------------------------------------------
# Delays and promotion
# ------------------------------------------------------------------------------------------------


async def test_delayed_job_waits_until_promoted_at_its_time(backend: Backend) -> None:
    # Given a job due in 5 s and a registered worker
    await backend.enqueue_jobs([new_job("later", delay_ms=5000)])
    await register(backend)
    job = await backend.get_job("later", Q)
    assert job is not None
    assert job.status == JobStatus.SCHEDULED

    # When the worker claims before its time, it gets nothing but learns when it is due
    early = await backend.claim_jobs(Q, "w1", 10, 30_000, T0 + 4999)
    assert early.jobs == []
    assert early.next_due_ms == T0 + 5000

    # Then promotion before its time keeps it scheduled, and at its time makes it queued
    assert await backend.promote_due_jobs(Q, T0 + 4999) == T0 + 5000
    job = await backend.get_job("later", Q)
    assert job is not None
    assert job.status == JobStatus.SCHEDULED
    assert await backend.promote_due_jobs(Q, T0 + 5000) is None
    job = await backend.get_job("later", Q)
    assert job is not None
    assert job.status == JobStatus.QUEUED

    batch = await backend.claim_jobs(Q, "w1", 10, 30_000, T0 + 5000)
    assert [j.id for j in batch.jobs] == ["later"]
    assert batch.jobs[0].run_at_ms == T0 + 5000
    assert batch.next_due_ms is None


async def test_claim_promotes_due_jobs_itself(backend: Backend) -> None:
    await backend.enqueue_jobs(
        [new_job("soon", delay_ms=1000), new_job("much-later", delay_ms=9000)]
    )
    await register(backend)

    batch = await backend.claim_jobs(Q, "w1", 10, 30_000, T0 + 1000)

    assert [j.id for j in batch.jobs] == ["soon"]
    assert batch.next_due_ms == T0 + 9000


# ------------------------------------------------------------------------------------------------
# Outcomes: completion, failure, release (fenced)
# ------------------------------------------------------------------------------------------------


async def test_completion_is_fenced(backend: Backend) -> None:
    # Given a job held by w1
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    await register(backend, "w2")
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    # When a wrong fence or another worker completes it, nothing changes
    assert await backend.complete_jobs("w1", [done("a", claimed.fence + 1)], 60_000) == [False]
    assert await backend.complete_jobs("w2", [done("a", claimed.fence)], 60_000) == [False]
    assert await backend.fail_jobs("w2", [failed("a", claimed.fence, None)], 60_000) == [False]
    assert await backend.release_jobs("w2", [Release(job_id="a", queue=Q, fence=1)]) == [False]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.worker_id, job.result) == (JobStatus.RUNNING, "w1", None)

    # Then the holder completes it once, and only once
    assert await backend.complete_jobs("w1", [done("a", claimed.fence, result=b"7")], 60_000) == [
        True
    ]
    assert await backend.complete_jobs("w1", [done("a", claimed.fence)], 60_000) == [False]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.result, job.finished_at_ms) == (JobStatus.SUCCEEDED, b"7", T0 + 9)
    assert await backend.complete_jobs("w1", [done("missing", 1)], 60_000) == [False]


async def test_outcomes_of_a_batch_across_queues_come_back_in_order(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a", queue="q1"), new_job("b", queue="q2")])
    lease = lease_of("w1", "q1", "q2")
    await backend.register_worker(lease, T0)
    (a,) = (await backend.claim_jobs("q1", "w1", 1, LEASE_MS, T0)).jobs
    (b,) = (await backend.claim_jobs("q2", "w1", 1, LEASE_MS, T0)).jobs

    outcome = await backend.complete_jobs(
        "w1",
        [done("b", b.fence, queue="q2"), done("x", 1, queue="q1"), done("a", a.fence, queue="q1")],
        60_000,
    )

    assert outcome == [True, False, True]


async def test_failure_with_a_retry_waits_then_runs_again(backend: Backend) -> None:
    # Given a job that failed once with a retry in 10 s
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (first,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    assert await backend.fail_jobs("w1", [failed("a", first.fence, T0 + 10_000)], 60_000) == [True]

    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.failures, job.error) == (JobStatus.FAILED, 1, "ValueError: boom")
    assert job.traceback == "Traceback (most recent call last): ..."

    # When a worker claims before and then at the retry time
    early = await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0 + 9_999)
    assert early.jobs == []
    assert early.next_due_ms == T0 + 10_000
    (second,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0 + 10_000)).jobs

    # Then it runs as the second attempt, under a new fence
    assert (second.attempt, second.failures) == (2, 1)
    assert second.fence != first.fence
    assert await backend.complete_jobs("w1", [done("a", first.fence)], 60_000) == [False]
    assert await backend.complete_jobs("w1", [done("a", second.fence)], 60_000) == [True]


async def test_uncounted_failure_keeps_the_retry_budget(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    await backend.fail_jobs("w1", [failed("a", claimed.fence, T0 + 1, counted=False)], 60_000)

    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.failures) == (JobStatus.FAILED, 0)


async def test_failure_without_a_retry_is_dead(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    assert await backend.fail_jobs("w1", [failed("a", claimed.fence, None)], 60_000) == [True]

    job = await backend.wait_for_job("a", Q, timeout_s=5)
    assert job is not None
    assert (job.status, job.failures, job.finished_at_ms) == (JobStatus.DEAD, 1, T0 + 7)
    assert [j.id for j in await backend.list_dead(Q)] == ["a"]
    assert await claim_ids(backend, now=T0 + 99_999) == []


async def test_release_puts_the_job_back_at_the_head(backend: Backend) -> None:
    # Given two jobs, the first held by w1
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    (a,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    # When w1 releases it after starting it
    assert await backend.release_jobs("w1", [Release(job_id="a", queue=Q, fence=a.fence)]) == [True]

    # Then it is queued ahead of b, and the attempt it made counts
    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.status == JobStatus.QUEUED
    (again,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    assert (again.id, again.attempt) == ("a", 2)


async def test_release_of_an_unstarted_job_does_not_count_the_attempt(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    (a,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    release = Release(job_id="a", queue=Q, fence=a.fence, unstarted=True)
    assert await backend.release_jobs("w1", [release]) == [True]

    (again,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    assert (again.id, again.attempt) == ("a", 1)


async def test_a_completed_record_keeps_its_result_until_the_ttl(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=LEASE_MS), T0)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    completion = Completion(
        job_id="a", queue=Q, fence=claimed.fence, result=b"x", finished_at_ms=T0
    )

    await backend.complete_jobs("w1", [completion], 3_600_000)

    job = await backend.get_job("a", Q)
    assert job is not None
    assert job.result == b"x"


async def test_a_workflow_jobs_record_outlives_a_short_result_ttl(backend: Backend) -> None:
    # Given a → b, and an ordinary job p, both completed with a 1 ms result TTL
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    await backend.enqueue_jobs([new_job("p")])
    hands = Hands(backend)
    held = await hands.claim()
    assert sorted(held) == ["a", "p"]
    done_at = wall_ms()
    await hands.succeed(held["a"], held["p"], ttl_ms=1, at_ms=done_at)

    # When the TTL has passed by far (the broker's clock: Redis's own, SQLite's the latest
    # time a call brought)
    await until(lambda: wall_ms() > done_at + 20, what="the 1 ms TTL to pass")
    await backend.promote_due_jobs(Q, done_at + WORKFLOW_KEEP_MS - HOUR_MS)

    # Then the ordinary job's record is gone, the workflow job's is still read by its child
    assert await backend.get_job("p", Q) is None
    a = await backend.get_job("a", Q)
    assert a is not None
    assert (a.status, a.result) == (JobStatus.SUCCEEDED, b"a")
    assert await backend.parent_outcomes("b", Q) == [
        ParentOutcome(job_id="a", queue=Q, status=JobStatus.SUCCEEDED, result=b"a", error=None)
    ]


# ------------------------------------------------------------------------------------------------
# Deaths a worker records itself
#
# When a job's own process dies (a sandbox or a process-pool child) while its worker lives,
# the worker records a death: ``Release(died=True)`` gives the job back, ``Failure(died=True)``
# retries it later or, without a retry, makes it a poison job. Either counts ``deaths + 1``
# and adds the holder to the death log instead of counting a failure.
# ------------------------------------------------------------------------------------------------


async def test_a_release_after_the_jobs_own_process_died_counts_a_death(
    backend: Backend,
) -> None:
    # Given w1 holding "a" ("b" waits behind it)
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend, "w1")
    (a,) = await claim(backend, "w1", count=1)

    # When a's process dies and w1 gives it back as an ordinary job
    assert await backend.release_jobs("w1", [release(a, died=True)]) == [True]

    # Then it is queued at the head with a death on record, its attempt counted
    job = await record(backend, "a")
    assert (job.status, job.worker_id, job.deaths, job.failures, job.death_log) == (
        JobStatus.QUEUED,
        None,
        1,
        0,
        ("w1",),
    )
    batch = await backend.claim_jobs(Q, "w1", 1, 30_000, T0 + 1)
    assert (batch.suspects, [(j.id, j.attempt, j.deaths, j.suspect) for j in batch.jobs]) == (
        0,
        [("a", 2, 1, False)],
    )


async def test_a_failure_after_the_jobs_own_process_died_counts_a_death_not_a_failure(
    backend: Backend,
) -> None:
    # Given w1 holding "a" whose process died; w1 asks for a retry in 1 s
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    (a,) = await claim(backend, "w1")
    died = failure(a, T0 + 1_000, error="ProcessDied: exit code -11", died=True)
    assert await backend.fail_jobs("w1", [died], 60_000) == [True]

    # Then it waits for its retry with one death and no failure
    job = await record(backend, "a")
    assert (job.status, job.deaths, job.failures, job.death_log, job.error) == (
        JobStatus.FAILED,
        1,
        0,
        ("w1",),
        "ProcessDied: exit code -11",
    )

    # And it runs again at its time, as the second attempt
    (again,) = await claim(backend, "w1", T0 + 1_000)
    assert (again.id, again.attempt, again.deaths, again.failures) == ("a", 2, 1, 0)


async def test_a_died_failure_without_a_retry_is_a_poison_job(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    (a,) = await claim(backend, "w1")
    poison = failure(a, None, error="poison job: its own process died", died=True)

    assert await backend.fail_jobs("w1", [poison], 60_000) == [True]

    job = await backend.wait_for_job("a", Q, timeout_s=5)
    assert job is not None
    assert (job.status, job.deaths, job.failures, job.death_log) == (
        JobStatus.DEAD,
        1,
        0,
        ("w1",),
    )
    assert [j.id for j in await backend.list_dead(Q)] == ["a"]


async def test_recorded_deaths_are_fenced(backend: Backend) -> None:
    # Given w1 holding "a"
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    await register(backend, "w2")
    (a,) = await claim(backend, "w1")
    stale = dataclasses.replace(a, fence=a.fence + 1)

    # When another worker, or w1 under a stale fence, reports the job's death
    assert await backend.release_jobs("w2", [release(a, died=True)]) == [False]
    assert await backend.release_jobs("w1", [release(stale, died=True, suspect=True)]) == [False]
    assert await backend.fail_jobs("w2", [failure(a, None, died=True)], 60_000) == [False]

    # Then nothing was counted
    job = await record(backend, "a")
    assert (job.status, job.worker_id, job.deaths, job.death_log) == (
        JobStatus.RUNNING,
        "w1",
        0,
        (),
    )


# ------------------------------------------------------------------------------------------------
# Progress reports of running jobs (fenced like outcomes)
# ------------------------------------------------------------------------------------------------


async def held_by(backend: Backend, worker: str, job_id: str) -> ClaimedJob:
    await backend.enqueue_jobs([new_job(job_id)])
    await backend.register_worker(WorkerLease(worker_id=worker, queues=[Q], lease_ms=LEASE_MS), T0)
    (claimed,) = (await backend.claim_jobs(Q, worker, 1, LEASE_MS, T0)).jobs
    assert claimed.id == job_id
    return claimed


async def test_the_holder_records_progress(backend: Backend) -> None:
    claimed = await held_by(backend, "w1", "a")

    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.25) is True
    assert (await record(backend, "a")).progress == 0.25
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 1.0) is True

    job = await record(backend, "a")
    assert (job.status, job.progress) == (JobStatus.RUNNING, 1.0)


async def test_progress_is_fenced(backend: Backend) -> None:
    # Given a job held by w1 that reported 0.5
    claimed = await held_by(backend, "w1", "a")
    await backend.register_worker(WorkerLease(worker_id="w2", queues=[Q], lease_ms=LEASE_MS), T0)
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.5) is True

    # When a wrong fence, another worker, another queue or an unknown job reports
    assert await backend.set_progress("a", Q, "w1", claimed.fence + 1, 0.9) is False
    assert await backend.set_progress("a", Q, "w2", claimed.fence, 0.9) is False
    assert await backend.set_progress("a", "other", "w1", claimed.fence, 0.9) is False
    assert await backend.set_progress("missing", Q, "w1", claimed.fence, 0.9) is False

    # Then nothing changed
    job = await record(backend, "a")
    assert (job.status, job.worker_id, job.progress) == (JobStatus.RUNNING, "w1", 0.5)


async def test_no_progress_once_the_attempt_is_over(backend: Backend) -> None:
    # Given a job that reported progress and then completed
    claimed = await held_by(backend, "w1", "a")
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.75) is True
    completion = Completion(
        job_id="a", queue=Q, fence=claimed.fence, result=b"r", finished_at_ms=T0 + 1
    )
    assert await backend.complete_jobs("w1", [completion], 60_000) == [True]

    # When its old holder reports again, it is refused, and the last progress is kept
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.9) is False
    job = await record(backend, "a")
    assert (job.status, job.progress) == (JobStatus.SUCCEEDED, 0.75)


async def test_no_progress_for_a_job_that_is_not_running(backend: Backend) -> None:
    # Given a job that was released back to the queue
    claimed = await held_by(backend, "w1", "a")
    release = Release(job_id="a", queue=Q, fence=claimed.fence)
    assert await backend.release_jobs("w1", [release]) == [True]

    # Then the worker that released it may not report on it
    assert await backend.set_progress("a", Q, "w1", claimed.fence, 0.5) is False
    job = await record(backend, "a")
    assert (job.status, job.progress) == (JobStatus.QUEUED, None)


# ------------------------------------------------------------------------------------------------
# Held jobs: what a holder holds, as a worker reconciling with the broker sees it
#
# Every job is added to the holder's held set as it is claimed, so ``count_held_jobs`` (cheap)
# and ``list_held_jobs`` (ids with fences, in bounded steps) always match what the claims
# returned and the outcomes took away.
# ------------------------------------------------------------------------------------------------


def as_held(jobs: list[ClaimedJob]) -> list[HeldJob]:
    return sorted((HeldJob(job_id=j.id, fence=j.fence) for j in jobs), key=lambda h: h.job_id)


async def listed(backend: Backend, holder: str, queue: str = Q) -> list[HeldJob]:
    return sorted(await backend.list_held_jobs(queue, holder), key=lambda h: h.job_id)


async def test_held_jobs_follow_claims_and_outcomes(backend: Backend) -> None:
    # Given w1 holding four jobs claimed in two calls, and w2 one
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(5)])
    await register(backend, "w1")
    await register(backend, "w2")
    jobs = await claim(backend, "w1", count=3)
    jobs += await claim(backend, "w1", count=1)
    other = await claim(backend, "w2", count=1)

    # Then the broker says so, with the fences the claims handed out
    assert await backend.count_held_jobs(Q, "w1") == 4
    assert await listed(backend, "w1") == as_held(jobs)
    assert await listed(backend, "w2") == as_held(other)

    # When w1 completes one, releases one and fails one (to be retried)
    j0, j1, j2, j3 = jobs
    assert await backend.complete_jobs("w1", [completion(j0)], 60_000) == [True]
    assert await backend.release_jobs("w1", [release(j1)]) == [True]
    assert await backend.fail_jobs("w1", [failure(j2, T0 + 1_000)], 60_000) == [True]

    # Then only the last one is still held
    assert await backend.count_held_jobs(Q, "w1") == 1
    assert await listed(backend, "w1") == as_held([j3])


async def test_held_jobs_are_counted_per_holder_and_queue(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a", queue="q1"), new_job("b", queue="q2")])
    await register(backend, "w1", queue="q1")
    await register(backend, "w1", queue="q2")
    (a,) = await claim(backend, "w1", queue="q1")

    assert await backend.count_held_jobs("q1", "w1") == 1
    assert await listed(backend, "w1", "q1") == as_held([a])
    assert await backend.count_held_jobs("q2", "w1") == 0
    assert await backend.list_held_jobs("q2", "w1") == []
    assert await backend.count_held_jobs("q1", "stranger") == 0
    assert await backend.list_held_jobs("q1", "stranger") == []


async def test_every_job_of_a_big_holder_is_listed(backend: Backend) -> None:
    n = 2 * BATCH + 500
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(n)])
    await register(backend, "w1")
    jobs: list[ClaimedJob] = []
    while len(jobs) < n:
        jobs += await claim(backend, "w1", count=BATCH)

    assert await backend.count_held_jobs(Q, "w1") == n
    assert await listed(backend, "w1") == as_held(jobs)


async def test_a_reclaimed_holder_holds_nothing(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend, "w1")
    await claim(backend, "w1")

    await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=3)

    assert await backend.count_held_jobs(Q, "w1") == 0
    assert await backend.list_held_jobs(Q, "w1") == []


async def test_listing_drops_ids_whose_record_no_longer_says_they_are_held(
    backend: Backend, damage: Damage
) -> None:
    # Given w1 holding a, b and c, when b's record is deleted and c's is rewritten to say
    # another worker holds it (by another program)
    await backend.enqueue_jobs([new_job("a"), new_job("b"), new_job("c")])
    await register(backend, "w1")
    a, _, _ = await claim(backend, "w1")
    await damage.delete_record(Q, "b")
    await damage.set_field(Q, "c", "worker_id", "someone-else")

    # Then w1 is said to hold only a, and from then on the cheap count agrees
    assert await listed(backend, "w1") == as_held([a])
    assert await backend.count_held_jobs(Q, "w1") == 1


# ------------------------------------------------------------------------------------------------
# Reclaim
#
# The jobs of a holder whose lease passed come back with a death each; those of a departed
# holder (one that deregistered while still holding jobs) come back like releases once its
# linger passed. ``ended_only`` takes only leases ended by ``end_leases`` or
# ``deregister_worker`` (start-up). Holders and leases: test_worker_registry.py.
# ------------------------------------------------------------------------------------------------


async def test_reclaim_requeues_at_the_head_and_fences_out_the_old_worker(backend: Backend) -> None:
    # Given w1 holding "a" (b waits behind it) and w1 stops heartbeating
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    old = await register(backend, "w1")
    (a,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs
    await register(backend, "w2", now_ms=T0 + 20_000)

    # When its lease expires and the broker reclaims
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LEASE_MS + 1, max_deaths=3)

    # Then "a" is queued at the head with one death, and w2 gets it first
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w1", dead=False)]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.deaths, job.worker_id) == (JobStatus.QUEUED, 1, None)
    (again,) = (await backend.claim_jobs(Q, "w2", 1, LEASE_MS, T0 + LEASE_MS + 2)).jobs
    assert (again.id, again.deaths, again.attempt) == ("a", 1, 2)

    # And the old worker can no longer record anything, and learns it is lost
    assert await backend.complete_jobs("w1", [done("a", a.fence)], 60_000) == [False]
    assert await backend.heartbeat(old, T0 + LEASE_MS + 3) == [Q]
    assert (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0 + LEASE_MS + 4)).lost
    assert await backend.reclaim_stalled_jobs(Q, T0 + LEASE_MS + 5, max_deaths=3) == []


async def test_reclaim_never_makes_a_poison_job_before_the_backstop(backend: Backend) -> None:
    # Given a job whose first worker died holding it (max_deaths=2: one death makes a suspect)
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1", now_ms=T0)
    assert await claim_ids(backend, "w1", now=T0) == ["a"]
    now = T0 + LEASE_MS + 1
    assert await backend.reclaim_stalled_jobs(Q, now, max_deaths=2) == [
        Reclaimed(job_id="a", queue=Q, worker_id="w1", dead=False)
    ]
    # When a claim without sandboxes comes, it does not get the suspect; one with a
    # sandbox gets it, flagged
    await register(backend, "w2", now_ms=now)
    busy = await backend.claim_jobs(Q, "w2", 10, LEASE_MS, now)
    assert (busy.jobs, busy.suspects) == ([], 1)
    sandboxed = await backend.claim_jobs(Q, "w2", 10, LEASE_MS, now, suspects=1)
    assert [(j.id, j.suspect) for j in sandboxed.jobs] == [("a", True)]
    assert sandboxed.suspects == 0
    # and that worker dies too (killed from outside: nobody saw the job's own process die)
    now += LEASE_MS + 1
    reclaimed = await backend.reclaim_stalled_jobs(Q, now, max_deaths=2)
    # Then it is not poison (2 deaths, the backstop is 6): a suspect again, deaths on record
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w2", dead=False)]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.deaths, job.death_log, job.error) == (
        JobStatus.QUEUED,
        2,
        ("w1", "w2"),
        None,
    )
    assert await backend.list_dead(Q) == []
    await register(backend, "w3", now_ms=now)
    assert (await backend.claim_jobs(Q, "w3", 10, LEASE_MS, now)).suspects == 1


async def test_reclaim_takes_every_job_of_a_big_stalled_worker(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(2500)])
    await register(backend)
    for _ in range(3):
        await backend.claim_jobs(Q, "w1", 1000, LEASE_MS, T0)

    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LEASE_MS + 1, max_deaths=3)

    assert sorted(r.job_id for r in reclaimed) == sorted(f"j{i}" for i in range(2500))
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.in_flight, stats.workers) == (2500, 0, 0)


async def test_reclaim_releases_a_departed_holders_jobs_and_counts_a_dead_ones(
    backend: Backend,
) -> None:
    # Given w1 departed holding "a", and w2 dead (stopped heartbeating) holding "b"
    await hold(backend, lease_of("w1"), ["a"])
    await backend.deregister_worker(lease_of("w1"), T0 + 1)
    await hold(backend, lease_of("w2"), ["b"])

    # When both leases have passed and the broker reclaims
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=3)

    # Then the departed holder's job is released, the dead holder's counts a death
    assert sorted(reclaimed, key=lambda r: r.job_id) == [
        Reclaimed(job_id="a", queue=Q, worker_id="w1", dead=False, released=True),
        Reclaimed(job_id="b", queue=Q, worker_id="w2", dead=False, released=False),
    ]
    a, b = await record(backend, "a"), await record(backend, "b")
    assert (a.status, a.deaths, a.death_log) == (JobStatus.QUEUED, 0, ())
    assert (b.status, b.deaths, b.death_log) == (JobStatus.QUEUED, 1, ("w2",))


async def test_a_departed_holders_suspect_stays_a_suspect(backend: Backend) -> None:
    # Given a suspect (one death, max_deaths=1) in w1's sandbox
    await hold(backend, lease_of("w0"), ["a"])
    await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=1)
    now = T0 + LATER
    await register(backend, "w1", now)
    (held,) = await claim(backend, "w1", now, suspects=1)
    assert held.suspect

    # When w1 departs with it and the linger passes
    await backend.deregister_worker(lease_of("w1"), now)
    reclaimed = await backend.reclaim_stalled_jobs(Q, now + 1, max_deaths=1)

    # Then it is given back among the suspects, with no new death
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w1", dead=False, released=True)]
    assert (await record(backend, "a")).deaths == 1
    await register(backend, "w2", now + 1)
    ordinary = await backend.claim_jobs(Q, "w2", 10, LEASE_MS, now + 1)
    assert (ordinary.jobs, ordinary.suspects) == ([], 1)
    (again,) = await claim(backend, "w2", now + 1, suspects=1)
    assert (again.id, again.suspect, again.deaths) == ("a", True, 1)


async def test_ended_only_takes_ended_leases_but_not_expired_ones(backend: Backend) -> None:
    # Given w1 whose lease merely expired, and w2~old whose lease w2~new ended
    await hold(backend, lease_of("w1"), ["expired"])
    await hold(backend, lease_of("w2", holder="w2~old"), ["ended"])
    new = lease_of("w2", holder="w2~new")
    await backend.register_worker(new, T0 + 1)
    assert await backend.end_leases(new) == 1

    # When a worker that has not yet been in touch for a whole lease reclaims (start-up)
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=3, ended_only=True)

    # Then it takes only the ended lease: the expired one may be an outage's doing
    assert reclaimed == [Reclaimed(job_id="ended", queue=Q, worker_id="w2~old", dead=False)]
    job = await record(backend, "expired")
    assert (job.status, job.worker_id) == (JobStatus.RUNNING, "w1")

    # And a full reclaim takes the expired one too
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=3)
    assert reclaimed == [Reclaimed(job_id="expired", queue=Q, worker_id="w1", dead=False)]


async def test_ended_only_takes_a_departed_holder_once_its_linger_passed(
    backend: Backend,
) -> None:
    """base.py: `ended_only` takes leases ended by end_leases *or deregister_worker*: a
    holder that said goodbye is known to be gone once its linger passed, whatever an outage
    did to the others' heartbeats."""
    # Given w1 departed with 1 s to linger, w2 departed with 10 min to linger
    await hold(backend, lease_of("w1"), ["short"])
    await backend.deregister_worker(lease_of("w1"), T0, linger_ms=1_000)
    await hold(backend, lease_of("w2"), ["long"])
    await backend.deregister_worker(lease_of("w2"), T0, linger_ms=600_000)

    # When a starting worker reclaims ended leases only, after the short linger
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + 1_001, max_deaths=3, ended_only=True)

    # Then it releases the job whose holder's linger passed, and only that one
    assert reclaimed == [
        Reclaimed(job_id="short", queue=Q, worker_id="w1", dead=False, released=True)
    ]
    assert (await record(backend, "long")).status == JobStatus.RUNNING


# ------------------------------------------------------------------------------------------------
# Suspects and sandboxes
#
# A job held by a worker that died is a *suspect* once one more death could make it poison
# (``deaths >= max_deaths - 1``). Suspects wait apart from the ready jobs and are handed out
# only to a claim that asks for them (``claim_jobs(suspects=n)``: the worker has a free
# sandbox, a child process of its own), alongside ordinary jobs.
#
# Who is blamed for a death:
#
# - a worker killed from outside (or a lost node, a deploy) only costs each job it held an
#   unattributed death, counted by reclaim; reclaim never makes a poison job, except at the
#   backstop (``backstop_deaths(max_deaths)`` deaths, for a job that cannot be sandboxed);
# - a sandbox (or process-pool child) that dies while the worker lives is the job's own
#   doing: the worker records it, ``Release(died=True, suspect=True)`` while the budget lasts,
#   ``Failure(died=True)`` once ``deaths`` reach ``max_deaths``: a poison job.
#
# So a job that shared a worker with a poison job is never blamed for its crashes.
# ------------------------------------------------------------------------------------------------


#: What a worker writes when a job's own process died for the last time it may.
POISON_ERROR = "poison job: its own process died 3 times (last: killed by signal 9)"


async def test_jobs_sharing_a_worker_that_died_twice_become_suspects(backend: Backend) -> None:
    # Given two jobs held together by a worker that died (max_deaths=3)
    await backend.enqueue_jobs([new_job("innocent"), new_job("poison")])
    claimed, reclaimed = await run_and_die(backend, "w1", T0, MAX_DEATHS)
    assert claimed == ["innocent", "poison"]
    assert sorted(r.job_id for r in reclaimed) == ["innocent", "poison"]
    assert not any(r.dead or r.released for r in reclaimed)

    # Then after one death they are ordinary ready jobs again (two deaths to go)
    for job_id in ("innocent", "poison"):
        job = await record(backend, job_id)
        assert (job.status, job.deaths, job.death_log) == (JobStatus.QUEUED, 1, ("w1",))

    # When they die together once more
    claimed, reclaimed = await run_and_die(backend, "w2", T0 + LATER, MAX_DEATHS)

    # Then neither is dead, both are suspects: queued, but out of reach of a normal claim
    assert claimed == ["innocent", "poison"]
    assert sorted((r.job_id, r.worker_id, r.dead) for r in reclaimed) == [
        ("innocent", "w2", False),
        ("poison", "w2", False),
    ]
    for job_id in ("innocent", "poison"):
        job = await record(backend, job_id)
        assert (job.status, job.deaths, job.worker_id) == (JobStatus.QUEUED, 2, None)
        assert job.death_log == ("w1", "w2")
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.in_flight, stats.dead) == (2, 0, 0)  # ready counts suspects


async def test_a_claim_without_sandboxes_never_takes_a_suspect_but_reports_them(
    backend: Backend,
) -> None:
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("fresh")])
    await register(backend, "w3", now)

    busy = await claim_batch(backend, "w3", now)

    assert (flagged(busy), busy.suspects) == ([("fresh", False)], 2)
    again = await claim_batch(backend, "w3", now)
    assert (ids(again), again.suspects) == ([], 2)
    for job_id in ("innocent", "poison"):
        assert (await record(backend, job_id)).status == JobStatus.QUEUED


async def test_a_claim_with_a_free_sandbox_takes_a_suspect_alongside_ordinary_jobs(
    backend: Backend,
) -> None:
    # Given two suspects and two ordinary jobs
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("fresh1"), new_job("fresh2")])
    await register(backend, "w3", now)
    await register(backend, "w4", now)

    # When a worker with one free sandbox claims
    first = await claim_batch(backend, "w3", now + 1, suspects=1)

    # Then it gets the oldest suspect first, flagged for its sandbox, then ordinary jobs
    assert flagged(first) == [("innocent", True), ("fresh1", False), ("fresh2", False)]
    assert first.suspects == 1
    suspect = first.jobs[0]
    assert (suspect.attempt, suspect.deaths) == (3, 2)
    job = await record(backend, "innocent")
    assert (job.status, job.worker_id, job.started_at_ms) == (JobStatus.RUNNING, "w3", now + 1)
    assert await backend.count_held_jobs(Q, "w3") == 3

    # And the next sandbox gets the next suspect; with none left, a claim is an ordinary one
    second = await claim_batch(backend, "w4", now + 1, suspects=1)
    assert (flagged(second), second.suspects) == ([("poison", True)], 0)
    await backend.enqueue_jobs([new_job("fresh3")])
    third = await claim_batch(backend, "w4", now + 1, suspects=1)
    assert (flagged(third), third.suspects) == ([("fresh3", False)], 0)


async def test_a_claim_takes_no_more_suspects_than_asked_nor_than_its_count(
    backend: Backend,
) -> None:
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("fresh")])
    await register(backend, "w3", now)

    one = await claim_batch(backend, "w3", now, suspects=2, count=1)
    assert (flagged(one), one.suspects) == ([("innocent", True)], 1)

    rest = await claim_batch(backend, "w3", now, suspects=2, count=5)
    assert (flagged(rest), rest.suspects) == ([("poison", True), ("fresh", False)], 0)


async def test_a_sandbox_crash_with_budget_left_sends_the_job_back_among_the_suspects(
    backend: Backend,
) -> None:
    # Given a job and a bystander held by w1, and the job's own process dies (1 death of 3)
    await backend.enqueue_jobs([new_job("crasher"), new_job("bystander")])
    await register(backend, "w1", T0)
    crasher, bystander = (await claim_batch(backend, "w1", T0)).jobs

    # When the worker, which lived to see it, records the death and asks for a sandbox
    assert await backend.release_jobs("w1", [release(crasher, died=True, suspect=True)]) == [True]

    # Then the job is a suspect with the death on record; the attempt it made counts
    job = await record(backend, "crasher")
    assert (job.status, job.deaths, job.failures, job.worker_id) == (JobStatus.QUEUED, 1, 0, None)
    assert job.death_log == ("w1",)
    busy = await claim_batch(backend, "w1", T0 + 1)
    assert (ids(busy), busy.suspects) == ([], 1)
    sandboxed = await claim_batch(backend, "w1", T0 + 1, suspects=1)
    assert flagged(sandboxed) == [("crasher", True)]
    assert (sandboxed.jobs[0].attempt, sandboxed.jobs[0].deaths) == (2, 1)

    # And the bystander still runs, untouched, and completes
    assert await backend.complete_jobs("w1", [completion(bystander)], 60_000) == [True]
    job = await record(backend, "bystander")
    assert (job.status, job.deaths, job.death_log) == (JobStatus.SUCCEEDED, 0, ())


async def test_only_the_poison_job_dies_the_innocent_one_succeeds(backend: Backend) -> None:
    # Given two suspects that shared two workers killed from outside (2 deaths of 3 each)
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("bystander1"), new_job("bystander2")])

    # When the innocent one runs in a sandbox beside a bystander, and both complete
    await register(backend, "w3", now)
    first = await claim_batch(backend, "w3", now, suspects=1, count=2)
    assert flagged(first) == [("innocent", True), ("bystander1", False)]
    done = [completion(j, at_ms=now + 1) for j in first.jobs]
    assert await backend.complete_jobs("w3", done, 60_000) == [
        True,
        True,
    ]

    # and the poison one runs in a sandbox beside the other bystander, and its own process
    # dies: the worker sees its third death and records a poison job
    await register(backend, "w4", now + 10)
    second = await claim_batch(backend, "w4", now + 10, suspects=1, count=2)
    assert flagged(second) == [("poison", True), ("bystander2", False)]
    poison, bystander = second.jobs
    dead = failure(poison, None, error=POISON_ERROR, died=True, at_ms=now + 11)
    assert await backend.fail_jobs("w4", [dead], 60_000) == [True]
    assert await backend.complete_jobs("w4", [completion(bystander, at_ms=now + 12)], 60_000) == [
        True
    ]

    # Then the poison job is dead, with the three workers it died under as evidence
    job = await backend.wait_for_job("poison", Q, timeout_s=5)
    assert job is not None
    assert (job.status, job.deaths, job.failures, job.error) == (
        JobStatus.DEAD,
        3,
        0,
        POISON_ERROR,
    )
    assert job.death_log == ("w1", "w2", "w4")
    assert job.finished_at_ms == now + 11
    assert [j.id for j in await backend.list_dead(Q)] == ["poison"]

    # And the innocent one succeeded, its deaths on record but never blamed; the
    # bystanders were never touched
    job = await record(backend, "innocent")
    assert (job.status, job.result, job.deaths) == (JobStatus.SUCCEEDED, b"ok", 2)
    assert job.death_log == ("w1", "w2")
    for job_id in ("bystander1", "bystander2"):
        job = await record(backend, job_id)
        assert (job.status, job.deaths, job.death_log) == (JobStatus.SUCCEEDED, 0, ())


async def test_an_external_kill_of_a_worker_running_a_suspect_costs_only_an_unattributed_death(
    backend: Backend,
) -> None:
    # Given a suspect (2 deaths of 3) in w3's sandbox, and a bystander beside it
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("bystander")])
    await register(backend, "w3", now)
    held = await claim_batch(backend, "w3", now, suspects=1, count=2)
    assert flagged(held) == [("innocent", True), ("bystander", False)]

    # When w3 is killed from outside, sandbox and all, and its lease passes
    now += LATER
    reclaimed = await backend.reclaim_stalled_jobs(Q, now, max_deaths=MAX_DEATHS)

    # Then nobody is blamed: the suspect reached max_deaths but is not poison, only a
    # suspect again; the bystander is an ordinary ready job with its first death
    assert sorted((r.job_id, r.worker_id, r.dead) for r in reclaimed) == [
        ("bystander", "w3", False),
        ("innocent", "w3", False),
    ]
    suspect = await record(backend, "innocent")
    assert (suspect.status, suspect.deaths, suspect.death_log) == (
        JobStatus.QUEUED,
        3,
        ("w1", "w2", "w3"),
    )
    assert (await record(backend, "bystander")).deaths == 1
    assert await backend.list_dead(Q) == []
    await register(backend, "w4", now)
    ordinary = await claim_batch(backend, "w4", now)
    assert (flagged(ordinary), ordinary.suspects) == ([("bystander", False)], 2)

    # And the suspect can still run in a sandbox and succeed
    again = await claim_batch(backend, "w4", now, suspects=1, count=1)
    assert flagged(again) == [("innocent", True)]
    assert await backend.complete_jobs(
        "w4", [completion(again.jobs[0], at_ms=now + 1)], 60_000
    ) == [True]
    assert (await record(backend, "innocent")).status == JobStatus.SUCCEEDED


async def test_bystanders_are_never_blamed_for_a_poison_job(backend: Backend) -> None:
    # Given a job whose own process dies at every attempt, first run beside bystander0
    await backend.enqueue_jobs([new_job("poison"), new_job("bystander0")])
    await register(backend, "w0", T0)
    poison, bystander = (await claim_batch(backend, "w0", T0)).jobs
    bystanders = ["bystander0"]

    # When it runs again and again in a sandbox, each time beside a new bystander, and the
    # worker records each death (a suspect while the budget lasts, then poison)
    for n in range(1, MAX_DEATHS + 1):
        worker = f"w{n - 1}"
        if poison.deaths + 1 < MAX_DEATHS:
            outcome = await backend.release_jobs(worker, [release(poison, died=True, suspect=True)])
        else:
            outcome = await backend.fail_jobs(
                worker, [failure(poison, None, error=POISON_ERROR, died=True)], 60_000
            )
        assert outcome == [True]
        assert await backend.complete_jobs(worker, [completion(bystander)], 60_000) == [True]
        if n == MAX_DEATHS:
            break
        bystanders.append(f"bystander{n}")
        await backend.enqueue_jobs([new_job(bystanders[-1])])
        await register(backend, f"w{n}", T0 + n)
        batch = await claim_batch(backend, f"w{n}", T0 + n, suspects=1)
        assert flagged(batch) == [("poison", True), (bystanders[-1], False)]
        poison, bystander = batch.jobs
        assert poison.deaths == n

    # Then the poison job is dead after max_deaths deaths of its own
    job = await record(backend, "poison")
    assert (job.status, job.deaths, job.death_log) == (JobStatus.DEAD, 3, ("w0", "w1", "w2"))
    # And every bystander succeeded, with no death on record
    for job_id in bystanders:
        job = await record(backend, job_id)
        assert (job.status, job.deaths, job.death_log) == (JobStatus.SUCCEEDED, 0, ())
    assert [j.id for j in await backend.list_dead(Q)] == ["poison"]


async def test_the_backstop_dead_letters_a_job_whose_workers_keep_dying(backend: Backend) -> None:
    # Given a job whose every worker is killed while it runs (say its task cannot run in a
    # sandbox, so no worker ever sees its own process die), max_deaths=2
    max_deaths = 2
    backstop = backstop_deaths(max_deaths)
    await backend.enqueue_jobs([new_job("a")])
    workers = [f"w{n}" for n in range(1, backstop + 1)]

    # When its workers die, one after the other: below the backstop it is queued again
    for n, worker in enumerate(workers[:-1]):
        claimed, reclaimed = await run_and_die(
            backend, worker, T0 + n * LATER, max_deaths, suspects=1
        )
        assert claimed == ["a"]
        assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id=worker, dead=False)]
        assert (await record(backend, "a")).status == JobStatus.QUEUED

    # Then the death that reaches the backstop sends it to the dead letters, with the
    # workers it died under as evidence
    claimed, reclaimed = await run_and_die(
        backend, workers[-1], T0 + (backstop - 1) * LATER, max_deaths, suspects=1
    )
    assert claimed == ["a"]
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id=workers[-1], dead=True)]
    job = await backend.wait_for_job("a", Q, timeout_s=5)
    assert job is not None
    assert (job.status, job.deaths, job.death_log) == (JobStatus.DEAD, backstop, tuple(workers))
    assert job.error == (
        f"poison job: its worker died {backstop} times while running it "
        f"(workers: {' '.join(workers)})"
    )
    assert [j.id for j in await backend.list_dead(Q)] == ["a"]


async def test_suspects_go_to_sandboxes_by_priority_then_age(backend: Backend) -> None:
    await backend.enqueue_jobs(
        [new_job("low"), new_job("high", priority=5), new_job("low2"), new_job("mid", priority=1)]
    )
    claimed, _ = await run_and_die(backend, "w1", T0, max_deaths=2)
    assert claimed == ["high", "mid", "low", "low2"]

    now = T0 + LATER
    await register(backend, "w2", now)
    order = []
    for _ in range(4):
        batch = await claim_batch(backend, "w2", now, suspects=1)
        assert [job.suspect for job in batch.jobs] == [True]
        order += ids(batch)
    assert order == ["high", "mid", "low", "low2"]


async def test_suspects_are_counted_per_queue(backend: Backend) -> None:
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("elsewhere", queue="other")])
    await register(backend, "w3", now, queue="other")

    batch = await backend.claim_jobs("other", "w3", 10, LEASE_MS, now, suspects=1)

    assert (flagged(batch), batch.suspects) == ([("elsewhere", False)], 0)


async def test_a_released_suspect_stays_a_suspect(backend: Backend) -> None:
    # Given a suspect claimed into a sandbox
    now = await make_suspects(backend)
    await register(backend, "w3", now)
    (held,) = (await claim_batch(backend, "w3", now, suspects=1, count=1)).jobs
    assert held.id == "innocent"

    # When its worker gives it back before starting it (shutdown)
    assert await backend.release_jobs("w3", [release(held, unstarted=True)]) == [True]

    # Then it waits among the suspects again, at its old place
    assert (await record(backend, "innocent")).status == JobStatus.QUEUED
    busy = await claim_batch(backend, "w3", now)
    assert (ids(busy), busy.suspects) == ([], 2)
    again = await claim_batch(backend, "w3", now, suspects=1)
    assert (flagged(again), again.suspects) == ([("innocent", True)], 1)
    assert again.jobs[0].attempt == held.attempt  # the unstarted attempt did not count


async def test_a_suspect_retried_after_a_failure_comes_back_as_a_suspect(
    backend: Backend,
) -> None:
    # Given a suspect that ran in a sandbox and raised, with a retry in 10 s
    now = await make_suspects(backend)
    await register(backend, "w3", now)
    (held,) = (await claim_batch(backend, "w3", now, suspects=1, count=1)).jobs
    assert await backend.fail_jobs("w3", [failure(held, now + 10_000)], 60_000) == [True]
    assert (await record(backend, held.id)).status == JobStatus.FAILED

    # When its retry time comes, it is not among the ready jobs but among the suspects
    busy = await claim_batch(backend, "w3", now + 10_000)
    assert (ids(busy), busy.suspects) == ([], 2)
    assert (await record(backend, held.id)).status == JobStatus.QUEUED

    # Then sandboxes get the suspects one at a time, in order (it went to the tail)
    first = await claim_batch(backend, "w3", now + 10_000, suspects=1)
    assert (flagged(first), first.suspects) == ([("poison", True)], 1)
    await register(backend, "w4", now + 10_000)
    second = await claim_batch(backend, "w4", now + 10_000, suspects=1)
    assert (flagged(second), second.suspects) == ([(held.id, True)], 0)
    assert second.jobs[0].failures == 1


async def test_a_new_suspect_wakes_an_idle_worker_but_does_not_keep_it_awake(
    backend: Backend,
) -> None:
    # Given a job held by a worker, and an idle worker's wake-ups drained
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1", T0)
    await claim_batch(backend, "w1", T0)
    while await backend.wait_for_jobs(Q, timeout_s=0):
        pass
    waiter = asyncio.create_task(backend.wait_for_jobs(Q, timeout_s=5))
    await asyncio.sleep(0.1)
    assert not waiter.done()

    # When its worker dies and the job becomes a suspect, the idle worker wakes
    await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=1)
    assert await asyncio.wait_for(waiter, 5) is True

    # Then once woken, a suspect that merely waits does not wake it again and again
    while await backend.wait_for_jobs(Q, timeout_s=0):
        pass
    assert await backend.wait_for_jobs(Q, timeout_s=0.2) is False


# ------------------------------------------------------------------------------------------------
# Waiting for work
#
# ``wait_for_jobs`` blocks an idle worker until its queue may have work (a wake signal)
# or the timeout, without sleep-polling.
# ------------------------------------------------------------------------------------------------


async def test_wait_for_jobs_wakes_promptly_on_enqueue(backend: Backend) -> None:
    # Given an idle worker blocked on an empty queue
    waiter = asyncio.create_task(backend.wait_for_jobs("idle", timeout_s=5))
    await asyncio.sleep(0.1)
    assert not waiter.done()

    # When a producer enqueues
    started = time.perf_counter()
    await backend.enqueue_jobs([new_job("a", queue="idle")])

    # Then the worker wakes at once
    assert await asyncio.wait_for(waiter, 5) is True
    assert time.perf_counter() - started < 0.5


async def test_a_cancelled_wait_for_jobs_does_not_swallow_the_next_wake(backend: Backend) -> None:
    # Given a worker that gave up waiting (shutdown) mid-wait
    gone = asyncio.create_task(backend.wait_for_jobs("idle", timeout_s=5))
    await asyncio.sleep(0.1)
    gone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone

    # When a job arrives, then the next waiter is still woken by it
    await backend.enqueue_jobs([new_job("a", queue="idle")])
    assert await backend.wait_for_jobs("idle", timeout_s=2) is True


async def test_an_earlier_delayed_job_or_retry_wakes_an_idle_worker(backend: Backend) -> None:
    # Given an idle worker blocked on an empty queue (it would sleep until its next claim)
    await backend.register_worker(lease_of("w1", "idle"), T0)
    waiter = asyncio.create_task(backend.wait_for_jobs("idle", timeout_s=5))
    await asyncio.sleep(0.1)

    # When a job due in 5 s arrives, the worker wakes and its claim tells it when
    delayed = NewJob(
        id="d", task="t", queue="idle", payload=b"", enqueued_at_ms=T0, run_at_ms=T0 + 5000
    )
    await backend.enqueue_jobs([delayed, new_job("now", queue="idle")])
    assert await asyncio.wait_for(waiter, 2) is True
    batch = await backend.claim_jobs("idle", "w1", 10, LEASE_MS, T0)
    assert batch.next_due_ms == T0 + 5000

    # And when a failure asks for a retry sooner than that, an idle worker wakes again
    while await backend.wait_for_jobs("idle", timeout_s=0):
        pass  # drop leftover wake-ups
    waiter = asyncio.create_task(backend.wait_for_jobs("idle", timeout_s=5))
    await asyncio.sleep(0.1)
    (job,) = batch.jobs
    retry = Failure(
        job_id=job.id,
        queue="idle",
        fence=job.fence,
        error="E: x",
        traceback=None,
        retry_at_ms=T0 + 1000,
        finished_at_ms=T0,
    )
    assert await backend.fail_jobs("w1", [retry], 60_000) == [True]
    assert await asyncio.wait_for(waiter, 2) is True
    assert (await backend.claim_jobs("idle", "w1", 10, LEASE_MS, T0)).next_due_ms == T0 + 1000


async def test_cancelling_a_waiting_worker_always_stops_it(backend: Backend) -> None:
    # A cancel may land at any point of a call, including while a fresh connection is set
    # up; it must always end the caller's loop (never be swallowed).
    async def idle_forever(broker: Backend) -> None:
        while True:
            await broker.wait_for_jobs("idle", timeout_s=1)

    for yields in range(12):
        fresh = backend.clone()
        task = asyncio.create_task(idle_forever(fresh))
        try:
            for _ in range(yields):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=3)
            assert task in done, f"a cancel after {yields} yields was lost"
            assert task.cancelled()
        finally:
            task.cancel()
            await fresh.close()


async def test_wait_for_jobs_times_out_without_work(backend: Backend) -> None:
    started = time.perf_counter()

    assert await backend.wait_for_jobs("empty", timeout_s=0.2) is False
    assert time.perf_counter() - started < 2


# ------------------------------------------------------------------------------------------------
# Damaged records
#
# Another program may write anything into the store (see the `damage` fixture). A job record
# a call cannot read goes to the dead letters with an error starting ``damaged job record:``
# that names the field and its value, and the rest of the call goes on: the jobs claimed,
# promoted, reclaimed or listed with it are untouched. Outcomes on a damaged record are
# refused (False) without an error. Damaged records still read, and damaged dead letters
# are listed, retried (their unreadable numbers reset) and purged.
#
# A record is damaged when any of its fields cannot be read (base.py: a field that is not a
# number, a key of another type, a payload that is not bytes), whichever fields the call at
# hand needs: every call that meets it treats it the same way, so a damaged job can never
# be left running, refused by every outcome, with no call to dead-letter it.
# ------------------------------------------------------------------------------------------------


async def test_claim_dead_letters_damaged_records_and_hands_out_the_rest(
    backend: Backend, damage: Damage
) -> None:
    # Given six ready jobs, four of them damaged by another program
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(6)])
    await damage.set_field(Q, "j1", "attempt", "seven")
    await damage.set_field(Q, "j2", "fence", "fence?")
    await damage.set_field(Q, "j3", "priority", "high")
    await damage.wrong_type(Q, "j4")
    await register(backend, "w1")

    # When a worker claims two jobs
    jobs = await claim(backend, "w1", count=2)

    # Then it gets the two healthy ones, each held; the damaged ones went to the dead
    # letters (a damaged record takes no slot of the claim)
    assert [j.id for j in jobs] == ["j0", "j5"]
    assert await backend.count_held_jobs(Q, "w1") == 2
    assert await dead_ids(backend) == {"j1", "j2", "j3", "j4"}
    assert_damaged(await record(backend, "j1"), "attempt", "seven")
    assert_damaged(await record(backend, "j2"), "fence", "fence?")
    assert_damaged(await record(backend, "j3"), "priority", "high")
    assert_damaged(await record(backend, "j4"))
    for job_id in ("j1", "j2", "j3", "j4"):
        assert (await record(backend, job_id)).status == JobStatus.DEAD
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 2, 4)

    # And the healthy ones run as usual
    assert await backend.complete_jobs("w1", [completion(j) for j in jobs], 60_000) == [
        True,
        True,
    ]


async def test_a_record_without_a_task_name_is_handed_out_with_an_empty_one(
    backend: Backend, damage: Damage
) -> None:
    """The worker dead-letters it with an unknown-task error (worker tests)."""
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await damage.set_field(Q, "a", "task", "")
    await register(backend, "w1")

    jobs = await claim(backend, "w1")

    assert [(j.id, j.task) for j in jobs] == [("a", ""), ("b", "tasks.add")]


async def test_promotion_dead_letters_damaged_delayed_records_and_promotes_the_rest(
    backend: Backend, damage: Damage
) -> None:
    """A delayed record whose run time cannot be read (SQLite: a TEXT run_at_ms) is damaged:
    it goes to the dead letters at the next promotion rather than wait for ever."""
    # Given four jobs due at +1 s, two of them damaged, and one due at +9 s
    await backend.enqueue_jobs(
        [new_job(f"d{i}", delay_ms=1_000) for i in range(4)] + [new_job("d4", delay_ms=9_000)]
    )
    await damage.set_field(Q, "d1", "priority", "high")
    await damage.wrong_type(Q, "d2")

    # When they are due and promoted
    assert await backend.promote_due_jobs(Q, T0 + 1_000) == T0 + 9_000

    # Then the healthy ones are ready, the damaged ones dead
    assert (await record(backend, "d0")).status == JobStatus.QUEUED
    assert (await record(backend, "d3")).status == JobStatus.QUEUED
    assert await dead_ids(backend) == {"d1", "d2"}
    assert_damaged(await record(backend, "d1"), "priority", "high")
    assert_damaged(await record(backend, "d2"))
    await register(backend, "w1", T0 + 1_000)
    assert [j.id for j in await claim(backend, "w1", T0 + 1_000)] == ["d0", "d3"]


async def test_a_claim_promotes_past_a_delayed_record_without_a_priority(
    backend: Backend, damage: Damage
) -> None:
    # Given three delayed jobs, the middle one's record missing its priority
    await backend.enqueue_jobs([new_job(f"d{i}", delay_ms=1_000) for i in range(3)])
    await damage.set_field(Q, "d1", "priority", None)
    await register(backend, "w1")

    # When a worker claims once they are due (the claim promotes them itself)
    jobs = await claim(backend, "w1", T0 + 1_000)

    # Then it gets the other two; the damaged one is dead, saying why
    assert [j.id for j in jobs] == ["d0", "d2"]
    assert await dead_ids(backend) == {"d1"}
    assert_damaged(await record(backend, "d1"), "priority")
    # and the queue is not stuck: later promotions go on
    await backend.enqueue_jobs([new_job("d3", delay_ms=2_000)])
    assert [j.id for j in await claim(backend, "w1", T0 + 2_000)] == ["d3"]


async def test_reclaim_dead_letters_damaged_records_and_takes_back_the_rest(
    backend: Backend, damage: Damage
) -> None:
    # Given w1 holding four jobs, two of them damaged, and w1 dead
    await backend.enqueue_jobs([new_job(f"h{i}") for i in range(4)])
    lease = await register(backend, "w1")
    assert len(await claim(backend, "w1")) == 4
    await damage.set_field(Q, "h1", "deaths", "many")
    await damage.wrong_type(Q, "h2")

    # When the broker reclaims its jobs
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=3)

    # Then the healthy ones come back with a death each, the holder is gone
    healthy = sorted((r.job_id, r.worker_id, r.dead) for r in reclaimed if r.job_id in {"h0", "h3"})
    assert healthy == [("h0", "w1", False), ("h3", "w1", False)]
    for job_id in ("h0", "h3"):
        job = await record(backend, job_id)
        assert (job.status, job.deaths) == (JobStatus.QUEUED, 1)
    assert await backend.heartbeat(lease, T0 + LATER) == [Q]
    assert await backend.count_held_jobs(Q, "w1") == 0

    # And the damaged ones are in the dead letters, never handed out again
    assert await dead_ids(backend) == {"h1", "h2"}
    assert_damaged(await record(backend, "h1"), "deaths", "many")
    assert_damaged(await record(backend, "h2"))
    await register(backend, "w2", T0 + LATER)
    assert [j.id for j in await claim(backend, "w2", T0 + LATER)] == ["h0", "h3"]


async def test_listing_held_jobs_dead_letters_a_damaged_record(
    backend: Backend, damage: Damage
) -> None:
    await backend.enqueue_jobs([new_job(job_id) for job_id in "abcd"])
    await register(backend, "w1")
    a, _, _, d = await claim(backend, "w1")
    await damage.set_field(Q, "b", "fence", "fence?")
    await damage.wrong_type(Q, "c")

    held = sorted(await backend.list_held_jobs(Q, "w1"), key=lambda h: h.job_id)

    assert held == [HeldJob(job_id="a", fence=a.fence), HeldJob(job_id="d", fence=d.fence)]
    assert await backend.count_held_jobs(Q, "w1") == 2
    assert await dead_ids(backend) == {"b", "c"}
    assert_damaged(await record(backend, "b"), "fence", "fence?")
    assert_damaged(await record(backend, "c"))


async def test_outcomes_on_damaged_records_are_refused_and_the_rest_go_through(
    backend: Backend, damage: Damage
) -> None:
    # Given w1 holding seven jobs, four of them damaged where their outcome must write
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(7)])
    await register(backend, "w1")
    jobs = {j.id: j for j in await claim(backend, "w1")}
    await damage.wrong_type(Q, "j0")
    await damage.set_field(Q, "j1", "failures", "lots")
    await damage.set_field(Q, "j2", "deaths", "lots")
    await damage.set_field(Q, "j3", "attempt", "lots")

    # When w1 records an outcome of each, a damaged job beside a healthy one in each batch
    completed = await backend.complete_jobs(
        "w1", [completion(jobs["j0"]), completion(jobs["j4"])], 60_000
    )
    failed = await backend.fail_jobs(
        "w1", [failure(jobs["j1"], T0 + 1_000), failure(jobs["j5"], T0 + 1_000)], 60_000
    )
    released = await backend.release_jobs(
        "w1",
        [
            release(jobs["j2"], died=True),
            release(jobs["j3"], unstarted=True),
            release(jobs["j6"], died=True),
        ],
    )
    progressed = await backend.set_progress("j0", Q, "w1", jobs["j0"].fence, 0.5)

    # Then the damaged ones are refused, without an error, and the healthy ones recorded
    assert (completed, failed, released, progressed) == (
        [False, True],
        [False, True],
        [False, False, True],
        False,
    )
    assert (await record(backend, "j4")).status == JobStatus.SUCCEEDED
    assert (await record(backend, "j5")).status == JobStatus.FAILED
    j6 = await record(backend, "j6")
    assert (j6.status, j6.deaths) == (JobStatus.QUEUED, 1)
    for job_id in ("j0", "j1", "j2", "j3"):
        assert_damaged(await record(backend, job_id))
