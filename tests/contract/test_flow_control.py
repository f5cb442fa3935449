"""Broker contract, FlowControl port and the flow-control rules claims apply.

Methods: ``set_rules``, ``get_rules``, ``flow_stats``, and what ``claim_jobs`` and the ends
of an attempt do with them: lanes visited round robin between keys (with weights and
priorities), task and key concurrency (slots taken at claim, given back at each end of the
attempt), rate limits (throttled or dropped), expiry by deadline. See docs/design.md,
"Flow control", and the port docstrings in corq/backends/base.py.
"""

from __future__ import annotations

import dataclasses
import random
from enum import StrEnum

import pytest

from corq.backends import Backend
from corq.backends.base import ClaimedJob, TaskRules
from corq.flow import Dedupe, OnDuplicate, OverLimit, Rate
from corq.job import JobStatus
from tests.contract.flow import (
    LIMITED,
    OTHER,
    PLAIN,
    assert_within_rate,
    claim_ids,
    claim_jobs,
    counted,
    job,
    key_slot,
    keyed,
    keys_of,
    per_second,
    running,
    set_rules,
    stats,
    status,
    task_slot,
)
from tests.contract.jobs import (
    LATER,
    LEASE_MS,
    T0,
    Q,
    completion,
    failure,
    record,
    register,
    release,
)
from tests.contract.workflows import Hands, dag, error_of, settle, wjob

S = JobStatus
HOURLY = Rate.parse("/h")

# ------------------------------------------------------------------------------------------------
# Rules: stored per queue and task, replaced, removed
# ------------------------------------------------------------------------------------------------


async def test_rules_read_back_as_stored(backend: Backend) -> None:
    limited = TaskRules(
        task=LIMITED,
        concurrency=5,
        keyed=True,
        key_concurrency=2,
        rate=Rate.parse("50/s"),
        key_rate=Rate.parse("5/10s"),
        over_limit=OverLimit.DROP,
        key_weights={"big": 3, "vip": 10},
    )
    other = TaskRules(task=OTHER, concurrency=1)

    await set_rules(backend, other, limited)

    assert await backend.get_rules(Q) == [limited, other]
    assert await backend.get_rules("elsewhere") == []


async def test_set_rules_replaces_a_tasks_rules_and_keeps_the_others(backend: Backend) -> None:
    await set_rules(
        backend, TaskRules(task=LIMITED, concurrency=5), TaskRules(task=OTHER, rate=HOURLY)
    )

    replaced = TaskRules(task=LIMITED, keyed=True, key_concurrency=1)
    await set_rules(backend, replaced)

    assert await backend.get_rules(Q) == [replaced, TaskRules(task=OTHER, rate=HOURLY)]


async def test_rules_that_are_no_longer_active_remove_the_task(backend: Backend) -> None:
    await set_rules(
        backend, TaskRules(task=LIMITED, concurrency=5), TaskRules(task=OTHER, rate=HOURLY)
    )

    await set_rules(backend, TaskRules(task=LIMITED))

    assert await backend.get_rules(Q) == [TaskRules(task=OTHER, rate=HOURLY)]


async def test_removed_rules_let_the_lanes_drain_without_limits(backend: Backend) -> None:
    # Given a task limited to one running job, with three queued in its lane
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))
    await backend.enqueue_jobs([job("a"), job("b"), job("c")])
    await register(backend, "w1")
    assert await claim_ids(backend, "w1") == ["a"]
    assert await claim_ids(backend, "w1") == []

    # When its rules are removed, the rest of its lane starts at once
    await set_rules(backend, TaskRules(task=LIMITED))
    assert await claim_ids(backend, "w1") == ["b", "c"]


async def test_rules_apply_per_queue(backend: Backend) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1), queue="q1")
    await backend.enqueue_jobs([job(f"a{n}", queue="q1") for n in range(3)])
    await backend.enqueue_jobs([job(f"b{n}", queue="q2") for n in range(3)])
    await register(backend, "w1", queue="q1")
    await register(backend, "w2", queue="q2")

    assert await claim_ids(backend, "w1", queue="q1") == ["a0"]
    assert await claim_ids(backend, "w2", queue="q2") == ["b0", "b1", "b2"]


async def test_rules_apply_to_the_jobs_enqueued_before_them_too(backend: Backend) -> None:
    # Given jobs enqueued before their task had rules (in the plain ready set)
    await backend.enqueue_jobs([job("before1"), job("before2")])
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))
    await backend.enqueue_jobs([job("after1"), job("after2")])
    await register(backend, "w1")

    # Then they are held by the rules as the later ones are: one at a time, in order
    assert await claim_ids(backend, "w1") == ["before1"]


# ------------------------------------------------------------------------------------------------
# Lanes: round robin between keys, weights, priorities
# ------------------------------------------------------------------------------------------------


async def test_a_small_key_is_not_stuck_behind_a_big_backlog(backend: Backend) -> None:
    # Given a key with 1,000 queued jobs, and then a key with 3
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True))
    await backend.enqueue_jobs(keyed("big", "big", 1000))
    await backend.enqueue_jobs(keyed("small", "small", 3))
    await register(backend, "w1")

    # When workers claim a couple of jobs at a time
    first: list[ClaimedJob] = []
    for _ in range(3):
        first += await claim_jobs(backend, "w1", count=2)

    # Then the small key's jobs are among the first six, and each key keeps its order
    assert counted(keys_of(first)) == {"big": 3, "small": 3}
    assert [j.id for j in first if j.key == "small"] == ["small0", "small1", "small2"]
    assert [j.id for j in first if j.key == "big"] == ["big0", "big1", "big2"]


async def test_keys_take_turns_within_one_claim(backend: Backend) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True))
    await backend.enqueue_jobs(keyed("a", "a", 5) + keyed("b", "b", 5) + keyed("c", "c", 1))
    await register(backend, "w1")

    claimed = await claim_jobs(backend, "w1", count=5)

    assert counted(keys_of(claimed)) == {"a": 2, "b": 2, "c": 1}
    assert set(keys_of(claimed[:3])) == {"a", "b", "c"}


async def test_a_key_weight_gives_it_that_many_starts_per_turn(backend: Backend) -> None:
    # Given key "heavy" of weight 3 and key "light" of the default weight 1
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_weights={"heavy": 3}))
    await backend.enqueue_jobs(keyed("h", "heavy", 20) + keyed("l", "light", 20))
    await register(backend, "w1")

    # When claims take two whole rounds (four jobs each)
    claimed = await claim_jobs(backend, "w1", count=4)
    claimed += await claim_jobs(backend, "w1", count=4)

    # Then heavy got three starts for each of light's
    assert counted(keys_of(claimed)) == {"heavy": 6, "light": 2}


async def test_weights_hold_over_many_claims(backend: Backend) -> None:
    await set_rules(
        backend, TaskRules(task=LIMITED, keyed=True, key_weights={"a": 2, "b": 1, "c": 5})
    )
    await backend.enqueue_jobs(keyed("a", "a", 100) + keyed("b", "b", 100) + keyed("c", "c", 100))
    await register(backend, "w1")

    claimed: list[ClaimedJob] = []
    for _ in range(8):
        claimed += await claim_jobs(backend, "w1", count=8)

    # 64 starts, rounds of 8: exactly the weights' shares
    assert counted(keys_of(claimed)) == {"a": 16, "b": 8, "c": 40}


async def test_priority_orders_the_jobs_within_a_key(backend: Backend) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True))
    await backend.enqueue_jobs(
        [
            job("low", key="k", priority=-5),
            job("mid1", key="k"),
            job("high", key="k", priority=7),
            job("mid2", key="k"),
        ]
    )
    await register(backend, "w1")

    assert await claim_ids(backend, "w1") == ["high", "mid1", "mid2", "low"]


async def test_the_lane_whose_head_has_the_higher_priority_goes_first(backend: Backend) -> None:
    # Given a key with a backlog of priority 0, then a key whose job has priority 5
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True))
    await backend.enqueue_jobs(keyed("old", "old", 10))
    await backend.enqueue_jobs([job("urgent", key="new", priority=5), job("later", key="new")])
    await register(backend, "w1")

    # Then the urgent job starts first; then the lanes' heads are equal and take turns
    claimed = await claim_ids(backend, "w1", count=3)
    assert claimed[0] == "urgent"
    assert sorted(claimed[1:]) == ["later", "old0"]


async def test_priorities_compare_across_ruled_tasks_and_plain_jobs(backend: Backend) -> None:
    await set_rules(
        backend, TaskRules(task=LIMITED, keyed=True), TaskRules(task=OTHER, concurrency=9)
    )
    await backend.enqueue_jobs(
        [
            job("plain", task=PLAIN),
            job("keyed", key="k"),
            job("other", task=OTHER, priority=3),
            job("plain-high", task=PLAIN, priority=9),
        ]
    )
    await register(backend, "w1")

    claimed = await claim_ids(backend, "w1", count=4)

    assert claimed[:2] == ["plain-high", "other"]
    assert sorted(claimed[2:]) == ["keyed", "plain"]


async def test_plain_jobs_take_turns_with_the_lanes(backend: Backend) -> None:
    # Given a backlog of plain jobs enqueued before a few jobs of a keyed task
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True))
    await backend.enqueue_jobs([job(f"p{n}", task=PLAIN) for n in range(100)])
    await backend.enqueue_jobs(keyed("k", "k", 2))
    await register(backend, "w1")

    # Then the keyed jobs do not wait for the backlog
    claimed = await claim_ids(backend, "w1", count=4)
    assert {"k0", "k1"} <= set(claimed)


async def test_key_concurrency_one_runs_each_key_strictly_in_order(backend: Backend) -> None:
    # Given two keys with backlogs (one enqueued in two calls), one job of a key at a time
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_concurrency=1))
    await backend.enqueue_jobs(keyed("x", "x", 4))
    await backend.enqueue_jobs(keyed("y", "y", 2))
    await backend.enqueue_jobs([job("x4", key="x")])
    await register(backend, "w1")
    await register(backend, "w2")

    # When two workers claim and finish whatever they get, round after round
    started: dict[str | None, list[str]] = {"x": [], "y": []}
    for _ in range(7):
        held = {worker: await claim_jobs(backend, worker) for worker in ("w1", "w2")}
        both = held["w1"] + held["w2"]
        assert len(set(keys_of(both))) == len(both), f"two of one key at once: {both}"
        for worker, jobs in held.items():
            for j in jobs:
                started[j.key].append(j.id)
            done = [completion(j) for j in jobs]
            assert await backend.complete_jobs(worker, done, 60_000) == [True] * len(jobs)

    # Then each key ran in its enqueue order, one at a time
    assert started == {"x": ["x0", "x1", "x2", "x3", "x4"], "y": ["y0", "y1"]}


# ------------------------------------------------------------------------------------------------
# Concurrency: task and key limits across holders; slots back at every end, not before
# ------------------------------------------------------------------------------------------------


async def test_task_concurrency_holds_across_holders(backend: Backend) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=3))
    await backend.enqueue_jobs([job(f"j{n}") for n in range(10)])
    for worker in ("w1", "w2", "w3"):
        await register(backend, worker)

    assert len(await claim_ids(backend, "w1", count=2)) == 2
    assert len(await claim_ids(backend, "w2", count=10)) == 1
    assert await claim_ids(backend, "w3", count=10) == []
    assert await running(backend, task_slot()) == 3


async def test_key_concurrency_holds_across_holders_and_keys(backend: Backend) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_concurrency=2))
    await backend.enqueue_jobs(keyed("a", "a", 6) + keyed("b", "b", 6))
    for worker in ("w1", "w2", "w3"):
        await register(backend, worker)

    held = await claim_jobs(backend, "w1", count=3)
    held += await claim_jobs(backend, "w2", count=3)
    held += await claim_jobs(backend, "w3", count=3)

    assert counted(keys_of(held)) == {"a": 2, "b": 2}
    assert await running(backend, key_slot("a")) == 2
    assert await running(backend, key_slot("b")) == 2


async def test_task_and_key_concurrency_hold_together(backend: Backend) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=3, keyed=True, key_concurrency=2))
    await backend.enqueue_jobs(keyed("a", "a", 5) + keyed("b", "b", 5) + keyed("c", "c", 5))
    await register(backend, "w1")
    await register(backend, "w2")

    held = await claim_jobs(backend, "w1", count=10) + await claim_jobs(backend, "w2", count=10)

    assert len(held) == 3
    assert max(counted(keys_of(held)).values()) <= 2


class End(StrEnum):
    """The ends of an attempt that give its slots back."""

    COMPLETE = "complete"
    RETRY = "fail with a retry"
    DEAD = "fail dead"
    RELEASE = "release"
    CANCEL = "cancel (a duplicate that cancels the running job)"


async def _end(backend: Backend, held: ClaimedJob, how: End) -> None:
    """End `held` (claimed by w1) as `how` says."""
    if how is End.COMPLETE:
        assert await backend.complete_jobs("w1", [completion(held)], 60_000) == [True]
    elif how is End.RETRY:
        assert await backend.fail_jobs("w1", [failure(held, T0 + 1000)], 60_000) == [True]
    elif how is End.DEAD:
        assert await backend.fail_jobs("w1", [failure(held)], 60_000) == [True]
    elif how is End.RELEASE:
        assert await backend.release_jobs("w1", [release(held)]) == [True]
    else:
        cancel = Dedupe(on_duplicate=OnDuplicate.CANCEL)
        duplicate = job("new", key="k", unique_key="u", dedupe=cancel)
        [admitted] = await backend.admit_jobs([duplicate])
        assert admitted.job_id == "new"
        assert await status(backend, held.id) is S.CANCELLED


@pytest.mark.parametrize("how", list(End))
async def test_each_end_of_an_attempt_gives_its_slots_back(backend: Backend, how: End) -> None:
    # Given a task and key at their limit of one, a job of the same key waiting
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1, keyed=True, key_concurrency=1))
    await backend.enqueue_jobs([job("a", key="k", unique_key="u"), job("b", key="k")])
    await register(backend, "w1")
    await register(backend, "w2")
    [held] = await claim_jobs(backend, "w1")
    assert await claim_ids(backend, "w2", T0 + 1) == []

    # When the attempt ends
    await _end(backend, held, how)

    # Then its slots are free: another job of the task and key starts, one only
    assert len(await claim_ids(backend, "w2", T0 + 2)) == 1
    assert await claim_ids(backend, "w2", T0 + 3) == []
    assert await running(backend, task_slot()) == 1
    assert await running(backend, key_slot("k")) == 1


async def test_limits_hold_through_many_claims_and_ends(backend: Backend) -> None:
    # Given three workers serving a task of concurrency 3 and key concurrency 1, 4 keys
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=3, keyed=True, key_concurrency=1))
    await backend.enqueue_jobs([j for k in "abcd" for j in keyed(k, k, 6)])
    workers = ("w1", "w2", "w3")
    for worker in workers:
        await register(backend, worker)
    pick = random.Random(10)
    running_now: dict[str, tuple[str, ClaimedJob]] = {}  # job id -> (holder, job)
    ended: set[str] = set()

    # When they claim, complete, fail (retried later or dead) and release, in turns
    for step in range(200):
        now = T0 + step * 10
        worker = workers[step % 3]
        for held in await claim_jobs(backend, worker, now, count=pick.randint(1, 3)):
            running_now[held.id] = (worker, held)

        # Then the limits hold at every step, as the workers and the broker count them
        keys = counted([held.key for _, held in running_now.values()])
        assert len(running_now) <= 3, running_now
        assert all(n == 1 for n in keys.values()), keys
        assert await running(backend, task_slot()) == len(running_now)

        for job_id in pick.sample(sorted(running_now), k=min(len(running_now), 1)):
            await _end_at_random(backend, pick, *running_now.pop(job_id), now, ended)
        if len(ended) == 24:
            break

    # And every job ran to its end
    assert len(ended) == 24


async def _end_at_random(
    backend: Backend,
    pick: random.Random,
    worker: str,
    held: ClaimedJob,
    now: int,
    ended: set[str],
) -> None:
    """Complete `held` mostly; else fail it (retried soon, or dead) or release it."""
    roll = pick.random()
    if roll < 0.6:
        done = await backend.complete_jobs(worker, [completion(held, at_ms=now)], 60_000)
        ended.add(held.id)
    elif roll < 0.75:
        done = await backend.fail_jobs(worker, [failure(held, now + 15, at_ms=now)], 60_000)
    elif roll < 0.85:
        done = await backend.fail_jobs(worker, [failure(held, at_ms=now)], 60_000)
        ended.add(held.id)
    else:
        done = await backend.release_jobs(worker, [release(held)])
    assert done == [True]


@pytest.mark.parametrize("how", ["retry", "dead-letter retry"])
async def test_a_job_made_ready_again_waits_in_its_lane(backend: Backend, how: str) -> None:
    # Given a task limited to one running job, whose first job fails
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))
    await backend.enqueue_jobs([job("a"), job("b")])
    await register(backend, "w1")
    [held] = await claim_jobs(backend, "w1")
    if how == "retry":
        assert await backend.fail_jobs("w1", [failure(held, T0 + 10)], 60_000) == [True]
    else:
        assert await backend.fail_jobs("w1", [failure(held)], 60_000) == [True]
        assert await backend.retry_dead(Q, ["a"], T0 + 10) == 1

    # When it is ready again, it is back under its task's limit: one of the two starts
    assert len(await claim_ids(backend, "w1", T0 + 10)) == 1
    assert await claim_ids(backend, "w1", T0 + 11) == []
    assert (await stats(backend)).laned == 1


async def test_a_dead_holders_slots_return_when_its_jobs_are_reclaimed(backend: Backend) -> None:
    # Given a worker holding the one slot of a task, then killed
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))
    await backend.enqueue_jobs([job("a"), job("b")])
    await register(backend, "w1", T0)
    assert await claim_ids(backend, "w1", T0) == ["a"]

    # When another worker claims while the dead one's lease still holds: nothing
    await register(backend, "w2", T0 + LEASE_MS - 1)
    assert await backend.reclaim_stalled_jobs(Q, T0 + LEASE_MS - 1, max_deaths=5) == []
    assert await claim_ids(backend, "w2", T0 + LEASE_MS - 1) == []
    assert await running(backend, task_slot()) == 1

    # Then once the lease passed and its jobs are reclaimed, the slot is back
    [reclaimed] = await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=5)
    assert reclaimed.job_id == "a"
    assert len(await claim_ids(backend, "w2", T0 + LATER)) == 1
    assert await running(backend, task_slot()) == 1


async def test_a_cancelled_queued_job_takes_no_slot_and_is_not_handed_out(
    backend: Backend,
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))
    await backend.enqueue_jobs([job("a"), job("b")])
    assert await backend.cancel_job("a", Q, T0 + 1) is True
    await register(backend, "w1")

    assert await claim_ids(backend, "w1", T0 + 2) == ["b"]
    assert (await stats(backend)).laned == 0


async def test_a_parked_lane_does_not_block_other_lanes(backend: Backend) -> None:
    # Given a task at its concurrency, a key at its key concurrency, and jobs of other lanes
    await set_rules(
        backend,
        TaskRules(task=LIMITED, concurrency=1),
        TaskRules(task=OTHER, keyed=True, key_concurrency=1),
    )
    await backend.enqueue_jobs([job(f"l{n}") for n in range(5)])
    await backend.enqueue_jobs(keyed("x", "x", 3, task=OTHER) + keyed("y", "y", 1, task=OTHER))
    await backend.enqueue_jobs([job("p0", task=PLAIN), job("p1", task=PLAIN)])
    await register(backend, "w1")

    # When claims go on while the limited lanes are parked
    claimed = await claim_ids(backend, "w1", count=2)
    claimed += await claim_ids(backend, "w1", count=10)
    claimed += await claim_ids(backend, "w1", count=10)

    # Then every other lane gave its jobs: one of each limited lane, all the rest
    assert sorted(claimed) == ["l0", "p0", "p1", "x0", "y0"]
    assert await status(backend, "l1") is S.QUEUED
    assert await status(backend, "x1") is S.QUEUED
    assert (await stats(backend)).parked >= 2


async def test_raising_a_concurrency_unparks_its_lane(backend: Backend) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))
    await backend.enqueue_jobs([job(f"j{n}") for n in range(5)])
    await register(backend, "w1")
    assert await claim_ids(backend, "w1") == ["j0"]
    assert await claim_ids(backend, "w1") == []

    # When the limit is raised, the next claim starts jobs up to the new limit, no end needed
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=3))
    assert await claim_ids(backend, "w1") == ["j1", "j2"]
    assert (await stats(backend)).parked == 1


async def test_raising_a_key_concurrency_unparks_its_keys(backend: Backend) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_concurrency=1))
    await backend.enqueue_jobs(keyed("a", "a", 3) + keyed("b", "b", 3))
    await register(backend, "w1")
    assert sorted(await claim_ids(backend, "w1")) == ["a0", "b0"]
    assert await claim_ids(backend, "w1") == []

    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_concurrency=2))
    assert sorted(await claim_ids(backend, "w1")) == ["a1", "b1"]


async def test_a_lowered_concurrency_lets_running_jobs_finish(backend: Backend) -> None:
    # Given three jobs running under a concurrency of 3, lowered to 1
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=3))
    await backend.enqueue_jobs([job(f"j{n}") for n in range(5)])
    await register(backend, "w1")
    held = await claim_jobs(backend, "w1")
    assert [j.id for j in held] == ["j0", "j1", "j2"]
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))

    # Then they are not stopped, and nothing starts until fewer than one runs
    assert await backend.complete_jobs("w1", [completion(held[0])], 60_000) == [True]
    assert await claim_ids(backend, "w1") == []
    assert await backend.complete_jobs("w1", [completion(held[1])], 60_000) == [True]
    assert await claim_ids(backend, "w1") == []
    assert await backend.complete_jobs("w1", [completion(held[2])], 60_000) == [True]
    assert await claim_ids(backend, "w1") == ["j3"]


async def test_flow_stats_count_what_runs_by_task_and_key(backend: Backend) -> None:
    await set_rules(
        backend, TaskRules(task=LIMITED, concurrency=10, keyed=True, key_concurrency=10)
    )
    await backend.enqueue_jobs(keyed("a", "a", 3) + keyed("b", "b", 1))
    await register(backend, "w1")
    held = await claim_jobs(backend, "w1", count=3)
    assert counted(keys_of(held)) in ({"a": 2, "b": 1}, {"a": 3})

    active = (await stats(backend)).active
    assert active.get(task_slot()) == 3
    assert {name: n for name, n in active.items() if name.startswith("k:") and n} == {
        key_slot(k): n for k, n in counted(keys_of(held)).items() if k is not None
    }


# ------------------------------------------------------------------------------------------------
# Rate limits (GCRA): bursts of `count`, then one start per interval
# ------------------------------------------------------------------------------------------------


async def test_a_rate_admits_a_burst_then_throttles_until_next_due(backend: Backend) -> None:
    # Given a task limited to 5 starts a second, with 50 jobs queued
    await set_rules(backend, TaskRules(task=LIMITED, rate=per_second(5)))
    await backend.enqueue_jobs([job(f"j{n:02}") for n in range(50)])
    await register(backend, "w1")

    # When a worker claims: a burst of 5
    assert len(await claim_ids(backend, "w1", T0, count=50)) == 5

    # Then the lane is throttled, and the claim says when the next start is due
    batch = await backend.claim_jobs(Q, "w1", 50, LEASE_MS, T0 + 1)
    assert (batch.jobs, batch.next_due_ms) == ([], T0 + 200)
    assert (await stats(backend)).throttled == 1
    assert await claim_ids(backend, "w1", T0 + 199, count=50) == []
    assert await claim_ids(backend, "w1", T0 + 200, count=50) == ["j05"]
    assert await claim_ids(backend, "w1", T0 + 201, count=50) == []


async def test_promotion_at_a_throttled_lanes_due_time_wakes_waiting_workers(
    backend: Backend,
) -> None:
    # Given a lane throttled after its burst, and the wake signals of that burst used up
    await set_rules(backend, TaskRules(task=LIMITED, rate=per_second(5)))
    await backend.enqueue_jobs([job(f"j{n:02}") for n in range(10)])
    await register(backend, "w1")
    assert len(await claim_ids(backend, "w1", T0, count=10)) == 5
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0 + 1)
    assert (batch.jobs, batch.next_due_ms) == ([], T0 + 200)
    while await backend.wait_for_jobs(Q, 0):
        pass

    # When the worker's promoter runs at that due time
    await backend.promote_due_jobs(Q, T0 + 200)

    # Then a worker waiting for work is woken (it does not sleep until its idle timeout)
    assert await backend.wait_for_jobs(Q, 5)
    assert await claim_ids(backend, "w1", T0 + 200, count=10) == ["j05"]


async def test_starts_over_any_window_stay_within_the_rate(backend: Backend) -> None:
    rate = per_second(10)
    await set_rules(backend, TaskRules(task=LIMITED, rate=rate))
    await backend.enqueue_jobs([job(f"j{n:03}") for n in range(100)])
    await register(backend, "w1")

    # Workers claiming every 25 ms for 3 s
    starts: list[int] = []
    for now in range(T0, T0 + 3000, 25):
        starts += [now] * len(await claim_ids(backend, "w1", now, count=20))

    assert_within_rate(starts, rate, "task rate")
    # The burst, then one start per 100 ms: the limit is used, not only respected
    assert len(starts) >= 10 + 29


async def test_a_task_rate_and_key_rates_hold_together(backend: Backend) -> None:
    task_rate, key_rate = per_second(5), per_second(2)
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, rate=task_rate, key_rate=key_rate))
    await backend.enqueue_jobs([j for k in "abcd" for j in keyed(k, k, 30)])
    await register(backend, "w1")

    # Claims at T0: each key bursts up to 2, the task up to 5
    first = await claim_jobs(backend, "w1", T0, count=50)
    assert len(first) == 5
    assert max(counted(keys_of(first)).values()) <= 2

    # Claims every 50 ms for 3 s
    starts: dict[str, list[int]] = {k: [] for k in "abcd"}
    for j in first:
        assert j.key is not None
        starts[j.key].append(T0)
    for now in range(T0 + 50, T0 + 3000, 50):
        for j in await claim_jobs(backend, "w1", now, count=50):
            assert j.key is not None
            starts[j.key].append(now)

    for key, times in starts.items():
        assert_within_rate(times, key_rate, f"key {key}")
    every = [t for times in starts.values() for t in times]
    assert_within_rate(every, task_rate, "task")
    assert len(every) >= 5 + 10  # the task's limit is the one that binds, and it is used
    assert all(times for times in starts.values()), "a key never started"


async def test_next_due_is_the_earlier_of_a_throttled_lane_and_the_delayed_head(
    backend: Backend,
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, rate=per_second(1)))
    await backend.enqueue_jobs([job("r1"), job("r2"), job("later", task=PLAIN, delay_ms=300)])
    await register(backend, "w1")
    assert await claim_ids(backend, "w1", T0) == ["r1"]

    # The delayed job is due first, then the lane
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0 + 1)
    assert (batch.jobs, batch.next_due_ms) == ([], T0 + 300)
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0 + 300)
    assert ([j.id for j in batch.jobs], batch.next_due_ms) == (["later"], T0 + 1000)
    assert await claim_ids(backend, "w1", T0 + 1000) == ["r2"]


async def test_a_key_rate_throttles_its_key_only(backend: Backend) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_rate=per_second(1)))
    await backend.enqueue_jobs(keyed("a", "a", 3) + keyed("b", "b", 1))
    await register(backend, "w1")
    assert sorted(await claim_ids(backend, "w1", T0)) == ["a0", "b0"]

    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0 + 1)
    assert (batch.jobs, batch.next_due_ms) == ([], T0 + 1000)
    await backend.enqueue_jobs([job("b1", key="b", at_ms=T0 + 2)])
    assert await claim_ids(backend, "w1", T0 + 999) == []
    assert sorted(await claim_ids(backend, "w1", T0 + 1000)) == ["a1", "b1"]


async def test_a_throttled_lane_does_not_block_other_lanes(backend: Backend) -> None:
    await set_rules(
        backend,
        TaskRules(task=LIMITED, rate=Rate.parse("/h")),
        TaskRules(task=OTHER, keyed=True, key_rate=Rate.parse("/h")),
    )
    await backend.enqueue_jobs([job("l0"), job("l1")])
    await backend.enqueue_jobs(keyed("x", "x", 2, task=OTHER) + keyed("y", "y", 2, task=OTHER))
    await backend.enqueue_jobs([job("p0", task=PLAIN), job("p1", task=PLAIN)])
    await register(backend, "w1")

    claimed = await claim_ids(backend, "w1", count=3)
    claimed += await claim_ids(backend, "w1", T0 + 1, count=3)
    claimed += await claim_ids(backend, "w1", T0 + 2, count=3)

    assert sorted(claimed) == ["l0", "p0", "p1", "x0", "y0"]
    assert (await stats(backend)).throttled >= 2


async def test_over_a_dropping_rate_jobs_end_expired_as_dropped(backend: Backend) -> None:
    # Given a task of 2 starts a second whose jobs over the limit are dropped
    await set_rules(backend, TaskRules(task=LIMITED, rate=per_second(2), over_limit=OverLimit.DROP))
    await backend.enqueue_jobs([job(f"j{n}") for n in range(5)])
    await register(backend, "w1")

    # When workers claim within that second
    claimed = await claim_ids(backend, "w1", T0, count=10)
    claimed += await claim_ids(backend, "w1", T0 + 1, count=10)

    # Then two started; the others ended expired, saying why, and were counted
    assert claimed == ["j0", "j1"]
    for job_id in ("j2", "j3", "j4"):
        dropped = await record(backend, job_id)
        assert dropped.status is S.EXPIRED
        assert dropped.error is not None
        assert "dropped" in dropped.error, dropped.error
        assert dropped.attempt == 0
    assert (await stats(backend)).dropped == 3

    # And a job enqueued once the rate allows starts again
    await backend.enqueue_jobs([job("next", at_ms=T0 + 500)])
    assert await claim_ids(backend, "w1", T0 + 500) == ["next"]


# ------------------------------------------------------------------------------------------------
# Expiry: a job not started by its start_by_ms ends expired
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [PLAIN, LIMITED])
async def test_a_job_past_its_deadline_expires_at_claim(backend: Backend, task: str) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=5))
    await backend.enqueue_jobs(
        [job("late", task=task, start_by_ms=T0 + 100), job("fine", task=task, start_by_ms=T0 + 999)]
    )
    await register(backend, "w1")

    assert await claim_ids(backend, "w1", T0 + 101) == ["fine"]

    expired = await record(backend, "late")
    assert (expired.status, expired.attempt) == (S.EXPIRED, 0)
    assert (await stats(backend)).expired == 1
    assert await claim_ids(backend, "w1", T0 + 102) == []
    if task == LIMITED:
        assert await running(backend, task_slot()) == 1  # the expired job took no slot
        assert (await stats(backend)).laned == 0


async def test_a_job_started_in_time_is_not_expired_later(backend: Backend) -> None:
    # Given a job claimed before its deadline, whose attempt fails and retries after it
    await backend.enqueue_jobs([job("a", task=PLAIN, start_by_ms=T0 + 100)])
    await register(backend, "w1")
    [held] = await claim_jobs(backend, "w1", T0 + 50)
    assert await backend.fail_jobs("w1", [failure(held, T0 + 500)], 60_000) == [True]

    # Then the deadline was for its first start: the retry runs
    [again] = await claim_jobs(backend, "w1", T0 + 500)
    assert (again.id, again.attempt) == ("a", 2)
    assert (await stats(backend)).expired == 0


@pytest.mark.parametrize("task", [PLAIN, LIMITED])
async def test_a_scheduled_job_past_its_deadline_expires_at_promotion(
    backend: Backend, task: str
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=5))
    await backend.enqueue_jobs(
        [
            job("late", task=task, delay_ms=1000, start_by_ms=T0 + 1500),
            job("fine", task=task, delay_ms=1000, start_by_ms=T0 + 9000),
        ]
    )
    assert await status(backend, "late") is S.SCHEDULED

    await backend.promote_due_jobs(Q, T0 + 2000)

    assert await status(backend, "late") is S.EXPIRED
    assert await status(backend, "fine") is S.QUEUED
    assert (await stats(backend)).expired == 1
    await register(backend, "w1", T0 + 2000)
    assert await claim_ids(backend, "w1", T0 + 2000) == ["fine"]


async def test_an_expired_workflow_job_fails_its_dependents(backend: Backend) -> None:
    # Given a workflow a → b whose root must start by T0 + 100
    plain = wjob("a")
    root = dataclasses.replace(plain, job=dataclasses.replace(plain.job, start_by_ms=T0 + 100))
    child = wjob("b", "a")
    assert await backend.enqueue_workflow(dag(root, child), T0) is True

    # When it is not started in time
    await register(backend, "w1", T0 + 200)
    assert await claim_ids(backend, "w1", T0 + 200) == []
    await settle(backend)

    # Then it ended expired, and its dependent upstream_failed, naming it
    assert await status(backend, "a") is S.EXPIRED
    assert await status(backend, "b") is S.UPSTREAM_FAILED
    error = await error_of(backend, "b")
    assert error is not None
    assert error.startswith("upstream_failed: a ended expired"), error


async def test_released_workflow_jobs_wait_in_their_lane(backend: Backend) -> None:
    # Given a workflow a → (b, c) of a task limited to one running job
    await set_rules(backend, TaskRules(task="tasks.add", concurrency=1))
    assert await backend.enqueue_workflow(dag(wjob("a"), wjob("b", "a"), wjob("c", "a")), None)
    hands = Hands(backend)

    # When a succeeds, its children are released into the task's lane: one runs at a time
    await hands.succeed(await hands.claim_one("a"))
    held = await hands.claim()
    assert len(held) == 1
    assert await hands.claim() == {}
    await hands.succeed(*held.values())
    assert len(await hands.claim()) == 1


# ------------------------------------------------------------------------------------------------
# Counts, and queues without rules
# ------------------------------------------------------------------------------------------------


async def test_queue_stats_count_laned_jobs_as_ready(backend: Backend) -> None:
    await set_rules(
        backend, TaskRules(task=LIMITED, keyed=True), TaskRules(task=OTHER, concurrency=1)
    )
    await backend.enqueue_jobs(keyed("a", "a", 2) + keyed("b", "b", 1))
    await backend.enqueue_jobs([job("o1", task=OTHER), job("o2", task=OTHER)])
    await backend.enqueue_jobs([job("p1", task=PLAIN), job("d1", task=PLAIN, delay_ms=99)])

    [queue] = await backend.queue_stats([Q])
    assert (queue.ready, queue.delayed, queue.in_flight) == (6, 1, 0)
    assert (await stats(backend)).laned == 5

    await register(backend, "w1")
    held = await claim_ids(backend, "w1", count=4)
    [queue] = await backend.queue_stats([Q])
    assert (queue.ready, queue.in_flight) == (2, 4)
    assert (await stats(backend)).laned == 2 - int("p1" not in held)


async def test_a_queue_without_rules_claims_as_before(backend: Backend) -> None:
    await backend.enqueue_jobs(
        [
            job("a", task=PLAIN),
            job("b", task=PLAIN, key="k", priority=5),
            job("c", task=PLAIN, key="k"),
            job("d", task=PLAIN, priority=-1),
        ]
    )
    await register(backend, "w1")

    assert await claim_ids(backend, "w1") == ["b", "a", "c", "d"]
    flow = await stats(backend)
    assert (flow.laned, flow.parked, flow.throttled, flow.expired, flow.dropped) == (0, 0, 0, 0, 0)
    assert dict(flow.active) == {}
    assert await backend.get_rules(Q) == []
