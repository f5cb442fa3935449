"""A snoozed attempt (``Failure(snoozed=True)``): the job waits again as if the attempt had
never started (scheduled at its time, attempt back by one, nothing counted, the reason as
its error), its slots are free, and it is no end (its unique key stays held)."""

from __future__ import annotations

from dataclasses import replace

from corq.backends import Backend
from corq.backends.base import ClaimedJob, Failure, TaskRules
from corq.job import JobStatus
from tests.contract.flow import LIMITED, claim_ids, claim_jobs, job, running, task_slot
from tests.contract.jobs import T0, Q, claim, failure, new_job, record, register

S = JobStatus
LATER_MS = 5_000


def snooze(held: ClaimedJob, until_ms: int, reason: str = "breaker open") -> Failure:
    return Failure(
        job_id=held.id,
        queue=held.queue,
        fence=held.fence,
        error=reason,
        traceback=None,
        retry_at_ms=until_ms,
        finished_at_ms=T0 + 5,
        counted=False,
        snoozed=True,
    )


async def test_a_snoozed_job_waits_as_if_its_attempt_never_started(backend: Backend) -> None:
    # Given a job that failed once, then is claimed again (its second attempt)
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    [first] = await claim(backend, "w1")
    assert await backend.fail_jobs("w1", [failure(first, T0 + 10)], 60_000) == [True]
    await backend.promote_due_jobs(Q, T0 + 10)
    [second] = await claim(backend, "w1", T0 + 10)
    assert second.attempt == 2

    # When that attempt snoozes
    assert await backend.fail_jobs("w1", [snooze(second, T0 + LATER_MS)], 60_000) == [True]

    # Then it is scheduled at the snooze's end with its reason, the attempt not counted
    job = await record(backend, "a")
    assert job.status is S.SCHEDULED
    assert job.run_at_ms == T0 + LATER_MS
    assert (job.attempt, job.failures, job.deaths) == (1, 1, 0)
    assert job.error == "breaker open"
    assert job.traceback is None
    # and it does not run before its time
    await backend.promote_due_jobs(Q, T0 + LATER_MS - 1)
    assert await claim(backend, "w1", T0 + LATER_MS - 1) == []
    # then it does, as its second attempt again
    await backend.promote_due_jobs(Q, T0 + LATER_MS)
    [again] = await claim(backend, "w1", T0 + LATER_MS)
    assert (again.id, again.attempt) == ("a", 2)


async def test_a_first_attempt_snoozed_is_back_at_attempt_zero(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    [held] = await claim(backend, "w1")

    assert await backend.fail_jobs("w1", [snooze(held, T0 + 100)], 60_000) == [True]

    job = await record(backend, "a")
    assert (job.status, job.attempt, job.failures) == (S.SCHEDULED, 0, 0)


async def test_a_snooze_is_fenced(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await register(backend, "w1")
    [held] = await claim(backend, "w1")
    stale = replace(snooze(held, T0 + 100), fence=held.fence + 1)

    assert await backend.fail_jobs("w1", [stale], 60_000) == [False]
    assert await backend.fail_jobs("w2", [snooze(held, T0 + 100)], 60_000) == [False]
    assert (await record(backend, "a")).status is S.RUNNING


async def test_a_snooze_frees_the_attempts_slots(backend: Backend) -> None:
    # Given a task at its concurrency of one, a second job waiting
    await backend.set_rules(Q, [TaskRules(task=LIMITED, concurrency=1)])
    await backend.enqueue_jobs([job("a"), job("b")])
    await register(backend, "w1")
    [held] = await claim_jobs(backend, "w1")
    assert await claim_ids(backend, "w1", T0 + 1) == []

    # When the running one snoozes
    assert await backend.fail_jobs("w1", [snooze(held, T0 + LATER_MS)], 60_000) == [True]

    # Then the other starts, and the snoozed one comes back into its lane when due
    assert await claim_ids(backend, "w1", T0 + 2) == ["b"]
    assert await running(backend, task_slot()) == 1
    await backend.promote_due_jobs(Q, T0 + LATER_MS)
    assert await claim_ids(backend, "w1", T0 + LATER_MS) == []  # b still holds the slot
    assert (await record(backend, "a")).status is S.QUEUED


async def test_a_snoozed_job_keeps_its_unique_key(backend: Backend) -> None:
    await backend.enqueue_jobs([job("a", unique_key="u")])
    await register(backend, "w1")
    [held] = await claim_jobs(backend, "w1")
    assert await backend.fail_jobs("w1", [snooze(held, T0 + LATER_MS)], 60_000) == [True]

    [admitted] = await backend.admit_jobs([job("b", unique_key="u", at_ms=T0 + 10)])

    assert admitted.job_id == "a"
    assert admitted.outcome.value == "existing"


async def test_a_job_snoozed_past_its_deadline_expires_unstarted(backend: Backend) -> None:
    # Given a job that must start by T0 + 100, snoozed on its first attempt
    await backend.enqueue_jobs([job("a", start_by_ms=T0 + 100)])
    await register(backend, "w1")
    [held] = await claim_jobs(backend, "w1")
    assert await backend.fail_jobs("w1", [snooze(held, T0 + LATER_MS)], 60_000) == [True]

    # When it comes due after its deadline
    await backend.promote_due_jobs(Q, T0 + LATER_MS)
    started = await claim_ids(backend, "w1", T0 + LATER_MS)

    # Then it never starts again: it expired (it never started as far as it counts)
    assert started == []
    assert (await record(backend, "a")).status is S.EXPIRED
