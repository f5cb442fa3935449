"""Broker contract, Admin port: what operators see and steer.

Methods: ``list_queues``, ``prune_queues``, ``queue_stats``, ``list_dead``, ``retry_dead``,
``purge_dead``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from corq.backends import Backend
from corq.backends.base import (
    BATCH,
    ClaimedJob,
    NewJob,
    Reclaimed,
    WorkerLease,
)
from corq.flow import TaskRules
from corq.job import JobStatus
from tests.contract.conftest import Broker, Damage
from tests.contract.jobs import (
    DAY_MS,
    HOUR_MS,
    LATER,
    LEASE_MS,
    T0,
    Q,
    assert_damaged,
    claim,
    claim_batch,
    completion,
    failure,
    flagged,
    kill,
    lease_of,
    new_job,
    record,
    register,
    run_and_die,
    wall_ms,
)
from tests.contract.workflows import dag, wjob

# ------------------------------------------------------------------------------------------------
# Queue stats
# ------------------------------------------------------------------------------------------------


async def test_queue_stats_counts_each_state(backend: Backend) -> None:
    # Given 2 ready, 1 delayed, 2 in flight, 1 dead and 2 workers
    await kill(backend, ["dead"], worker="w1")
    await backend.enqueue_jobs([new_job(f"r{i}") for i in range(4)] + [new_job("d", delay_ms=9)])
    await backend.register_worker(WorkerLease(worker_id="w2", queues=[Q], lease_ms=LEASE_MS), T0)
    await backend.claim_jobs(Q, "w2", 2, LEASE_MS, T0)

    # When
    (stats,) = await backend.queue_stats([Q])

    # Then
    assert (
        stats.queue,
        stats.ready,
        stats.delayed,
        stats.in_flight,
        stats.dead,
        stats.workers,
    ) == (
        Q,
        2,
        1,
        2,
        1,
        2,
    )
    assert [s.queue for s in await backend.queue_stats()] == await backend.list_queues()


def stamped(job_id: str, enqueued_at_ms: int, *, priority: int = 0, task: str = "tasks.add",
            key: str | None = None) -> NewJob:  # fmt: skip
    """A job enqueued (and due) at `enqueued_at_ms`."""
    return NewJob(id=job_id, task=task, queue=Q, payload=b"{}", priority=priority,
                  enqueued_at_ms=enqueued_at_ms, run_at_ms=enqueued_at_ms, key=key)  # fmt: skip


async def test_queue_stats_count_waiting_and_retrying_jobs(backend: Backend) -> None:
    # Given a workflow a -> b (b waits), a job retried after a failure, and a scheduled one
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a")), None)
    await backend.enqueue_jobs([new_job("r"), new_job("later", delay_ms=HOUR_MS)])
    await register(backend, "w1")
    held = {j.id: j for j in await claim(backend, "w1")}
    assert await backend.fail_jobs("w1", [failure(held["r"], T0 + HOUR_MS)], 60_000) == [True]

    # When
    (stats,) = await backend.queue_stats([Q])

    # Then b waits, r is one of the two delayed jobs, and a runs
    assert (stats.waiting, stats.delayed, stats.retrying) == (1, 2, 1)
    assert stats.in_flight == 1


async def test_oldest_ready_is_when_the_longest_waiting_job_became_ready(
    backend: Backend,
) -> None:
    # Given jobs made ready at different times, the oldest one of low priority
    await backend.enqueue_jobs([stamped("old", T0, priority=-5)])
    await backend.enqueue_jobs([stamped("urgent", T0 + 50, priority=9)])
    await backend.enqueue_jobs([stamped("new", T0 + 90)])

    # Then the oldest is seen although it is last in claim order
    (stats,) = await backend.queue_stats([Q])
    assert stats.oldest_ready_ms == T0

    # And it stays the oldest while the jobs claimed before it run; gone once it runs too
    await register(backend, "w1")
    await claim(backend, "w1", count=2)
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.oldest_ready_ms) == (1, T0)
    await claim(backend, "w1", count=1)
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.oldest_ready_ms) == (0, None)


async def test_oldest_ready_counts_jobs_in_lanes(backend: Backend) -> None:
    # Given a keyed task whose old job waits in its lane behind a plain newer one
    await backend.set_rules(Q, [TaskRules(task="tasks.keyed", keyed=True)])
    await backend.enqueue_jobs([stamped("laned", T0 - 500, task="tasks.keyed", key="k")])
    await backend.enqueue_jobs([stamped("plain", T0)])

    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.oldest_ready_ms) == (2, T0 - 500)


async def test_a_queue_with_nothing_ready_has_no_oldest_ready(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("later", delay_ms=HOUR_MS)])
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.oldest_ready_ms, stats.waiting, stats.retrying) == (0, None, 0, 0)


async def test_stats_of_an_unknown_queue_are_zero(backend: Backend) -> None:
    (stats,) = await backend.queue_stats(["nothing-here"])

    assert (stats.ready, stats.delayed, stats.in_flight, stats.dead, stats.workers) == (0,) * 5


# ------------------------------------------------------------------------------------------------
# The registry of queue names
#
# Every queue enqueued to or served is listed until pruned; ``prune_queues`` forgets only the
# names of queues that hold nothing in any lane, have no registered worker and were not used
# for `idle_ms`. Names another program wrote that are not valid UTF-8 are skipped.
# ------------------------------------------------------------------------------------------------


def stamped_now(job_id: str, queue: str, delay_ms: int = 0) -> NewJob:
    """A job stamped by this machine's clock (the broker's, in these tests)."""
    now = wall_ms()
    return NewJob(
        id=job_id, task="t", queue=queue, payload=b"", enqueued_at_ms=now, run_at_ms=now + delay_ms
    )


async def fill_queues(backend: Backend) -> None:
    """One queue per way of holding something, and one ("emptied") that holds nothing.

    Everything runs on broker time (None), as workers on the system clock do."""
    await backend.enqueue_jobs(
        [
            stamped_now("r", "ready"),
            stamped_now("l", "delayed", delay_ms=DAY_MS),
            stamped_now("x", "dead"),
            stamped_now("h", "running"),
            stamped_now("e", "emptied"),
        ]
    )
    # "served": a worker with a lease of a day, and nothing to do
    await backend.register_worker(lease_of("idle", "served", lease_ms=DAY_MS), None)
    # "running": a job held by a worker that since departed without lingering
    await register(backend, "busy", None, queue="running")
    await claim(backend, "busy", None, queue="running")
    await backend.deregister_worker(lease_of("busy", "running"), None)
    # "dead": a job that failed for good
    await register(backend, "w1", None, queue="dead")
    (x,) = await claim(backend, "w1", None, queue="dead")
    assert await backend.fail_jobs("w1", [failure(x, None, at_ms=wall_ms())], 60_000) == [True]
    await backend.deregister_worker(lease_of("w1", "dead"), None)
    # "emptied": its only job succeeded, its worker left
    await register(backend, "w2", None, queue="emptied")
    (e,) = await claim(backend, "w2", None, queue="emptied")
    done = completion(e, at_ms=wall_ms())
    assert await backend.complete_jobs("w2", [done], 60_000) == [True]
    await backend.deregister_worker(lease_of("w2", "emptied"), None)


QUEUES = {"ready", "delayed", "dead", "running", "served", "emptied"}


async def test_every_queue_enqueued_to_or_served_is_listed(backend: Backend) -> None:
    await fill_queues(backend)

    assert set(await backend.list_queues()) == QUEUES
    assert {s.queue for s in await backend.queue_stats()} == QUEUES


async def test_prune_forgets_only_queues_that_hold_nothing(backend: Backend) -> None:
    # Given queues holding something each way, and one that holds nothing
    await fill_queues(backend)

    # When an operator prunes queues unused for an hour, two hours from now
    pruned = await backend.prune_queues(wall_ms() + 2 * HOUR_MS, HOUR_MS)

    # Then only the empty one is forgotten
    assert pruned == ["emptied"]
    assert set(await backend.list_queues()) == QUEUES - {"emptied"}
    assert await backend.prune_queues(wall_ms() + 2 * HOUR_MS, HOUR_MS) == []


async def test_prune_keeps_a_queue_used_recently(backend: Backend) -> None:
    await fill_queues(backend)

    assert await backend.prune_queues(None, HOUR_MS) == []

    assert set(await backend.list_queues()) == QUEUES


async def test_a_pruned_queue_is_listed_again_once_used(backend: Backend, broker: Broker) -> None:
    await fill_queues(backend)
    assert await backend.prune_queues(wall_ms() + 2 * HOUR_MS, HOUR_MS) == ["emptied"]

    # a producer that starts later enqueues to it again
    producer = broker.open()
    await producer.enqueue_jobs([stamped_now("again", "emptied")])

    assert "emptied" in await backend.list_queues()
    (stats,) = await backend.queue_stats(["emptied"])
    assert stats.ready == 1


async def test_names_that_are_not_valid_utf8_are_skipped(backend: Backend, damage: Damage) -> None:
    await backend.enqueue_jobs([stamped_now("a", "good")])
    await damage.add_queue_name(b"bad\xff\xfe")

    assert await backend.list_queues() == ["good"]
    assert [s.queue for s in await backend.queue_stats()] == ["good"]
    found = await backend.get_job("a")
    assert found is not None
    assert found.queue == "good"


# ------------------------------------------------------------------------------------------------
# Dead letters: listed, retried, purged
#
# Dead letters are listed newest first. ``retry_dead(queue, None, now)`` moves each job that
# was dead when the call began, once, even while jobs die again during the call.
# ------------------------------------------------------------------------------------------------


async def dead_ids_newest_first(backend: Backend) -> list[str]:
    return [job.id for job in await backend.list_dead(Q, limit=10_000)]


async def die(backend: Backend, worker: str, jobs: list[ClaimedJob], at_ms: int) -> None:
    """The jobs' attempts fail for good, at `at_ms` by the worker's clock."""
    failures = [failure(j, None, error="RuntimeError: again", at_ms=at_ms) for j in jobs]
    assert await backend.fail_jobs(worker, failures, 60_000) == [True] * len(jobs)


async def test_dead_letters_are_listed_newest_first(backend: Backend) -> None:
    await kill(backend, ["a", "b", "c", "d"], worker="w1")

    assert [j.id for j in await backend.list_dead(Q)] == ["d", "c", "b", "a"]
    assert [j.id for j in await backend.list_dead(Q, offset=1, limit=2)] == ["c", "b"]
    (newest,) = await backend.list_dead(Q, limit=1)
    assert (newest.status, newest.error) == (JobStatus.DEAD, "RuntimeError: d")


async def test_retry_dead_queues_chosen_jobs_with_a_fresh_budget(backend: Backend) -> None:
    await kill(backend, ["a", "b", "c"], worker="w1")

    assert await backend.retry_dead(Q, ["a", "c", "not-dead"], T0 + 100) == 2

    assert [j.id for j in await backend.list_dead(Q)] == ["b"]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.failures, job.deaths, job.error) == (
        JobStatus.QUEUED,
        0,
        0,
        "RuntimeError: a",
    )
    again = (await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0 + 100)).jobs
    assert [(j.id, j.failures) for j in again] == [("a", 0), ("c", 0)]


async def test_retry_all_dead(backend: Backend) -> None:
    await kill(backend, ["a", "b"], worker="w1")

    assert await backend.retry_dead(Q, None, T0 + 100) == 2

    assert await backend.list_dead(Q) == []
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.dead) == (2, 0)


async def test_purge_dead_deletes_chosen_then_all(backend: Backend) -> None:
    await kill(backend, ["a", "b", "c"], worker="w1")
    await backend.enqueue_jobs([new_job("alive")])

    assert await backend.purge_dead(Q, ["b", "alive"]) == 1
    assert await backend.get_job("b", Q) is None
    assert await backend.get_job("alive", Q) is not None
    assert await backend.purge_dead(Q, None) == 2
    assert await backend.list_dead(Q) == []
    assert await backend.get_job("a", Q) is None


async def test_retry_all_moves_each_dead_job_once_while_jobs_die_again(
    backend: Backend, broker: Broker
) -> None:
    """The reproduced Redis bug: `dead retry --all` went on picking jobs from the live dead
    letters, so the jobs that died again during the command were retried again (9,000
    moves for 6,000 dead letters)."""
    # Given dead letters for several steps of the broker
    n = 3 * BATCH
    job_ids = [f"j{i}" for i in range(n)]
    await kill(backend, job_ids)
    # and a worker that, while the retry runs, claims each retried job and lets it die again
    worker = broker.open()
    await register(worker, "w1", T0 + 100)
    runs: Counter[str] = Counter()

    async def run_and_kill_retried_jobs(retry: asyncio.Task[int]) -> None:
        while True:
            jobs = await claim(worker, "w1", T0 + 100, count=50)
            if not jobs:
                if retry.done():
                    return
                await asyncio.sleep(0)
                continue
            runs.update(j.id for j in jobs)
            await die(worker, "w1", jobs, T0 + 200)

    # When an operator retries every dead letter
    retry = asyncio.create_task(backend.retry_dead(Q, None, T0 + 100))
    await run_and_kill_retried_jobs(retry)
    moved = await retry

    # Then each job dead at the start moved once, and ran once: none that died again during
    # the call was moved a second time
    assert moved <= n
    assert max(runs.values()) == 1
    assert sum(runs.values()) == moved
    assert moved == n
    assert sorted(await dead_ids_newest_first(backend)) == sorted(job_ids)


async def test_retry_dead_clears_the_suspect_flag(backend: Backend) -> None:
    # Given a poison job in the dead letters: a suspect after one death (max_deaths=1),
    # whose own process then died in a sandbox
    await backend.enqueue_jobs([new_job("a")])
    await run_and_die(backend, "w1", T0, max_deaths=1)
    await register(backend, "w2", T0 + LATER)
    (held,) = (await claim_batch(backend, "w2", T0 + LATER, suspects=1)).jobs
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
    batch = await claim_batch(backend, "w3", now)
    assert (flagged(batch), batch.suspects) == ([("a", False)], 0)

    # And one more death (max_deaths=3) puts it back among the ready jobs, not the suspects
    reclaimed = await backend.reclaim_stalled_jobs(Q, now + LATER, max_deaths=3)
    assert reclaimed == [Reclaimed(job_id="a", queue=Q, worker_id="w3", dead=False)]
    await register(backend, "w4", now + LATER)
    assert flagged(await claim_batch(backend, "w4", now + LATER)) == [("a", False)]


# ------------------------------------------------------------------------------------------------
# Bounds of the dead letters
#
# A queue's dead letters keep at most `dead_max` jobs and none older than `dead_ttl_ms`
# (options of the backend; 0: unbounded), trimmed whenever jobs join them, the trimmed
# records deleted.
# ------------------------------------------------------------------------------------------------


async def test_dead_max_keeps_the_newest_dead_letters(broker: Broker) -> None:
    # Given a backend keeping at most 3 dead letters per queue
    backend = broker.open(dead_max=3)

    # When five jobs die, one after the other
    await kill(backend, ["a", "b", "c", "d", "e"])

    # Then the three newest are kept, the older records deleted
    assert await dead_ids_newest_first(backend) == ["e", "d", "c"]
    assert await backend.get_job("a", Q) is None
    assert await backend.get_job("b", Q) is None
    (stats,) = await backend.queue_stats([Q])
    assert stats.dead == 3

    # And the bound holds as more join
    await kill(backend, ["f"], worker="w2", at_ms=T0 + 10)
    assert await dead_ids_newest_first(backend) == ["f", "e", "d"]
    assert await backend.get_job("c", Q) is None


async def test_dead_max_bounds_every_way_into_the_dead_letters(
    broker: Broker, damage: Damage
) -> None:
    # Given a backend keeping one dead letter, and a job that failed for good at T0 + 1
    backend = broker.open(dead_max=1)
    await kill(backend, ["failed"])

    # When a damaged record is dead-lettered by a claim at T0 + 100
    await backend.enqueue_jobs([new_job("damaged")])
    await damage.set_field(Q, "damaged", "attempt", "seven")
    await register(backend, "w1", T0 + 100)
    assert await claim(backend, "w1", T0 + 100) == []
    # Then only the newest is kept
    assert await dead_ids_newest_first(backend) == ["damaged"]
    assert await backend.get_job("failed", Q) is None

    # When a job reaches the backstop (max_deaths=1: 3 deaths), its last worker dying later
    await backend.enqueue_jobs([new_job("backstop")])
    now = T0 + 200
    for n in range(3):
        await register(backend, f"k{n}", now)
        assert [j.id for j in await claim(backend, f"k{n}", now, suspects=1)] == ["backstop"]
        now += LATER
        await backend.reclaim_stalled_jobs(Q, now, max_deaths=1)
    # Then it is the one dead letter kept
    assert await dead_ids_newest_first(backend) == ["backstop"]
    assert await backend.get_job("damaged", Q) is None


async def test_dead_ttl_drops_old_dead_letters_as_new_ones_join(broker: Broker) -> None:
    # Given a backend keeping dead letters for an hour
    backend = broker.open(dead_ttl_ms=HOUR_MS)
    now = wall_ms()
    await backend.enqueue_jobs([new_job(job_id) for job_id in ("old1", "old2", "recent", "new")])
    await register(backend, "w1", None)
    held = {j.id: j for j in await claim(backend, "w1", None)}

    # When two jobs died two hours ago, one a minute ago, and then one dies now
    await die(backend, "w1", [held["old1"], held["old2"]], now - 2 * HOUR_MS)
    await die(backend, "w1", [held["recent"]], now - 60_000)
    await die(backend, "w1", [held["new"]], now)

    # Then the ones older than an hour are gone, records and all
    assert await dead_ids_newest_first(backend) == ["new", "recent"]
    assert await backend.get_job("old1", Q) is None
    assert await backend.get_job("old2", Q) is None
    assert (await record(backend, "recent")).status == JobStatus.DEAD


async def test_dead_letters_are_unbounded_by_default(backend: Backend) -> None:
    job_ids = [f"j{i}" for i in range(50)]

    await kill(backend, job_ids)

    assert sorted(await dead_ids_newest_first(backend)) == sorted(job_ids)


# ------------------------------------------------------------------------------------------------
# Damaged dead letters
#
# Damaged data costs only itself (see the damaged section of test_claims.py).
# ------------------------------------------------------------------------------------------------


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
