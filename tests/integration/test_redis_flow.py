"""Redis flow control, beyond the contract: where jobs wait (lanes), what parking costs,
the counters after a reclaim, damaged rules, the key layout, and limits under several
claimers at once.

The contract (tests/contract/test_flow_control.py) says what a user observes; these tests
look at the keys the Redis broker keeps (``keys.py``) to check what the contract cannot:
that every step puts a job back in its own lane, that an end unparks in O(1), that no key
leaves the queue's slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import cast

import pytest
from redis.asyncio import Redis

from corq.backends.redis import RedisBackend
from corq.backends.redis.keys import QueueKeys, RedisKeys
from corq.flow import OverLimit, TaskRules
from corq.job import JobStatus
from tests.contract.flow import (
    LIMITED,
    PLAIN,
    claim_ids,
    claim_jobs,
    job,
    key_slot,
    keyed,
    per_second,
    running,
    set_rules,
    stats,
    status,
    task_slot,
)
from tests.contract.jobs import LATER, T0, Q, completion, failure, lease_of, register, release

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


@pytest.fixture
def keys(prefix: str) -> QueueKeys:
    return RedisKeys(prefix).queue(Q)


def lane_of(key: str, task: str = LIMITED) -> str:
    return f"{task}\x1f{key}"


async def members(raw: Redis, zset: str) -> list[str]:
    return [m.decode() for m in cast(list[bytes], await raw.zrange(zset, 0, -1))]


async def lane_field(raw: Redis, keys: QueueKeys, job_id: str) -> str:
    value = cast(bytes | None, await raw.hget(keys.job(job_id), "lane"))
    return (value or b"").decode()


# Lane routing: every step that makes a job ready puts it in its own lane.


async def test_a_ruled_job_waits_in_its_lane_and_a_plain_one_in_ready(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_concurrency=1))
    await backend.enqueue_jobs([job("a", key="k1"), job("p", task=PLAIN)])

    assert await lane_field(raw, keys, "a") == lane_of("k1")
    assert await members(raw, keys.lane(lane_of("k1"))) == ["a"]
    assert await members(raw, keys.ready) == ["p"]
    assert await members(raw, keys.task_keys(LIMITED)) == [lane_of("k1")]
    assert (await backend.queue_stats([Q]))[0].ready == 2
    assert (await stats(backend)).laned == 1


async def test_release_retry_and_dead_letter_retry_go_back_to_the_lane(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True))
    await backend.enqueue_jobs([job("a", key="k1")])
    await register(backend, "w1")
    lane = keys.lane(lane_of("k1"))

    # A release puts it back in its lane
    [held] = await claim_jobs(backend, "w1")
    assert await members(raw, lane) == []
    assert await backend.release_jobs("w1", [release(held)]) == [True]
    assert await members(raw, lane) == ["a"]

    # A retry waits delayed, then its promotion puts it back in the lane
    [held] = await claim_jobs(backend, "w1")
    assert await backend.fail_jobs("w1", [failure(held, T0 + 100)], 60_000) == [True]
    assert await members(raw, lane) == []
    await backend.promote_due_jobs(Q, T0 + 100)
    assert await members(raw, lane) == ["a"]

    # A dead letter retried goes back to the lane too
    [held] = await claim_jobs(backend, "w1", T0 + 100)
    assert await backend.fail_jobs("w1", [failure(held)], 60_000) == [True]
    assert await backend.retry_dead(Q, ["a"], T0 + 200) == 1
    assert await members(raw, lane) == ["a"]
    assert await members(raw, keys.ready) == []


async def test_cancel_takes_a_job_out_of_its_lane_and_its_rotation(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True))
    await backend.enqueue_jobs([job("a", key="k1"), job("b", key="k2")])

    assert await backend.cancel_job("a", Q, T0 + 1)

    assert await members(raw, keys.lane(lane_of("k1"))) == []
    assert await members(raw, keys.task_keys(LIMITED)) == [lane_of("k2")]
    assert (await stats(backend)).laned == 1


# Parking: O(1) per end, never a scan of the parked lanes.


async def _inner_commands(raw: Redis) -> dict[str, int]:
    info = await raw.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in info.items()}


async def _complete_one_cost(
    backend: RedisBackend, raw: Redis, keys: QueueKeys, parked_keys: int, queue: str
) -> dict[str, int]:
    """The commands one completion runs when `parked_keys` keys are parked."""
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_concurrency=1), queue=queue)
    jobs = [j for k in range(parked_keys) for j in keyed(f"{k}-", f"k{k}", 2)]
    await backend.enqueue_jobs([replace(j, queue=queue) for j in jobs])
    await register(backend, "w1", queue=queue)
    held = await claim_jobs(backend, "w1", count=parked_keys, queue=queue)
    assert len(held) == parked_keys
    await claim_jobs(backend, "w1", count=1, queue=queue)  # visits and parks every key
    assert (await stats(backend, queue)).parked == parked_keys
    await raw.config_resetstat()
    done = completion(held[0])
    assert await backend.complete_jobs("w1", [done], 60_000) == [True]
    calls = await _inner_commands(raw)
    # The call itself (and its first load), and the wake token for the freed slot (pushed
    # only while the wake list has room)
    for name in ("info", "evalsha", "script|load", "rpush"):
        calls.pop(name, None)
    return calls


async def test_an_end_unparks_its_key_in_constant_work(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    few = await _complete_one_cost(backend, raw, keys, 3, "few")
    many = await _complete_one_cost(backend, raw, keys, 300, "many")

    # The same commands whatever the number of parked keys, and no scan among them
    assert few == many
    assert not {"smembers", "sscan", "scan", "keys", "hgetall"} & set(many)
    assert (await stats(backend, "many")).parked == 299
    assert await claim_ids(backend, "w1", count=5, queue="many") == ["0-1"]


async def test_a_parked_group_comes_back_when_a_slot_frees(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))
    await backend.enqueue_jobs([job("a"), job("b")])
    await register(backend, "w1")
    [held] = await claim_jobs(backend, "w1", count=5)
    assert await claim_ids(backend, "w1") == []
    assert cast(set[bytes], await raw.smembers(keys.parked)) == {b"t:" + LIMITED.encode()}

    assert await backend.complete_jobs("w1", [completion(held)], 60_000) == [True]

    assert await raw.scard(keys.parked) == 0
    assert await members(raw, keys.groups) == [LIMITED]
    assert await claim_ids(backend, "w1") == ["b"]


# Counters: a dead worker's slots come back with its reclaimed jobs.


async def test_a_reclaim_gives_a_dead_workers_slots_back(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, concurrency=2, key_concurrency=1))
    await backend.enqueue_jobs(keyed("a", "k1", 2) + keyed("b", "k2", 2))
    await register(backend, "w1")
    assert sorted(await claim_ids(backend, "w1", count=5)) == ["a0", "b0"]
    assert await running(backend, task_slot()) == 2

    # w1 dies; its lease passes and the reclaimer takes its jobs back
    await backend.reclaim_stalled_jobs(Q, T0 + LATER, 3)

    assert (await stats(backend)).active == {}
    assert await raw.scard(keys.parked) == 0
    assert await raw.hget(keys.job("a0"), "limited") == b"0"
    await backend.register_worker(lease_of("w2"), T0 + LATER)
    claimed = await claim_ids(backend, "w2", T0 + LATER, count=5)
    assert sorted(claimed) == ["a0", "b0"]  # back at the head of their lanes
    assert await running(backend, key_slot("k1")) == 1


# Rates: the throttled lane's due time is the claim's next_due_ms.


async def test_a_throttled_key_waits_in_throttled_until_due(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_rate=per_second(2)))
    await backend.enqueue_jobs(keyed("a", "k1", 5))
    await backend.enqueue_jobs([job("late", key="k2", delay_ms=5_000)])
    await register(backend, "w1")

    assert await claim_ids(backend, "w1", count=5) == ["a0", "a1"]
    batch = await backend.claim_jobs(Q, "w1", 5, 30_000, T0 + 1)

    assert batch.jobs == []
    assert batch.next_due_ms == T0 + 500
    due = cast(list[tuple[bytes, float]], await raw.zrange(keys.throttled, 0, -1, withscores=True))
    assert due == [(f"k:{lane_of('k1')}".encode(), float(T0 + 500))]
    assert await claim_ids(backend, "w1", T0 + 500) == ["a2"]


async def test_a_dropping_rate_ends_its_popped_jobs_expired_and_counts_them(
    backend: RedisBackend,
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, rate=per_second(1), over_limit=OverLimit.DROP))
    await backend.enqueue_jobs([job(f"j{n}") for n in range(3)])
    await register(backend, "w1")

    assert await claim_ids(backend, "w1", count=5) == ["j0"]

    assert await status(backend, "j1") is JobStatus.EXPIRED
    assert (await stats(backend)).dropped == 2
    assert (await stats(backend)).laned == 0


# Damaged rules: they limit nothing, and never break a claim or an enqueue.


async def test_a_damaged_rule_value_limits_nothing_and_is_left_out_of_get_rules(
    backend: RedisBackend, raw: Redis, keys: QueueKeys, caplog: pytest.LogCaptureFixture
) -> None:
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))
    await backend.enqueue_jobs([job("a"), job("b")])
    for value in (b"{not json", b'{"c":0}', b'{"r":[1]}', b"[]"):
        await raw.hset(keys.rules, LIMITED, value)
        assert await backend.get_rules(Q) == []
    assert "damaged" in caplog.text
    await register(backend, "w1")

    # Its lanes drain without limits; new jobs go to the plain ready set
    assert sorted(await claim_ids(backend, "w1", count=5)) == ["a", "b"]
    await backend.enqueue_jobs([job("c")])
    assert await lane_field(raw, keys, "c") == ""
    assert await claim_ids(backend, "w1", count=5) == ["c"]

    # set_rules writes it again
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=1))
    assert [r.concurrency for r in await backend.get_rules(Q)] == [1]


# Key layout: everything stays in the queue's slot.


async def test_every_flow_key_is_in_the_queues_slot(
    backend: RedisBackend, raw: Redis, keys: QueueKeys, prefix: str
) -> None:
    await set_rules(
        backend,
        TaskRules(task=LIMITED, keyed=True, concurrency=3, key_concurrency=1, rate=per_second(5)),
    )
    await backend.enqueue_jobs(keyed("a", "k1", 3) + keyed("b", "k2", 3))
    await backend.enqueue_jobs([job("x", key="k3", start_by_ms=T0 + 10)])
    await register(backend, "w1")
    await claim_jobs(backend, "w1", count=10)
    await claim_jobs(backend, "w1", T0 + 20, count=10)

    names = [k.decode() for k in cast(list[bytes], await raw.keys(f"{prefix}:*"))]
    assert names
    assert all(n.startswith(keys.tag + ":") for n in names if n != f"{prefix}:queues"), names
    expected = {keys.rules, keys.parked, keys.active, keys.tat, keys.flow}
    assert expected <= set(names)


# Several claimers at once: the limits hold cluster-wide.


@pytest.mark.slow
async def test_concurrent_claimers_never_run_more_than_the_limits(
    redis_url: str, prefix: str
) -> None:
    task_limit, key_limit, key_names = 4, 1, ["k0", "k1", "k2", "k3", "k4", "k5"]
    brokers = [RedisBackend(redis_url, prefix=prefix) for _ in range(5)]
    first = brokers[0]
    await set_rules(
        first,
        TaskRules(task=LIMITED, keyed=True, concurrency=task_limit, key_concurrency=key_limit),
    )
    await first.enqueue_jobs([j for k in key_names for j in keyed(f"{k}-", k, 20)])
    running_now: dict[str, int] = {}
    peak = {"task": 0, "key": 0}
    done: list[str] = []

    async def claimer(broker: RedisBackend, name: str) -> None:
        await register(broker, name, None)
        while len(done) < 20 * len(key_names):
            batch = await broker.claim_jobs(Q, name, 2, 30_000, None)
            for held in batch.jobs:
                key = held.key or ""
                running_now[key] = running_now.get(key, 0) + 1
                peak["task"] = max(peak["task"], sum(running_now.values()))
                peak["key"] = max(peak["key"], running_now[key])
            for held in batch.jobs:
                running_now[held.key or ""] -= 1  # before the broker frees the slot
                assert await broker.complete_jobs(name, [completion(held)], 60_000) == [True]
                done.append(held.id)
            if not batch.jobs:
                await broker.wait_for_jobs(Q, 0.05)

    try:
        await asyncio.gather(*(claimer(b, f"c{n}") for n, b in enumerate(brokers)))
    finally:
        for b in brokers:
            await b.close()

    assert sorted(done) == sorted(j.id for k in key_names for j in keyed(f"{k}-", k, 20))
    assert peak["task"] <= task_limit
    assert peak["key"] <= key_limit
    assert peak["task"] > 1  # the claimers did run side by side
