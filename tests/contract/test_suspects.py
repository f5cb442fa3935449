"""Broker contract: suspects and isolated claims.

A job held by a worker that died is a *suspect* once one more death could make it poison.
Suspects wait apart from the ready jobs and go, one at a time, to idle workers that run them
alone (isolated); only a death under such a claim can make a poison job. So an innocent job
that shared a worker with a poison job is never blamed for its crashes.
"""

from __future__ import annotations

import asyncio

from corq.backends import Backend
from corq.backends.base import (
    ClaimBatch,
    Completion,
    Failure,
    Reclaimed,
    Release,
    WorkerLease,
)
from corq.job import Job, JobStatus
from tests.contract.jobs import LEASE_MS, T0, Q, new_job

#: Time enough for any lease taken before it to pass.
LATER = LEASE_MS + 1


async def register(backend: Backend, worker: str, now_ms: int, queue: str = Q) -> None:
    await backend.register_worker(
        WorkerLease(worker_id=worker, queues=[queue], lease_ms=LEASE_MS), now_ms
    )


async def claim(
    backend: Backend, worker: str, now_ms: int, *, idle: bool = False, count: int = 10
) -> ClaimBatch:
    return await backend.claim_jobs(Q, worker, count, LEASE_MS, now_ms, idle=idle)


def ids(batch: ClaimBatch) -> list[str]:
    return [job.id for job in batch.jobs]


async def record(backend: Backend, job_id: str) -> Job:
    job = await backend.get_job(job_id, Q)
    assert job is not None
    return job


async def run_and_die(
    backend: Backend, worker: str, now_ms: int, max_deaths: int, *, idle: bool = False
) -> tuple[list[str], list[Reclaimed]]:
    """A fresh worker claims at `now_ms`, then dies: reclaim once its lease has passed.

    Returns the ids it claimed and what the reclaim reported.
    """
    await register(backend, worker, now_ms)
    claimed = ids(await claim(backend, worker, now_ms, idle=idle))
    reclaimed = await backend.reclaim_stalled_jobs(Q, now_ms + LATER, max_deaths=max_deaths)
    return claimed, reclaimed


async def make_suspects(backend: Backend) -> int:
    """ "innocent" and "poison" both held by w1, then by w2, both of which die (max_deaths=3):
    two deaths each make both suspects. Returns the time after the second reclaim."""
    await backend.enqueue_jobs([new_job("innocent"), new_job("poison")])
    for n, worker in enumerate(("w1", "w2")):
        claimed, _ = await run_and_die(backend, worker, T0 + n * LATER, max_deaths=3)
        assert claimed == ["innocent", "poison"]
    return T0 + 2 * LATER


async def test_jobs_sharing_a_worker_that_died_twice_become_suspects(backend: Backend) -> None:
    # Given two jobs held together by a worker that died (max_deaths=3)
    await backend.enqueue_jobs([new_job("innocent"), new_job("poison")])
    claimed, reclaimed = await run_and_die(backend, "w1", T0, max_deaths=3)
    assert claimed == ["innocent", "poison"]
    assert sorted(r.job_id for r in reclaimed) == ["innocent", "poison"]
    assert not any(r.dead for r in reclaimed)

    # Then after one death they are ordinary ready jobs again (two deaths to go)
    for job_id in ("innocent", "poison"):
        job = await record(backend, job_id)
        assert (job.status, job.deaths, job.death_log) == (JobStatus.QUEUED, 1, ("w1",))

    # When they die together once more
    claimed, reclaimed = await run_and_die(backend, "w2", T0 + LATER, max_deaths=3)

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


async def test_a_normal_claim_never_takes_a_suspect_but_reports_them(backend: Backend) -> None:
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("fresh")])
    await register(backend, "w3", now)

    busy = await claim(backend, "w3", now)

    assert (ids(busy), busy.suspects, busy.isolated) == (["fresh"], 2, False)
    again = await claim(backend, "w3", now)
    assert (ids(again), again.suspects, again.isolated) == ([], 2, False)
    for job_id in ("innocent", "poison"):
        assert (await record(backend, job_id)).status == JobStatus.QUEUED


async def test_an_idle_claim_takes_exactly_one_suspect_alone(backend: Backend) -> None:
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("fresh")])
    await register(backend, "w3", now)
    await register(backend, "w4", now)

    # When idle workers claim, each gets one suspect, oldest first, as an isolated claim
    first = await claim(backend, "w3", now + 1, idle=True)
    assert (ids(first), first.isolated, first.suspects) == (["innocent"], True, 1)
    (held,) = first.jobs
    assert (held.attempt, held.deaths) == (3, 2)
    job = await record(backend, "innocent")
    assert (job.status, job.worker_id, job.started_at_ms) == (JobStatus.RUNNING, "w3", now + 1)

    second = await claim(backend, "w4", now + 1, idle=True)
    assert (ids(second), second.isolated, second.suspects) == (["poison"], True, 0)

    # Then with no suspect left, an idle claim is an ordinary one
    await register(backend, "w5", now)
    third = await claim(backend, "w5", now + 1, idle=True)
    assert (ids(third), third.isolated, third.suspects) == (["fresh"], False, 0)


async def test_only_the_poison_job_dies_the_innocent_one_succeeds(backend: Backend) -> None:
    # Given two suspects that shared two workers that died (max_deaths=3)
    now = await make_suspects(backend)

    # When the innocent one runs alone and completes
    await register(backend, "w3", now)
    alone = await claim(backend, "w3", now, idle=True)
    assert (ids(alone), alone.isolated) == (["innocent"], True)
    (innocent,) = alone.jobs
    completion = Completion(
        job_id="innocent", queue=Q, fence=innocent.fence, result=b"ok", finished_at_ms=now + 5
    )
    assert await backend.complete_jobs("w3", [completion], 60_000) == [True]

    # and the poison one runs alone and kills its worker once more
    claimed, reclaimed = await run_and_die(backend, "w4", now + 10, max_deaths=3, idle=True)

    # Then the poison job is dead, with the three workers it killed as evidence
    assert claimed == ["poison"]
    assert reclaimed == [Reclaimed(job_id="poison", queue=Q, worker_id="w4", dead=True)]
    poison = await backend.wait_for_job("poison", Q, timeout_s=5)
    assert poison is not None
    assert (poison.status, poison.deaths) == (JobStatus.DEAD, 3)
    assert poison.death_log == ("w1", "w2", "w4")
    assert poison.error == (
        "poison job: its worker died 3 times while running it (workers: w1 w2 w4)"
    )
    assert [j.id for j in await backend.list_dead(Q)] == ["poison"]

    # And the innocent one succeeded, its deaths on record but never blamed
    job = await record(backend, "innocent")
    assert (job.status, job.result, job.deaths) == (JobStatus.SUCCEEDED, b"ok", 2)
    assert job.death_log == ("w1", "w2")


async def test_with_max_deaths_1_a_job_dies_only_after_dying_alone(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])

    # Given both held by a worker that dies: each becomes a suspect, not dead
    claimed, reclaimed = await run_and_die(backend, "w1", T0, max_deaths=1)
    assert claimed == ["a", "b"]
    assert not any(r.dead for r in reclaimed)
    assert (await record(backend, "a")).status == JobStatus.QUEUED

    # When "a" runs alone and its worker dies
    claimed, reclaimed = await run_and_die(backend, "w2", T0 + LATER, max_deaths=1, idle=True)

    # Then it is poison, and "b" still waits as a suspect
    assert claimed == ["a"]
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w2", dead=True)]
    job = await record(backend, "a")
    assert (job.status, job.deaths, job.death_log) == (JobStatus.DEAD, 2, ("w1", "w2"))
    assert job.error == "poison job: its worker died 2 times while running it (workers: w1 w2)"
    await register(backend, "w3", T0 + 2 * LATER)
    assert (await claim(backend, "w3", T0 + 2 * LATER)).suspects == 1


async def test_suspects_go_to_idle_workers_by_priority_then_age(backend: Backend) -> None:
    await backend.enqueue_jobs(
        [new_job("low"), new_job("high", priority=5), new_job("low2"), new_job("mid", priority=1)]
    )
    claimed, _ = await run_and_die(backend, "w1", T0, max_deaths=2)
    assert claimed == ["high", "mid", "low", "low2"]

    now = T0 + LATER
    await register(backend, "w2", now)
    order = []
    for _ in range(4):
        batch = await claim(backend, "w2", now, idle=True)
        assert batch.isolated
        order += ids(batch)
    assert order == ["high", "mid", "low", "low2"]


async def test_suspects_are_counted_per_queue(backend: Backend) -> None:
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("elsewhere", queue="other")])
    await register(backend, "w3", now, queue="other")

    batch = await backend.claim_jobs("other", "w3", 10, LEASE_MS, now, idle=True)

    assert (ids(batch), batch.isolated, batch.suspects) == (["elsewhere"], False, 0)


async def test_a_released_suspect_stays_a_suspect(backend: Backend) -> None:
    # Given a suspect claimed alone
    now = await make_suspects(backend)
    await register(backend, "w3", now)
    (held,) = (await claim(backend, "w3", now, idle=True)).jobs
    assert held.id == "innocent"

    # When its worker gives it back before starting it (shutdown)
    release = Release(job_id="innocent", queue=Q, fence=held.fence, unstarted=True)
    assert await backend.release_jobs("w3", [release]) == [True]

    # Then it waits among the suspects again, at its old place
    assert (await record(backend, "innocent")).status == JobStatus.QUEUED
    busy = await claim(backend, "w3", now)
    assert (ids(busy), busy.suspects) == ([], 2)
    again = await claim(backend, "w3", now, idle=True)
    assert (ids(again), again.isolated, again.suspects) == (["innocent"], True, 1)
    assert again.jobs[0].attempt == held.attempt  # the unstarted attempt did not count


async def test_a_suspect_retried_after_a_failure_comes_back_as_a_suspect(
    backend: Backend,
) -> None:
    # Given a suspect that ran alone and raised, with a retry in 10 s
    now = await make_suspects(backend)
    await register(backend, "w3", now)
    (held,) = (await claim(backend, "w3", now, idle=True)).jobs
    failure = Failure(
        job_id=held.id,
        queue=Q,
        fence=held.fence,
        error="ValueError: boom",
        traceback=None,
        retry_at_ms=now + 10_000,
        finished_at_ms=now + 1,
    )
    assert await backend.fail_jobs("w3", [failure], 60_000) == [True]
    assert (await record(backend, held.id)).status == JobStatus.FAILED

    # When its retry time comes, it is not among the ready jobs but among the suspects
    busy = await claim(backend, "w3", now + 10_000)
    assert (ids(busy), busy.suspects) == ([], 2)
    assert (await record(backend, held.id)).status == JobStatus.QUEUED

    # Then an idle worker gets the suspects one at a time, in order (it went to the tail)
    first = await claim(backend, "w3", now + 10_000, idle=True)
    assert (ids(first), first.isolated, first.suspects) == (["poison"], True, 1)
    await register(backend, "w4", now + 10_000)
    second = await claim(backend, "w4", now + 10_000, idle=True)
    assert (ids(second), second.isolated, second.suspects) == ([held.id], True, 0)
    assert second.jobs[0].failures == 1


async def test_a_waiting_suspect_can_be_cancelled(backend: Backend) -> None:
    now = await make_suspects(backend)

    assert await backend.cancel_job("poison", Q, now) is True

    job = await record(backend, "poison")
    assert job.status == JobStatus.CANCELLED
    (stats,) = await backend.queue_stats([Q])
    assert stats.ready == 1
    await register(backend, "w3", now)
    batch = await claim(backend, "w3", now, idle=True)
    assert (ids(batch), batch.suspects) == (["innocent"], 0)
    assert ids(await claim(backend, "w3", now, idle=True)) == []
    assert await backend.cancel_job("innocent", Q, now) is False  # running: not cancellable


async def test_retry_dead_clears_the_suspect_flag(backend: Backend) -> None:
    # Given a poison job in the dead letters (max_deaths=1: one death alone is enough)
    await backend.enqueue_jobs([new_job("a")])
    await run_and_die(backend, "w1", T0, max_deaths=1)
    _, reclaimed = await run_and_die(backend, "w2", T0 + LATER, max_deaths=1, idle=True)
    assert [r.dead for r in reclaimed] == [True]

    # When an operator retries it
    now = T0 + 2 * LATER
    assert await backend.retry_dead(Q, None, now) == 1

    # Then it is an ordinary ready job with a fresh budget: a normal claim takes it
    job = await record(backend, "a")
    assert (job.status, job.deaths, job.death_log) == (JobStatus.QUEUED, 0, ())
    await register(backend, "w3", now)
    batch = await claim(backend, "w3", now)
    assert (ids(batch), batch.isolated, batch.suspects) == (["a"], False, 0)

    # And one more death (max_deaths=3) puts it back among the ready jobs, not the suspects
    reclaimed = await backend.reclaim_stalled_jobs(Q, now + LATER, max_deaths=3)
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w3", dead=False)]
    await register(backend, "w4", now + LATER)
    assert ids(await claim(backend, "w4", now + LATER)) == ["a"]


async def test_an_ordinary_claim_clears_the_isolated_flag(backend: Backend) -> None:
    # Given a suspect (max_deaths=2) whose isolated run died, reclaimed under a larger
    # max_deaths so that it is an ordinary ready job again (2 deaths of 10)
    await backend.enqueue_jobs([new_job("a")])
    await run_and_die(backend, "w1", T0, max_deaths=2)
    claimed, reclaimed = await run_and_die(backend, "w2", T0 + LATER, max_deaths=10, idle=True)
    assert claimed == ["a"]
    assert [r.dead for r in reclaimed] == [False]

    # When an ordinary claim takes it and that worker dies, with max_deaths=3
    claimed, reclaimed = await run_and_die(backend, "w3", T0 + 2 * LATER, max_deaths=3)

    # Then the death under a claim that was not isolated does not make it poison: it is a
    # suspect with 3 deaths
    assert claimed == ["a"]
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w3", dead=False)]
    job = await record(backend, "a")
    assert (job.status, job.deaths, job.death_log) == (JobStatus.QUEUED, 3, ("w1", "w2", "w3"))
    now = T0 + 3 * LATER
    await register(backend, "w4", now)
    assert (await claim(backend, "w4", now)).suspects == 1


async def test_a_new_suspect_wakes_an_idle_worker_but_does_not_keep_it_awake(
    backend: Backend,
) -> None:
    # Given a job held by a worker, and an idle worker's wake-ups drained
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1", T0)
    await claim(backend, "w1", T0)
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
