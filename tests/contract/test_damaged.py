"""Broker contract: damaged data costs only itself.

Another program may write anything into the store (see the `damage` fixture). A job record
a call cannot read goes to the dead letters with an error starting ``damaged job record:``
that names the field and its value, and the rest of the call goes on: the jobs claimed,
promoted, reclaimed or listed with it are untouched. Outcomes on a damaged record are
refused (False) without an error. Damaged records still read, and damaged dead letters
are listed, retried (their unreadable numbers reset) and purged.

A record is damaged when any of its fields cannot be read (base.py: a field that is not a
number, a key of another type, a payload that is not bytes), whichever fields the call at
hand needs: every call that meets it treats it the same way, so a damaged job can never
be left running, refused by every outcome, with no call to dead-letter it.
"""

from __future__ import annotations

from corq.backends import Backend
from corq.backends.base import HeldJob, damaged_error
from corq.job import Job, JobStatus
from tests.contract.conftest import Damage
from tests.contract.jobs import (
    LATER,
    LEASE_MS,
    T0,
    Q,
    claim,
    completion,
    failure,
    kill,
    new_job,
    record,
    register,
    release,
)

DAMAGED = damaged_error("")  # the prefix every such error starts with


def assert_damaged(job: Job, *names: str) -> None:
    """The record reads as damaged, naming each of `names` (a field, or a value)."""
    assert job.error is not None
    assert job.error.startswith(DAMAGED), job.error
    for name in names:
        assert name in job.error, (name, job.error)


async def dead_ids(backend: Backend) -> set[str]:
    return {job.id for job in await backend.list_dead(Q, limit=1000)}


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


async def test_cancel_of_a_damaged_record_is_refused(backend: Backend, damage: Damage) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await damage.wrong_type(Q, "a")

    assert await backend.cancel_job("a", Q, T0) is False
    assert await backend.cancel_job("b", Q, T0) is True

    # and the damaged one is never handed out
    await register(backend, "w1")
    assert await claim(backend, "w1") == []
    assert await dead_ids(backend) == {"a"}


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


async def test_damaged_dead_letters_are_still_listed(backend: Backend, damage: Damage) -> None:
    await kill(backend, ["a", "b", "c", "d"])
    await damage.set_field(Q, "b", "attempt", "seven")
    await damage.wrong_type(Q, "c")

    dead = await backend.list_dead(Q)

    assert [j.id for j in dead] == ["d", "c", "b", "a"]
    by_id = {j.id: j for j in dead}
    assert_damaged(by_id["b"], "attempt", "seven")
    assert_damaged(by_id["c"])
    assert (by_id["d"].status, by_id["d"].error) == (JobStatus.DEAD, "RuntimeError: d")
    assert [j.id for j in await backend.list_dead(Q, offset=1, limit=2)] == ["c", "b"]
    (stats,) = await backend.queue_stats([Q])
    assert stats.dead == 4


async def test_damaged_dead_letters_are_retried_with_their_unreadable_numbers_reset(
    backend: Backend, damage: Damage
) -> None:
    # Given four dead letters, three of them with numbers another program garbled
    await kill(backend, ["a", "b", "c", "d"])
    await damage.set_field(Q, "a", "attempt", "seven")
    await damage.set_field(Q, "b", "priority", "high")
    await damage.set_field(Q, "c", "fence", "fence?")

    # When an operator retries them all
    assert await backend.retry_dead(Q, None, T0 + 100) == 4

    # Then each is queued again and readable, what could not be read reset
    a, b = await record(backend, "a"), await record(backend, "b")
    assert (a.status, a.attempt) == (JobStatus.QUEUED, 0)
    assert (b.status, b.priority) == (JobStatus.QUEUED, 0)
    assert (await record(backend, "c")).status == JobStatus.QUEUED
    assert await backend.list_dead(Q) == []

    # And each runs to completion like any job
    await register(backend, "w1", T0 + 100)
    jobs = await claim(backend, "w1", T0 + 100)
    assert sorted(j.id for j in jobs) == ["a", "b", "c", "d"]
    assert {j.id: (j.attempt, j.priority) for j in jobs if j.id in ("a", "b")} == {
        "a": (1, 0),
        "b": (b.attempt + 1, 0),
    }
    assert await backend.complete_jobs("w1", [completion(j) for j in jobs], 60_000) == [True] * 4


async def test_a_dead_letter_that_is_no_job_record_is_never_run_but_stays_listed(
    backend: Backend, damage: Damage
) -> None:
    """Redis does not retry a key of another type (it is not counted); on SQLite the closest
    damage is a row that can be retried, and the next claim dead-letters it again. Either
    way it never runs, and an operator can still see it and purge it."""
    # Given two dead letters, one no longer readable as a job
    await kill(backend, ["a", "b"])
    await damage.wrong_type(Q, "b")

    # When an operator retries them all, and a worker claims
    moved = await backend.retry_dead(Q, None, T0 + 100)
    await register(backend, "w1", T0 + 100)
    jobs = await claim(backend, "w1", T0 + 100)

    # Then the healthy one runs, the damaged one is still a dead letter
    assert moved in (1, 2)
    assert [j.id for j in jobs] == ["a"]
    assert [j.id for j in await backend.list_dead(Q)] == ["b"]
    assert_damaged(await record(backend, "b"))

    # And it can be purged
    assert await backend.purge_dead(Q, ["b"]) == 1
    assert await backend.list_dead(Q) == []
    assert await backend.get_job("b", Q) is None


async def test_damaged_dead_letters_are_purged(backend: Backend, damage: Damage) -> None:
    await kill(backend, ["a", "b", "c"])
    await damage.set_field(Q, "a", "attempt", "seven")
    await damage.wrong_type(Q, "b")

    assert await backend.purge_dead(Q, ["a"]) == 1
    assert await backend.get_job("a", Q) is None
    assert await backend.purge_dead(Q, None) == 2

    assert await backend.list_dead(Q) == []
    assert await backend.get_job("b", Q) is None
    (stats,) = await backend.queue_stats([Q])
    assert stats.dead == 0


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
