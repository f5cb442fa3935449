"""Broker contract: holders, incarnations, departed workers and ended leases.

A worker holds jobs under a holder id per queue (``worker_id~incarnation``, opaque to the
broker). A restarted process ends the leases of its dead predecessor (``end_leases``) so
their jobs come back at once; a worker that deregisters while still holding jobs departs:
its jobs come back after the linger, like releases, without a death.
"""

from __future__ import annotations

import asyncio

from corq.backends import Backend
from corq.backends.base import BATCH, ClaimedJob, Reclaimed, WorkerLease
from corq.job import JobStatus
from tests.contract.conftest import Broker
from tests.contract.jobs import (
    LATER,
    LEASE_MS,
    T0,
    Q,
    claim,
    completion,
    lease_of,
    new_job,
    record,
    register,
)


async def hold(
    backend: Backend, lease: WorkerLease, job_ids: list[str], now_ms: int = T0, queue: str = Q
) -> list[ClaimedJob]:
    """Register `lease` and claim exactly `job_ids` (just enqueued) in `queue`."""
    await backend.enqueue_jobs([new_job(job_id, queue=queue) for job_id in job_ids])
    await backend.register_worker(lease, now_ms)
    jobs = await claim(backend, lease.holder(queue), now_ms, count=len(job_ids), queue=queue)
    assert [j.id for j in jobs] == job_ids
    return jobs


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
