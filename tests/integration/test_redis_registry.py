"""Redis registry of queue names: a ZSET of last uses, migrated from an older corq's SET."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import cast

import pytest
from redis.asyncio import Redis

from corq.backends.base import NewJob
from corq.backends.redis import RedisBackend
from corq.backends.redis.keys import RedisKeys

HOUR_MS = 3_600_000


def job(job_id: str, queue: str) -> NewJob:
    now = time.time_ns() // 1_000_000
    return NewJob(id=job_id, task="t", queue=queue, payload=b"", enqueued_at_ms=now, run_at_ms=now)


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


@pytest.mark.parametrize("first_use", ["list", "enqueue"])
async def test_a_registry_left_as_a_set_by_an_older_corq_is_migrated(
    backend: RedisBackend, raw: Redis, prefix: str, first_use: str
) -> None:
    # Given the SET of queue names an older corq kept (one name not UTF-8)
    registry = RedisKeys(prefix).queues
    await raw.sadd(registry, "alpha", "beta", b"bad\xff")

    # When a backend first lists the queues, or first enqueues
    before_ms = time.time_ns() // 1_000_000
    if first_use == "enqueue":
        await backend.enqueue_jobs([job("a", "gamma")])
    names = await backend.list_queues()

    # Then the registry is a ZSET with every old name, used "now" (so none is pruned at once)
    assert await raw.type(registry) == b"zset"
    expected = ["alpha", "beta"] + (["gamma"] if first_use == "enqueue" else [])
    assert names == expected
    scores = dict(
        cast(list[tuple[bytes, float]], await raw.zrange(registry, 0, -1, withscores=True))
    )
    assert set(scores) == {name.encode() for name in expected} | {b"bad\xff"}
    assert all(score >= before_ms - 1_000 for score in scores.values())
    assert await backend.prune_queues(None, HOUR_MS) == []


async def test_a_pruned_queue_leaves_no_keys_behind(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given a queue whose only job was enqueued, woken for and cancelled
    await backend.enqueue_jobs([job("a", "old")])
    assert await backend.cancel_job("a", "old", None)
    keys = RedisKeys(prefix).queue("old")
    assert await raw.exists(keys.seq, keys.wake) == 2

    # When it is pruned as idle
    assert await backend.prune_queues(time.time_ns() // 1_000_000 + 2 * HOUR_MS, HOUR_MS) == ["old"]

    # Then only the cancelled record is left, and it expires
    left = await raw.keys(f"{keys.tag}:*")
    assert left == [keys.job("a").encode()]
    assert await raw.pttl(keys.job("a")) > 0
    assert await backend.list_queues() == []


async def test_a_backend_touches_a_queue_name_once_an_hour(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    registry = RedisKeys(prefix).queues
    await backend.enqueue_jobs([job("a", "q")])
    first = await raw.zscore(registry, "q")
    await raw.zadd(registry, {"q": 1})  # as if long ago

    # A second enqueue within the hour does not write the registry again
    await backend.enqueue_jobs([job("b", "q")])
    assert await raw.zscore(registry, "q") == 1

    # but another backend (another process) notes its own use
    other = backend.clone()
    try:
        await other.enqueue_jobs([job("c", "q")])
    finally:
        await other.close()
    again = await raw.zscore(registry, "q")
    assert first is not None
    assert again is not None
    assert again >= first
