"""Broker contract, WorkerFacts port: what each worker publishes about itself.

Methods: ``publish_worker_info``, ``list_worker_info``, ``forget_worker_info``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time

import pytest
import redis.asyncio as aioredis

from corq.backends import Backend
from corq.clock import FakeClock
from corq.worker_info import RunningJob, TaskDurations, WorkerInfo, WorkerState
from tests.contract.conftest import Broker

LEASE_MS = 10_000
TTL_MS = 60_000


def facts(worker_id: str, clock: FakeClock, **changes: object) -> WorkerInfo:
    """A worker's facts as published now (every field set to a value of its own)."""
    info = WorkerInfo(
        worker_id=worker_id,
        host="box-1",
        pid=4242,
        version="1.2.3",
        queues={"emails": 3, "default": 1},
        concurrency=50,
        started_at_ms=clock.now_ms() - 5_000,
        heartbeat_at_ms=clock.now_ms(),
        running=(
            RunningJob(
                job_id="j1",
                queue="emails",
                task="send",
                started_at_ms=clock.now_ms() - 1_500,
                attempt=2,
                timeout_ms=30_000,
                executor="thread",
            ),
            RunningJob(job_id="j2", queue="default", task="resize", started_at_ms=clock.now_ms()),
        ),
        in_flight=2,
        cpu_percent=12.5,
        rss_bytes=123_456_789,
        loop_lag_ms=3.25,
        state=WorkerState.STOPPING,
        counts={"started": 10, "succeeded": 7, "retried": 1, "dead": 1},
        queue_counts={"emails": {"succeeded": 5, "failed": 2}, "default": {"succeeded": 2}},
        durations={"send": TaskDurations(count=40, p50_ms=120.0, p95_ms=900.5)},
    )
    return dataclasses.replace(info, **changes)  # type: ignore[arg-type]  # test values


async def test_published_facts_read_back_field_for_field(backend: Backend) -> None:
    clock = FakeClock()
    info = facts("w1", clock)

    await backend.publish_worker_info(info, TTL_MS)

    assert await backend.list_worker_info(clock.now_ms(), LEASE_MS) == [info]


async def test_a_new_publication_replaces_the_last_and_workers_are_listed_by_id(
    backend: Backend,
) -> None:
    clock = FakeClock()
    await backend.publish_worker_info(facts("w2", clock), TTL_MS)
    await backend.publish_worker_info(facts("w1", clock, running=()), TTL_MS)
    clock.advance(2)
    latest = facts("w1", clock, state=WorkerState.ALIVE)

    await backend.publish_worker_info(latest, TTL_MS)

    listed = await backend.list_worker_info(clock.now_ms(), LEASE_MS)
    assert [i.worker_id for i in listed] == ["w1", "w2"]
    assert listed[0] == latest


async def test_a_worker_not_heard_from_is_lost_then_removed(backend: Backend) -> None:
    # Given two workers; w1 stops publishing
    clock = FakeClock()
    w1 = facts("w1", clock, state=WorkerState.ALIVE)
    await backend.publish_worker_info(w1, TTL_MS)
    await backend.publish_worker_info(facts("w2", clock, state=WorkerState.ALIVE), TTL_MS)

    # When w2 goes on publishing past w1's lease, w1 reads as lost (its facts kept)
    clock.advance(LEASE_MS / 1000 + 1)
    await backend.publish_worker_info(facts("w2", clock, state=WorkerState.ALIVE), TTL_MS)
    listed = await backend.list_worker_info(clock.now_ms(), LEASE_MS)
    assert {i.worker_id: i.state for i in listed} == {
        "w1": WorkerState.LOST,
        "w2": WorkerState.ALIVE,
    }
    assert listed[0] == dataclasses.replace(w1, state=WorkerState.LOST)

    # Then once its ttl has passed, w1 is gone, for every reader
    clock.advance(TTL_MS / 1000)
    await backend.publish_worker_info(facts("w2", clock, state=WorkerState.ALIVE), TTL_MS)
    assert [i.worker_id for i in await backend.list_worker_info(clock.now_ms(), LEASE_MS)] == ["w2"]
    back_in_time = clock.now_ms() - TTL_MS
    assert [i.worker_id for i in await backend.list_worker_info(back_in_time, LEASE_MS)] == ["w2"]


async def test_lost_is_the_readers_judgement_not_stored(backend: Backend) -> None:
    clock = FakeClock()
    await backend.publish_worker_info(facts("w1", clock, state=WorkerState.ALIVE), TTL_MS)
    clock.advance(20)

    assert [i.state for i in await backend.list_worker_info(clock.now_ms(), LEASE_MS)] == [
        WorkerState.LOST
    ]
    patient = await backend.list_worker_info(clock.now_ms(), 30_000)
    assert [i.state for i in patient] == [WorkerState.ALIVE]


async def test_a_forgotten_worker_is_gone_and_forgetting_twice_is_harmless(
    backend: Backend,
) -> None:
    clock = FakeClock()
    await backend.publish_worker_info(facts("w1", clock), TTL_MS)
    await backend.publish_worker_info(facts("w2", clock), TTL_MS)

    await backend.forget_worker_info("w1")
    await backend.forget_worker_info("w1")
    await backend.forget_worker_info("never-seen")

    assert [i.worker_id for i in await backend.list_worker_info(clock.now_ms(), LEASE_MS)] == ["w2"]


async def test_facts_are_cluster_wide_every_backend_on_the_store_sees_them(
    broker: Broker,
) -> None:
    clock = FakeClock()
    writer, reader = broker.open(), broker.open()

    await writer.publish_worker_info(facts("w1", clock), TTL_MS)

    assert [i.worker_id for i in await reader.list_worker_info(clock.now_ms(), LEASE_MS)] == ["w1"]


async def test_the_brokers_clock_judges_when_none_is_given(backend: Backend) -> None:
    # A worker on a real clock publishes with its own time; a reader without a clock
    # (None) is judged by the broker's, the same machine's here.
    clock = FakeClock()
    now = FakeClock(start_ms=time.time_ns() // 1_000_000)
    await backend.publish_worker_info(facts("fresh", now), TTL_MS)
    await backend.publish_worker_info(facts("ancient", clock), TTL_MS)

    listed = await backend.list_worker_info(None, LEASE_MS)

    assert [(i.worker_id, i.state) for i in listed] == [("fresh", WorkerState.STOPPING)]


async def _write_raw_facts(
    broker: Broker, worker_id: str, value: bytes, expires_at_ms: int
) -> None:
    """Facts written by another program (not a WorkerInfo)."""
    if broker.kind == "redis":
        from corq.backends.redis.keys import RedisKeys

        keys = RedisKeys(broker.prefix).workers
        raw = aioredis.Redis.from_url(broker.url)
        try:
            await raw.hset(keys.info, worker_id, value)
            await raw.zadd(keys.expiry, {worker_id: expires_at_ms})
        finally:
            await raw.aclose()
        return
    assert broker.path is not None
    conn = sqlite3.connect(broker.path, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO worker_info (worker_id, info, heartbeat_at_ms, expires_at_ms)"
            " VALUES (?, ?, 0, ?)",
            (worker_id, value, expires_at_ms),
        )
    finally:
        conn.close()


@pytest.mark.parametrize("value", [b"not json", b'{"worker_id": 5}', b"[]"])
async def test_facts_that_do_not_decode_are_skipped_and_still_expire(
    broker: Broker, value: bytes
) -> None:
    # Given a worker's facts beside an entry no corq wrote
    clock = FakeClock()
    backend = broker.open()
    await backend.publish_worker_info(facts("w1", clock), TTL_MS)
    await _write_raw_facts(broker, "junk", value, clock.now_ms() + TTL_MS)

    # Then the readable ones are listed, and the other goes when its time is up
    assert [i.worker_id for i in await backend.list_worker_info(clock.now_ms(), LEASE_MS)] == ["w1"]
    clock.advance(TTL_MS / 1000)
    assert await backend.list_worker_info(clock.now_ms(), LEASE_MS) == []
    await _write_raw_facts(broker, "junk", value, clock.now_ms() + TTL_MS)
    await backend.forget_worker_info("junk")
    assert await backend.list_worker_info(clock.now_ms(), LEASE_MS) == []
