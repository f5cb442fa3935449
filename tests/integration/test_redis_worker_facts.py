"""Redis-specific checks of the WorkerFacts port: its keys and their slot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from corq.backends.redis import RedisBackend
from corq.backends.redis.keys import RedisKeys
from corq.errors import BrokerDataError
from corq.worker_info import WorkerInfo

T0 = 1_700_000_000_000


def facts(worker_id: str) -> WorkerInfo:
    return WorkerInfo(
        worker_id=worker_id,
        host="h",
        pid=1,
        version="v",
        queues={"q": 1},
        concurrency=1,
        started_at_ms=T0,
        heartbeat_at_ms=T0,
    )


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


async def test_facts_live_in_two_documented_keys_of_one_slot(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await backend.publish_worker_info(facts("w1"), 60_000)
    await backend.publish_worker_info(facts("w2"), 60_000)

    written = {k.decode() async for k in raw.scan_iter(match=f"{prefix}:*")}

    keys = RedisKeys(prefix).workers
    assert written == {keys.info, keys.expiry}
    assert key_slot(keys.info.encode()) == key_slot(keys.expiry.encode())
    assert await raw.zscore(keys.expiry, "w1") == T0 + 60_000


async def test_a_key_of_the_wrong_type_is_a_refusal(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await raw.set(RedisKeys(prefix).workers.info, b"not a hash")

    with pytest.raises(BrokerDataError):
        await backend.publish_worker_info(facts("w1"), 60_000)
    with pytest.raises(BrokerDataError):
        await backend.list_worker_info(T0, 10_000)
