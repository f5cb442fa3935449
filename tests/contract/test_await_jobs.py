"""Broker contract, ``Claims.await_jobs`` and ``claim_jobs(idle=True)``: an idle holder is
handed the next job made ready in its queue.

A broker may hand the job over already held (Redis: the step that makes it ready claims it
for the idle holder and ``await_jobs`` returns it) or only wake the holder (SQLite:
``await_jobs`` returns ``[]`` and the holder claims). The tests assert what a worker
observes either way: the job is started by that holder within one more claim at most, and
never by two.

The hand-over happens inside enqueues, which carry no "now": these tests keep the broker's
clock (``now_ms=None``), as a worker on the system clock does, and pass a time only to
move past a lease or a delay.
"""

from __future__ import annotations

from corq.backends import Backend
from corq.backends.base import ClaimBatch, ClaimedJob, TaskRules
from corq.job import JobStatus
from tests.contract.flow import LIMITED, job
from tests.contract.jobs import HOUR_MS, LATER, LEASE_MS, Q, completion, lease_of, record, release
from tests.contract.jobs import wall_ms as now

S = JobStatus
#: Long enough for any hand-over or wake to arrive (a passing test never waits it out).
ARRIVAL_S = 5.0
#: How long a test waits to see that nothing arrives.
QUIET_S = 0.3


async def join(backend: Backend, *holders: str) -> None:
    for holder in holders:
        await backend.register_worker(lease_of(holder), None)


async def idle_claim(backend: Backend, holder: str, now_ms: int | None = None) -> ClaimBatch:
    """A fetcher's claim that finds nothing and lists its holder as idle."""
    batch = await backend.claim_jobs(Q, holder, 10, LEASE_MS, now_ms, idle=True)
    assert not batch.lost
    assert batch.jobs == []
    assert batch.idle is True
    return batch


async def claim_now(backend: Backend, holder: str) -> list[ClaimedJob]:
    batch = await backend.claim_jobs(Q, holder, 10, LEASE_MS, None)
    assert not batch.lost
    return batch.jobs


async def started_by(backend: Backend, holder: str, job_id: str) -> ClaimedJob:
    """What the idle `holder`'s fetcher does next: await the hand-over, claim once when it
    was only woken. The job must then be held by `holder`, running under its fence."""
    handed = await backend.await_jobs(Q, holder, ARRIVAL_S)
    assert handed is not None, f"{holder} was never woken"
    if not handed:
        handed = await claim_now(backend, holder)
    assert [j.id for j in handed] == [job_id]
    started = await record(backend, job_id)
    assert (started.status, started.worker_id, started.attempt) == (S.RUNNING, holder, 1)
    return handed[0]


async def finish(backend: Backend, holder: str, held: ClaimedJob) -> None:
    """Its outcome is accepted under the fence it was handed with."""
    assert await backend.complete_jobs(holder, [completion(held)], 60_000) == [True]


# ------------------------------------------------------------------------------------------------
# Idle claims
# ------------------------------------------------------------------------------------------------


async def test_an_idle_claim_that_finds_nothing_says_so(backend: Backend) -> None:
    await join(backend, "w1")

    batch = await idle_claim(backend, "w1")

    assert batch.next_due_ms is None


async def test_an_idle_claim_that_takes_jobs_is_not_idle(backend: Backend) -> None:
    await join(backend, "w1")
    await backend.enqueue_jobs([job("a")])

    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None, idle=True)

    assert ([j.id for j in batch.jobs], batch.idle) == (["a"], False)


async def test_an_idle_claim_of_a_holder_not_registered_is_lost(backend: Backend) -> None:
    batch = await backend.claim_jobs(Q, "nobody", 10, LEASE_MS, None, idle=True)

    assert (batch.lost, batch.jobs, batch.idle) == (True, [], False)


# ------------------------------------------------------------------------------------------------
# Hand-over
# ------------------------------------------------------------------------------------------------


async def test_a_job_enqueued_for_an_idle_holder_is_started_by_it(backend: Backend) -> None:
    await join(backend, "w1")
    await idle_claim(backend, "w1")

    await backend.enqueue_jobs([job("a")])

    held = await started_by(backend, "w1", "a")
    await finish(backend, "w1", held)
    assert (await record(backend, "a")).status is S.SUCCEEDED


async def test_await_jobs_times_out_with_none(backend: Backend) -> None:
    await join(backend, "w1")
    await idle_claim(backend, "w1")

    assert await backend.await_jobs(Q, "w1", QUIET_S) is None


async def test_one_job_is_started_by_one_idle_holder_only(backend: Backend) -> None:
    await join(backend, "w1", "w2")
    await idle_claim(backend, "w1")
    await idle_claim(backend, "w2")

    await backend.enqueue_jobs([job("a")])

    started: list[tuple[str, str]] = []
    for holder in ("w1", "w2"):
        handed = await backend.await_jobs(Q, holder, QUIET_S)
        if handed == []:
            handed = await claim_now(backend, holder)
        started += [(holder, j.id) for j in handed or []]
    assert len(started) == 1, started
    [(holder, _)] = started
    assert (await record(backend, "a")).worker_id == holder


async def test_a_job_made_ready_by_promotion_is_started_by_the_idle_holder(
    backend: Backend,
) -> None:
    # The holder goes idle just before the job is due (an hour ahead, by the test's clock)
    due = now() + HOUR_MS
    await backend.enqueue_jobs([job("later", at_ms=due - HOUR_MS, delay_ms=HOUR_MS)])
    await backend.register_worker(lease_of("w1"), due - 1)
    assert (await idle_claim(backend, "w1", due - 1)).next_due_ms == due

    await backend.promote_due_jobs(Q, due)

    await started_by(backend, "w1", "later")


async def test_a_released_job_is_started_by_the_idle_holder(backend: Backend) -> None:
    await join(backend, "w1", "w2")
    await backend.enqueue_jobs([job("a")])
    [held] = await claim_now(backend, "w2")
    await idle_claim(backend, "w1")

    assert await backend.release_jobs("w2", [release(held, unstarted=True)]) == [True]

    again = await started_by(backend, "w1", "a")
    await finish(backend, "w1", again)


async def test_await_jobs_returning_unlists_the_holder(backend: Backend) -> None:
    # Given an idle holder that has been handed (or woken for) a job
    await join(backend, "w1", "w2")
    await idle_claim(backend, "w1")
    await backend.enqueue_jobs([job("a")])
    await started_by(backend, "w1", "a")

    # When another job arrives, it is not the busy holder's: anyone may claim it
    await backend.enqueue_jobs([job("b")])
    assert [j.id for j in await claim_now(backend, "w2")] == ["b"]
    assert (await record(backend, "b")).worker_id == "w2"


async def test_the_hand_over_follows_the_rules(backend: Backend) -> None:
    # Given a task limited to one running job, which w2 runs, and w1 idle
    await backend.set_rules(Q, [TaskRules(task=LIMITED, concurrency=1)])
    await join(backend, "w1", "w2")
    await backend.enqueue_jobs([job("a")])
    [held] = await claim_now(backend, "w2")
    await idle_claim(backend, "w1")

    # When another job of the task arrives, the idle holder does not get it
    await backend.enqueue_jobs([job("b")])
    handed = await backend.await_jobs(Q, "w1", QUIET_S)
    assert handed in (None, [])
    assert await claim_now(backend, "w1") == []
    assert (await record(backend, "b")).status is S.QUEUED

    # Then once the running job ends, it starts
    await finish(backend, "w2", held)
    assert [j.id for j in await claim_now(backend, "w1")] == ["b"]


# ------------------------------------------------------------------------------------------------
# Holders that go away
# ------------------------------------------------------------------------------------------------


async def test_a_deregistered_holders_handed_over_jobs_are_queued_again(
    backend: Backend,
) -> None:
    # Given an idle holder, and a job arriving for it that it never took
    lease = lease_of("w1")
    await backend.register_worker(lease, None)
    await idle_claim(backend, "w1")
    await backend.enqueue_jobs([job("a")])

    # When it deregisters
    await backend.deregister_worker(lease, None)

    # Then the job is queued again, its attempt not counted, and another worker starts it
    given_back = await record(backend, "a")
    assert (given_back.status, given_back.attempt) == (S.QUEUED, 0)
    await join(backend, "w2")
    [held] = await claim_now(backend, "w2")
    assert (held.id, held.attempt) == ("a", 1)


async def test_a_dead_idle_holders_jobs_are_taken_back(backend: Backend) -> None:
    # Given an idle holder, a job arriving for it, and the holder killed
    await join(backend, "w1")
    await idle_claim(backend, "w1")
    await backend.enqueue_jobs([job("a")])

    # When its lease has passed and the queue is reclaimed
    later = now() + LATER
    await backend.reclaim_stalled_jobs(Q, later, max_deaths=5)

    # Then the job is queued again, and the next job is not handed to the dead holder
    assert (await record(backend, "a")).status is S.QUEUED
    await backend.enqueue_jobs([job("b")])
    await backend.register_worker(lease_of("w2"), later)
    claimed = await backend.claim_jobs(Q, "w2", 10, LEASE_MS, later)
    assert sorted(j.id for j in claimed.jobs) == ["a", "b"]
