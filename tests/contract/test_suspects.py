"""Broker contract: suspects and sandboxes.

A job held by a worker that died is a *suspect* once one more death could make it poison
(``deaths >= max_deaths - 1``). Suspects wait apart from the ready jobs and are handed out
only to a claim that asks for them (``claim_jobs(suspects=n)``: the worker has a free
sandbox, a child process of its own), alongside ordinary jobs.

Who is blamed for a death:

- a worker killed from outside (or a lost node, a deploy) only costs each job it held an
  unattributed death, counted by reclaim; reclaim never makes a poison job, except at the
  backstop (``backstop_deaths(max_deaths)`` deaths, for a job that cannot be sandboxed);
- a sandbox (or process-pool child) that dies while the worker lives is the job's own
  doing: the worker records it, ``Release(died=True, suspect=True)`` while the budget lasts,
  ``Failure(died=True)`` once ``deaths`` reach ``max_deaths``: a poison job.

So a job that shared a worker with a poison job is never blamed for its crashes.
"""

from __future__ import annotations

import asyncio

from corq.backends import Backend
from corq.backends.base import ClaimBatch, Reclaimed, backstop_deaths
from corq.job import JobStatus
from tests.contract.jobs import (
    LATER,
    LEASE_MS,
    T0,
    Q,
    completion,
    failure,
    new_job,
    record,
    register,
    release,
)

MAX_DEATHS = 3
#: What a worker writes when a job's own process died for the last time it may.
POISON_ERROR = "poison job: its own process died 3 times (last: killed by signal 9)"


async def claim(
    backend: Backend, worker: str, now_ms: int, *, suspects: int = 0, count: int = 10
) -> ClaimBatch:
    return await backend.claim_jobs(Q, worker, count, LEASE_MS, now_ms, suspects=suspects)


def ids(batch: ClaimBatch) -> list[str]:
    return [job.id for job in batch.jobs]


def flagged(batch: ClaimBatch) -> list[tuple[str, bool]]:
    """(id, suspect) of each claimed job, in order."""
    return [(job.id, job.suspect) for job in batch.jobs]


async def run_and_die(
    backend: Backend, worker: str, now_ms: int, max_deaths: int, *, suspects: int = 0
) -> tuple[list[str], list[Reclaimed]]:
    """A fresh worker claims at `now_ms`, then is killed from outside: reclaim once its
    lease has passed. Returns the ids it claimed and what the reclaim reported."""
    await register(backend, worker, now_ms)
    claimed = ids(await claim(backend, worker, now_ms, suspects=suspects))
    reclaimed = await backend.reclaim_stalled_jobs(Q, now_ms + LATER, max_deaths=max_deaths)
    return claimed, reclaimed


async def make_suspects(backend: Backend) -> int:
    """ "innocent" and "poison" both held by w1, then by w2, both killed from outside
    (max_deaths=3): two deaths each make both suspects. Returns the time after the second
    reclaim."""
    await backend.enqueue_jobs([new_job("innocent"), new_job("poison")])
    for n, worker in enumerate(("w1", "w2")):
        claimed, _ = await run_and_die(backend, worker, T0 + n * LATER, MAX_DEATHS)
        assert claimed == ["innocent", "poison"]
    return T0 + 2 * LATER


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

    busy = await claim(backend, "w3", now)

    assert (flagged(busy), busy.suspects) == ([("fresh", False)], 2)
    again = await claim(backend, "w3", now)
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
    first = await claim(backend, "w3", now + 1, suspects=1)

    # Then it gets the oldest suspect first, flagged for its sandbox, then ordinary jobs
    assert flagged(first) == [("innocent", True), ("fresh1", False), ("fresh2", False)]
    assert first.suspects == 1
    suspect = first.jobs[0]
    assert (suspect.attempt, suspect.deaths) == (3, 2)
    job = await record(backend, "innocent")
    assert (job.status, job.worker_id, job.started_at_ms) == (JobStatus.RUNNING, "w3", now + 1)
    assert await backend.count_held_jobs(Q, "w3") == 3

    # And the next sandbox gets the next suspect; with none left, a claim is an ordinary one
    second = await claim(backend, "w4", now + 1, suspects=1)
    assert (flagged(second), second.suspects) == ([("poison", True)], 0)
    await backend.enqueue_jobs([new_job("fresh3")])
    third = await claim(backend, "w4", now + 1, suspects=1)
    assert (flagged(third), third.suspects) == ([("fresh3", False)], 0)


async def test_a_claim_takes_no_more_suspects_than_asked_nor_than_its_count(
    backend: Backend,
) -> None:
    now = await make_suspects(backend)
    await backend.enqueue_jobs([new_job("fresh")])
    await register(backend, "w3", now)

    one = await claim(backend, "w3", now, suspects=2, count=1)
    assert (flagged(one), one.suspects) == ([("innocent", True)], 1)

    rest = await claim(backend, "w3", now, suspects=2, count=5)
    assert (flagged(rest), rest.suspects) == ([("poison", True), ("fresh", False)], 0)


async def test_a_sandbox_crash_with_budget_left_sends_the_job_back_among_the_suspects(
    backend: Backend,
) -> None:
    # Given a job and a bystander held by w1, and the job's own process dies (1 death of 3)
    await backend.enqueue_jobs([new_job("crasher"), new_job("bystander")])
    await register(backend, "w1", T0)
    crasher, bystander = (await claim(backend, "w1", T0)).jobs

    # When the worker, which lived to see it, records the death and asks for a sandbox
    assert await backend.release_jobs("w1", [release(crasher, died=True, suspect=True)]) == [True]

    # Then the job is a suspect with the death on record; the attempt it made counts
    job = await record(backend, "crasher")
    assert (job.status, job.deaths, job.failures, job.worker_id) == (JobStatus.QUEUED, 1, 0, None)
    assert job.death_log == ("w1",)
    busy = await claim(backend, "w1", T0 + 1)
    assert (ids(busy), busy.suspects) == ([], 1)
    sandboxed = await claim(backend, "w1", T0 + 1, suspects=1)
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
    first = await claim(backend, "w3", now, suspects=1, count=2)
    assert flagged(first) == [("innocent", True), ("bystander1", False)]
    done = [completion(j, at_ms=now + 1) for j in first.jobs]
    assert await backend.complete_jobs("w3", done, 60_000) == [
        True,
        True,
    ]

    # and the poison one runs in a sandbox beside the other bystander, and its own process
    # dies: the worker sees its third death and records a poison job
    await register(backend, "w4", now + 10)
    second = await claim(backend, "w4", now + 10, suspects=1, count=2)
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
    held = await claim(backend, "w3", now, suspects=1, count=2)
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
    ordinary = await claim(backend, "w4", now)
    assert (flagged(ordinary), ordinary.suspects) == ([("bystander", False)], 2)

    # And the suspect can still run in a sandbox and succeed
    again = await claim(backend, "w4", now, suspects=1, count=1)
    assert flagged(again) == [("innocent", True)]
    assert await backend.complete_jobs(
        "w4", [completion(again.jobs[0], at_ms=now + 1)], 60_000
    ) == [True]
    assert (await record(backend, "innocent")).status == JobStatus.SUCCEEDED


async def test_bystanders_are_never_blamed_for_a_poison_job(backend: Backend) -> None:
    # Given a job whose own process dies at every attempt, first run beside bystander0
    await backend.enqueue_jobs([new_job("poison"), new_job("bystander0")])
    await register(backend, "w0", T0)
    poison, bystander = (await claim(backend, "w0", T0)).jobs
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
        batch = await claim(backend, f"w{n}", T0 + n, suspects=1)
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
        batch = await claim(backend, "w2", now, suspects=1)
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
    (held,) = (await claim(backend, "w3", now, suspects=1, count=1)).jobs
    assert held.id == "innocent"

    # When its worker gives it back before starting it (shutdown)
    assert await backend.release_jobs("w3", [release(held, unstarted=True)]) == [True]

    # Then it waits among the suspects again, at its old place
    assert (await record(backend, "innocent")).status == JobStatus.QUEUED
    busy = await claim(backend, "w3", now)
    assert (ids(busy), busy.suspects) == ([], 2)
    again = await claim(backend, "w3", now, suspects=1)
    assert (flagged(again), again.suspects) == ([("innocent", True)], 1)
    assert again.jobs[0].attempt == held.attempt  # the unstarted attempt did not count


async def test_a_suspect_retried_after_a_failure_comes_back_as_a_suspect(
    backend: Backend,
) -> None:
    # Given a suspect that ran in a sandbox and raised, with a retry in 10 s
    now = await make_suspects(backend)
    await register(backend, "w3", now)
    (held,) = (await claim(backend, "w3", now, suspects=1, count=1)).jobs
    assert await backend.fail_jobs("w3", [failure(held, now + 10_000)], 60_000) == [True]
    assert (await record(backend, held.id)).status == JobStatus.FAILED

    # When its retry time comes, it is not among the ready jobs but among the suspects
    busy = await claim(backend, "w3", now + 10_000)
    assert (ids(busy), busy.suspects) == ([], 2)
    assert (await record(backend, held.id)).status == JobStatus.QUEUED

    # Then sandboxes get the suspects one at a time, in order (it went to the tail)
    first = await claim(backend, "w3", now + 10_000, suspects=1)
    assert (flagged(first), first.suspects) == ([("poison", True)], 1)
    await register(backend, "w4", now + 10_000)
    second = await claim(backend, "w4", now + 10_000, suspects=1)
    assert (flagged(second), second.suspects) == ([(held.id, True)], 0)
    assert second.jobs[0].failures == 1


async def test_a_waiting_suspect_can_be_cancelled(backend: Backend) -> None:
    now = await make_suspects(backend)

    assert await backend.cancel_job("poison", Q, now) is True

    job = await record(backend, "poison")
    assert job.status == JobStatus.CANCELLED
    (stats,) = await backend.queue_stats([Q])
    assert stats.ready == 1
    await register(backend, "w3", now)
    batch = await claim(backend, "w3", now, suspects=1)
    assert (ids(batch), batch.suspects) == (["innocent"], 0)
    assert ids(await claim(backend, "w3", now, suspects=1)) == []
    assert await backend.cancel_job("innocent", Q, now) is False  # running: not cancellable


async def test_retry_dead_clears_the_suspect_flag(backend: Backend) -> None:
    # Given a poison job in the dead letters: a suspect after one death (max_deaths=1),
    # whose own process then died in a sandbox
    await backend.enqueue_jobs([new_job("a")])
    await run_and_die(backend, "w1", T0, max_deaths=1)
    await register(backend, "w2", T0 + LATER)
    (held,) = (await claim(backend, "w2", T0 + LATER, suspects=1)).jobs
    assert held.suspect
    assert await backend.fail_jobs("w2", [failure(held, None, died=True)], 60_000) == [True]
    assert (await record(backend, "a")).status == JobStatus.DEAD

    # When an operator retries it
    now = T0 + 2 * LATER
    assert await backend.retry_dead(Q, None, now) == 1

    # Then it is an ordinary ready job with a fresh budget: a claim without sandboxes takes it
    job = await record(backend, "a")
    assert (job.status, job.deaths, job.death_log) == (JobStatus.QUEUED, 0, ())
    await register(backend, "w3", now)
    batch = await claim(backend, "w3", now)
    assert (flagged(batch), batch.suspects) == ([("a", False)], 0)

    # And one more death (max_deaths=3) puts it back among the ready jobs, not the suspects
    reclaimed = await backend.reclaim_stalled_jobs(Q, now + LATER, max_deaths=3)
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w3", dead=False)]
    await register(backend, "w4", now + LATER)
    assert flagged(await claim(backend, "w4", now + LATER)) == [("a", False)]


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
