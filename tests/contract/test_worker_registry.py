"""Broker contract, WorkerRegistry port: workers' registrations and leases in each queue.

Methods: ``register_worker``, ``deregister_worker``, ``end_leases``, ``heartbeat``.
"""

from __future__ import annotations

import asyncio

from corq.backends import Backend
from corq.backends.base import (
    BATCH,
    Reclaimed,
)
from corq.job import JobStatus
from tests.contract.conftest import Broker
from tests.contract.jobs import (
    LATER,
    LEASE_MS,
    T0,
    Q,
    claim,
    completion,
    hold,
    lease_of,
    new_job,
    record,
    register,
)

# ------------------------------------------------------------------------------------------------
# Leases
# ------------------------------------------------------------------------------------------------


async def test_heartbeat_keeps_the_lease(backend: Backend) -> None:
    # Given w1 holding a job under a 30 s lease, renewed at +20 s
    await backend.enqueue_jobs([new_job("a")])
    lease = await register(backend)
    await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)
    assert await backend.heartbeat(lease, T0 + 20_000) == []

    # When reclaim runs after the first lease would have expired, nothing is taken
    assert await backend.reclaim_stalled_jobs(Q, T0 + 40_000, max_deaths=3) == []

    # Then after the renewed lease expires, the job is taken back
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + 50_001, max_deaths=3)
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w1", dead=False)]


async def test_deregistered_worker_is_lost(backend: Backend) -> None:
    lease = await register(backend)

    await backend.deregister_worker(lease, T0)

    assert (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).lost
    assert await backend.heartbeat(lease, T0) == [Q]


# ------------------------------------------------------------------------------------------------
# Holders, incarnations, departed workers and ended leases
#
# A worker holds jobs under a holder id per queue (``worker_id~incarnation``, opaque to the
# broker). A restarted process ends the leases of its dead predecessor (``end_leases``) so
# their jobs come back at once; a worker that deregisters while still holding jobs departs:
# its jobs come back after the linger, like releases, without a death.
# ------------------------------------------------------------------------------------------------


async def test_a_worker_holds_jobs_under_its_holder_id(backend: Backend) -> None:
    # Given a worker registered under a holder id of this incarnation
    lease = lease_of("w1", holder="w1~a1")
    (held,) = await hold(backend, lease, ["a"])

    # Then the job is held by the holder id, not by the bare worker id
    assert (await record(backend, "a")).worker_id == "w1~a1"
    assert await backend.heartbeat(lease, T0 + 1) == []
    assert (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0 + 1)).lost
    assert await backend.complete_jobs("w1", [completion(held)], 60_000) == [False]
    assert await backend.complete_jobs("w1~a1", [completion(held)], 60_000) == [True]

    # And deregistering removes the holder
    await backend.deregister_worker(lease, T0 + 2)
    assert await backend.heartbeat(lease, T0 + 3) == [Q]


async def test_a_restarted_worker_ends_the_leases_of_its_dead_incarnation(
    backend: Backend,
) -> None:
    # Given incarnation "old" of worker w1 holding a job in each of two queues, then dead
    old = lease_of("w1", "q1", "q2", holder="w1~old")
    await hold(backend, old, ["a"], queue="q1")
    await hold(backend, old, ["b"], queue="q2")

    # When the process restarts under the same worker id, as incarnation "new"
    new = lease_of("w1", "q1", "q2", holder="w1~new")
    await backend.register_worker(new, T0 + 1)
    assert await backend.end_leases(new) == 2

    # Then the next reclaim takes the old incarnation's jobs at once, with a death each,
    # even one that only takes ended leases (start-up)
    for queue, job_id in (("q1", "a"), ("q2", "b")):
        reclaimed = await backend.reclaim_stalled_jobs(queue, T0 + 2, max_deaths=3, ended_only=True)
        assert reclaimed == [Reclaimed(job_id=job_id, queue=queue, worker_id="w1~old", dead=False)]
        job = await record(backend, job_id, queue)
        assert (job.status, job.deaths, job.death_log) == (JobStatus.QUEUED, 1, ("w1~old",))

    # And the new incarnation keeps its lease and gets the jobs; nothing is left to end
    assert await backend.heartbeat(new, T0 + 3) == []
    again = await claim(backend, "w1~new", T0 + 3, queue="q1")
    assert [(j.id, j.attempt, j.deaths) for j in again] == [("a", 2, 1)]
    assert await backend.end_leases(new) == 0


async def test_end_leases_ends_only_other_incarnations_of_the_same_worker_id(
    backend: Backend,
) -> None:
    # Given registrations whose ids look alike: only "job_runner*~old" is an earlier
    # incarnation of worker "job_runner*" (ids are compared as plain text, never as a
    # LIKE or glob pattern)
    holders = {
        "job_runner*~old": "earlier",
        "jobXrunner*~old": "like-lookalike",
        "job_runnerZ~old": "glob-lookalike",
        "job_runner*": "bare-id",
        "job_runner*~new": "current",
    }
    for holder, job_id in holders.items():
        worker = holder.split("~")[0]
        await hold(backend, lease_of(worker, holder=holder), [job_id])
    current = lease_of("job_runner*", holder="job_runner*~new")

    # When the current incarnation ends the others' leases
    assert await backend.end_leases(current) == 1

    # Then only the earlier incarnation's job comes back
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + 1, max_deaths=3, ended_only=True)
    assert reclaimed == [
        Reclaimed(job_id="earlier", queue=Q, worker_id="job_runner*~old", dead=False)
    ]
    for holder, job_id in holders.items():
        if job_id != "earlier":
            job = await record(backend, job_id)
            assert (job.status, job.worker_id) == (JobStatus.RUNNING, holder)


async def test_a_worker_that_departs_holding_jobs_gets_them_back_after_the_linger(
    backend: Backend,
) -> None:
    # Given w1 holding "a" and "b" ("c" waits behind them)
    lease = lease_of("w1")
    a, _ = await hold(backend, lease, ["a", "b"])
    await backend.enqueue_jobs([new_job("c")])

    # When it deregisters while still holding them (a thread outlived the grace period),
    # with 5 s to linger
    await backend.deregister_worker(lease, T0 + 100, linger_ms=5_000)

    # Then while it lingers its jobs stay its own, and it may still finish them
    assert await backend.reclaim_stalled_jobs(Q, T0 + 5_100, max_deaths=3) == []
    assert await backend.complete_jobs("w1", [completion(a)], 60_000) == [True]
    assert (await record(backend, "b")).status == JobStatus.RUNNING

    # And once the linger passed, what it still holds is given back like a release: no death,
    # at the head of the queue, the attempt it made counted
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + 5_101, max_deaths=3)
    assert reclaimed == [Reclaimed(job_id="b", queue=Q, worker_id="w1", dead=False, released=True)]
    job = await record(backend, "b")
    assert (job.status, job.worker_id, job.deaths, job.death_log) == (
        JobStatus.QUEUED,
        None,
        0,
        (),
    )
    assert await backend.count_held_jobs(Q, "w1") == 0
    assert await backend.heartbeat(lease, T0 + 5_102) == [Q]
    await register(backend, "w2", T0 + 5_102)
    again = await claim(backend, "w2", T0 + 5_102)
    assert [(j.id, j.attempt, j.deaths) for j in again] == [("b", 2, 0), ("c", 1, 0)]


async def test_deregister_departs_only_where_jobs_are_still_held(backend: Backend) -> None:
    # Given w1 serving q1 (holding a job) and q2 (holding nothing)
    lease = lease_of("w1", "q1", "q2")
    await hold(backend, lease, ["a"], queue="q1")

    # When it deregisters without lingering
    await backend.deregister_worker(lease, T0 + 1)

    # Then it is gone from q2 at once, and its job in q1 comes back at the next reclaim
    assert (await backend.claim_jobs("q2", "w1", 1, LEASE_MS, T0 + 2)).lost
    (q2,) = await backend.queue_stats(["q2"])
    assert q2.workers == 0
    reclaimed = await backend.reclaim_stalled_jobs("q1", T0 + 2, max_deaths=3)
    assert reclaimed == [
        Reclaimed(job_id="a", queue="q1", worker_id="w1", dead=False, released=True)
    ]
    assert (await record(backend, "a", "q1")).deaths == 0


async def test_heartbeat_of_a_holder_being_reclaimed_reports_it_lost(
    backend: Backend, broker: Broker
) -> None:
    """The reproduced Redis bug: a heartbeat landing between two steps of a big reclaim
    registered the holder again, and the jobs of the later steps stayed held by it (run on
    two workers). Enough jobs for several steps, so that heartbeats land between them."""
    # Given w1 holding jobs for five reclaim steps, and its lease passed
    n = 5 * BATCH
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(n)])
    lease = await register(backend, "w1")
    for _ in range(5):
        assert len(await claim(backend, "w1", count=BATCH)) == BATCH
    stalled = broker.open()  # the stalled worker's own connections, ready to talk
    assert await stalled.heartbeat(lease, T0) == []  # its last heartbeat: still registered
    (before,) = await stalled.queue_stats([Q])
    assert (before.ready, before.in_flight) == (0, n)
    now = T0 + LATER

    # When the reclaim has begun (jobs are coming back), and w1 keeps heartbeating until
    # it is over
    reclaim = asyncio.create_task(backend.reclaim_stalled_jobs(Q, now, max_deaths=3))
    while not reclaim.done():
        (stats,) = await stalled.queue_stats([Q])
        if stats.ready > 0:
            break
        await asyncio.sleep(0)
    heartbeats = [await stalled.heartbeat(lease, now)]
    while not reclaim.done():
        heartbeats.append(await stalled.heartbeat(lease, now))
    reclaimed = await reclaim

    # Then every heartbeat reported the queue lost (none registered the holder again),
    # and every job was taken back: none is left running under w1
    assert heartbeats == [[Q]] * len(heartbeats)
    assert len(reclaimed) == n
    assert {r.job_id for r in reclaimed} == {f"j{i}" for i in range(n)}
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.in_flight, stats.workers) == (n, 0, 0)
    assert await backend.count_held_jobs(Q, "w1") == 0
    assert (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, now)).lost
