"""Broker contract: deaths a worker records itself.

When a job's own process dies (a sandbox or a process-pool child) while its worker lives,
the worker records a death: ``Release(died=True)`` gives the job back, ``Failure(died=True)``
retries it later or, without a retry, makes it a poison job. Either counts ``deaths + 1``
and adds the holder to the death log instead of counting a failure.
"""

from __future__ import annotations

import dataclasses

from corq.backends import Backend
from corq.job import JobStatus
from tests.contract.jobs import (
    T0,
    Q,
    claim,
    failure,
    new_job,
    record,
    register,
    release,
)


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
