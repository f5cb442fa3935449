"""Redis: a damaged record costs only itself, whatever another program wrote into it.

Reproduced before: a non-numeric attempt, fence or priority, a record key of the wrong type
or a delayed job without a priority made a script fail half-way (keeping its earlier
writes), dropping every job popped with it, stopping promotion for the whole queue, or
crashing the worker. Here every field of a record gets every hostile value we could think
of, at every stage of a job's life, next to healthy jobs: no call may fail, the healthy
jobs must go on as usual, and no job may end up in two places at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import cast

import pytest
from redis.asyncio import Redis

from corq.backends.base import BATCH, ClaimedJob, HeldJob, Release, damaged_error
from corq.backends.redis import RedisBackend
from corq.backends.redis.keys import QueueKeys, RedisKeys
from corq.job import JobStatus
from tests.contract.conftest import JOB_FIELDS
from tests.contract.jobs import (
    LATER,
    T0,
    Q,
    claim,
    completion,
    failure,
    kill,
    new_job,
    register,
    release,
)

#: Values another program could leave in a field (None: the field removed).
HOSTILE: list[bytes | None] = [
    None,
    b"",
    b"x",
    b"nan",
    b"inf",
    b"-inf",
    b"1e400",
    b"1e300",
    b"1.5",
    b" 7 ",
    b"0x10",
    b"9007199254740993",
    b"-9223372036854775809",
    b"\xff\xfe",
    b"-1",
    b"x" * 10_000,
]
#: Every field scripts read or write, beyond the ones both brokers share.
FIELDS = sorted(JOB_FIELDS | {"id", "queue", "score", "suspect", "isolated"})
HEALTHY = [f"ok{i}" for i in range(3)]
HOLDERS = (b"w1", b"w2")


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


@pytest.fixture
def keys(prefix: str) -> QueueKeys:
    return RedisKeys(prefix).queue(Q)


def place_of(places: dict[bytes, list[bytes]], job_id: str) -> list[bytes]:
    return places.get(job_id.encode(), [])


async def places_of_jobs(raw: Redis, keys: QueueKeys) -> dict[bytes, list[bytes]]:
    """Per job id, the lanes (ready, suspects, delayed, dead) and held sets it is in."""
    places: dict[bytes, list[bytes]] = {}
    for lane in (keys.ready, keys.suspects, keys.delayed, keys.dead):
        for member in cast(list[bytes], await raw.zrange(lane, 0, -1)):
            places.setdefault(member, []).append(lane.encode())
    async for held in raw.scan_iter(match=f"{keys.held_prefix}*"):
        for member in cast(set[bytes], await raw.smembers(held)):
            places.setdefault(member, []).append(held)
    return places


async def assert_settled(raw: Redis, keys: QueueKeys, ids: list[str]) -> None:
    """Each job is in one place: finished (succeeded, no lane), or in exactly one lane or
    held set; and a job a record says is running is in its holder's held set."""
    places = await places_of_jobs(raw, keys)
    assert {m: p for m, p in places.items() if len(p) > 1} == {}
    for job_id in ids:
        kind = await raw.type(keys.job(job_id))
        if kind != b"hash":
            assert kind == b"none" or place_of(places, job_id) == [keys.dead.encode()], job_id
            continue
        status, holder = await raw.hmget(keys.job(job_id), "status", "worker_id")
        if status == b"succeeded":
            assert place_of(places, job_id) == [], job_id
        elif status == b"running" and holder in HOLDERS:
            # (a worker_id another program rewrote says "held by someone else": as
            # legitimate as any claim, so only the test's own holders are checked)
            assert place_of(places, job_id) == [keys.held_prefix.encode() + holder], job_id
        elif status in (b"queued", b"scheduled", b"failed", b"dead"):
            assert len(place_of(places, job_id)) == 1, job_id


def assert_typed(job: ClaimedJob) -> None:
    """What a claim hands out is what the worker expects, whatever the record held."""
    assert isinstance(job.id, str)
    assert isinstance(job.task, str)
    assert isinstance(job.payload, bytes)
    numbers = (job.attempt, job.failures, job.deaths, job.fence, job.priority)
    assert all(type(n) is int for n in (*numbers, job.enqueued_at_ms, job.run_at_ms)), job
    assert job.attempt >= 1


async def claim_and_complete(backend: RedisBackend, worker: str, now_ms: int) -> set[str]:
    """`worker` claims every ready job and completes it: a job handed out must be
    completable. Returns the ids."""
    await register(backend, worker, now_ms)
    jobs = await claim(backend, worker, now_ms, count=1_000)
    for job in jobs:
        assert_typed(job)
    assert await backend.complete_jobs(worker, [completion(j) for j in jobs], 60_000) == [
        True
    ] * len(jobs)
    return {j.id for j in jobs}


def batch_ids(name: str) -> list[str]:
    return [f"{name}{i}" for i in range(len(HOSTILE))]


async def damage(raw: Redis, keys: QueueKeys, field: str, ids: list[str]) -> None:
    """Write HOSTILE[i] into `field` of the i-th job."""
    for job_id, value in zip(ids, HOSTILE, strict=True):
        if value is None:
            await raw.hdel(keys.job(job_id), field)
        else:
            await raw.hset(keys.job(job_id), field, value)


#: An outcome per name, applied to a whole batch of damaged running jobs.
OUTCOMES: dict[str, Callable[[RedisBackend, list[ClaimedJob]], Awaitable[list[bool]]]] = {
    "complete": lambda b, jobs: b.complete_jobs("w1", [completion(j) for j in jobs], 60_000),
    "retry": lambda b, jobs: b.fail_jobs("w1", [failure(j, T0 + 5) for j in jobs], 60_000),
    "bury": lambda b, jobs: b.fail_jobs("w1", [failure(j, None) for j in jobs], 60_000),
    "died": lambda b, jobs: b.fail_jobs("w1", [failure(j, T0 + 5, died=True) for j in jobs], 0),
    "release": lambda b, jobs: b.release_jobs("w1", [release(j) for j in jobs]),
    "release_died": lambda b, jobs: b.release_jobs(
        "w1", [release(j, died=True, suspect=True) for j in jobs]
    ),
    "release_unstarted": lambda b, jobs: b.release_jobs(
        "w1", [release(j, unstarted=True) for j in jobs]
    ),
}


@pytest.mark.parametrize("field", FIELDS)
async def test_a_damaged_ready_job_costs_only_itself(
    backend: RedisBackend, raw: Redis, keys: QueueKeys, field: str
) -> None:
    # Given ready jobs, each damaged another way, beside healthy ones
    damaged = batch_ids("bad")
    await backend.enqueue_jobs([new_job(job_id) for job_id in HEALTHY + damaged])
    await damage(raw, keys, field, damaged)

    # When a worker claims everything and completes what it got
    ran = await claim_and_complete(backend, "w1", T0)

    # Then the healthy ones ran, and each damaged one either ran or is a dead letter (or,
    # a deadline of first start that reads as a time long past, expired unstarted)
    assert set(HEALTHY) <= ran
    dead = {j.id for j in await backend.list_dead(Q, limit=100)}
    expired = {
        job_id
        for job_id in damaged
        if (job := await backend.get_job(job_id, Q)) and job.status is JobStatus.EXPIRED
    }
    assert expired == set() or field == "start_by_ms"
    assert ran | dead | expired == set(HEALTHY + damaged)
    await assert_settled(raw, keys, HEALTHY + damaged)
    await backend.retry_dead(Q, None, T0 + 1)
    await claim_and_complete(backend, "w1", T0 + 1)
    await backend.purge_dead(Q, None)
    await assert_settled(raw, keys, HEALTHY + damaged)


@pytest.mark.parametrize("field", FIELDS)
async def test_a_damaged_delayed_job_costs_only_itself(
    backend: RedisBackend, raw: Redis, keys: QueueKeys, field: str
) -> None:
    damaged = batch_ids("bad")
    await backend.enqueue_jobs([new_job(job_id, delay_ms=1_000) for job_id in HEALTHY + damaged])
    await damage(raw, keys, field, damaged)

    assert await backend.promote_due_jobs(Q, T0 + 1_000) is None

    await assert_settled(raw, keys, HEALTHY + damaged)
    assert set(HEALTHY) <= await claim_and_complete(backend, "w1", T0 + 1_000)
    await assert_settled(raw, keys, HEALTHY + damaged)


@pytest.mark.parametrize("field", FIELDS)
async def test_a_damaged_running_job_costs_only_itself(
    backend: RedisBackend, raw: Redis, keys: QueueKeys, field: str
) -> None:
    # Given w1 running healthy jobs, and per kind of outcome a batch of damaged ones
    batches = {name: batch_ids(name) for name in OUTCOMES}
    every = HEALTHY + [job_id for ids in batches.values() for job_id in ids]
    await backend.enqueue_jobs([new_job(job_id) for job_id in every])
    await register(backend, "w1")
    held = {j.id: j for j in await claim(backend, "w1", count=1_000)}
    assert set(held) == set(every)
    for ids in batches.values():
        await damage(raw, keys, field, ids)

    # When it records each kind of outcome for a batch, and reports progress of one
    for name, ids in batches.items():
        await OUTCOMES[name](backend, [held[job_id] for job_id in ids])
    await backend.set_progress(batches["complete"][0], Q, "w1", 1, 0.5)
    await assert_settled(raw, keys, every)

    # Then what it still holds is listed (or dead-lettered), and each listed job completes
    # under the fence listed: no job is left running, refused by every outcome, with no
    # call to dead-letter it
    listed = await backend.list_held_jobs(Q, "w1")
    assert set(HEALTHY) <= {h.job_id for h in listed}
    done = [replace(completion(held[h.job_id]), fence=h.fence) for h in listed]
    assert await backend.complete_jobs("w1", done, 60_000) == [True] * len(done)
    assert await backend.count_held_jobs(Q, "w1") == 0
    await assert_settled(raw, keys, every)

    # And what was given back runs again, or is a dead letter
    await backend.promote_due_jobs(Q, T0 + 5)
    await claim_and_complete(backend, "w2", T0 + 5)
    await backend.list_dead(Q, limit=1_000)
    await assert_settled(raw, keys, every)


@pytest.mark.parametrize("field", FIELDS)
async def test_a_damaged_job_of_a_dead_worker_costs_only_itself(
    backend: RedisBackend, raw: Redis, keys: QueueKeys, field: str
) -> None:
    damaged = batch_ids("bad")
    await backend.enqueue_jobs([new_job(job_id) for job_id in HEALTHY + damaged])
    await register(backend, "w1")
    assert len(await claim(backend, "w1", count=1_000)) == len(HEALTHY + damaged)
    await damage(raw, keys, field, damaged)

    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + LATER, max_deaths=3)

    assert {r.job_id for r in reclaimed} >= set(HEALTHY)
    await assert_settled(raw, keys, HEALTHY + damaged)
    assert set(HEALTHY) <= await claim_and_complete(backend, "w2", T0 + LATER)
    await assert_settled(raw, keys, HEALTHY + damaged)


@pytest.mark.parametrize("field", FIELDS)
async def test_a_damaged_dead_letter_costs_only_itself(
    backend: RedisBackend, raw: Redis, keys: QueueKeys, field: str
) -> None:
    damaged = batch_ids("bad")
    await kill(backend, HEALTHY + damaged)
    await damage(raw, keys, field, damaged)

    listed = await backend.list_dead(Q, limit=100)
    assert {j.id for j in listed} == set(HEALTHY + damaged)
    assert await backend.retry_dead(Q, None, T0 + 1) >= len(HEALTHY)
    assert set(HEALTHY) <= await claim_and_complete(backend, "w1", T0 + 1)
    await assert_settled(raw, keys, HEALTHY + damaged)
    await backend.purge_dead(Q, None)
    assert await backend.list_dead(Q) == []


async def test_a_full_claim_skips_the_damaged_records_among_a_batch(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    # Given a batch worth of ready jobs, every hundredth one damaged, and ten more behind
    ids = [f"j{i:04}" for i in range(BATCH + 10)]
    await backend.enqueue_jobs([new_job(job_id) for job_id in ids])
    damaged = ids[50:BATCH:100]
    for job_id in damaged:
        await raw.hset(keys.job(job_id), "attempt", "seven")
    await register(backend, "w1")

    # When a worker claims a full batch
    jobs = await claim(backend, "w1", count=BATCH)

    # Then it gets a full batch of healthy ones, all held; the damaged ones are dead letters
    assert [j.id for j in jobs] == [job_id for job_id in ids if job_id not in damaged][:BATCH]
    assert await backend.count_held_jobs(Q, "w1") == BATCH
    assert sorted(j.id for j in await backend.list_dead(Q, limit=100)) == damaged


async def test_an_id_that_is_not_utf8_is_dead_lettered_not_handed_out(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    # Given a job another program queued under an id that is not UTF-8
    await backend.enqueue_jobs([new_job("a")])
    bad_id = b"caf\xe9"
    bad_key = keys.job_prefix.encode() + bad_id
    await raw.copy(keys.job("a"), bad_key)  # type: ignore[arg-type]  # typed str; bytes work
    await raw.hset(bad_key, "id", bad_id)
    await raw.zadd(keys.ready, {bad_id: 0})
    await register(backend, "w1")

    # When a worker claims, then it gets the healthy job only
    assert [j.id for j in await claim(backend, "w1")] == ["a"]

    # and the other is a dead letter saying why, listed and purgeable
    (dead,) = await backend.list_dead(Q)
    assert dead.error == damaged_error("the job id is not valid UTF-8")
    assert await backend.purge_dead(Q, None) == 1


async def test_a_score_that_cannot_be_read_is_refused_by_release_and_dead_lettered_by_listing(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend, "w1")
    a, b = await claim(backend, "w1")
    await raw.hset(keys.job("a"), "score", "nan")

    assert await backend.release_jobs("w1", [Release(job_id="a", queue=Q, fence=a.fence)]) == [
        False
    ]
    assert await backend.list_held_jobs(Q, "w1") == [HeldJob(job_id="b", fence=b.fence)]
    job = await backend.get_job("a", Q)
    assert job is not None
    assert (job.status, job.error) == (
        JobStatus.DEAD,
        damaged_error("score is not a number: 'nan'"),
    )


async def test_a_held_id_whose_key_is_not_a_hash_leaves_the_held_set(
    backend: RedisBackend, raw: Redis, keys: QueueKeys
) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend, "w1")
    a, b = await claim(backend, "w1")
    await raw.delete(keys.job("a"))
    await raw.rpush(keys.job("a"), "not a job")

    assert await backend.complete_jobs("w1", [completion(a), completion(b)], 60_000) == [
        False,
        True,
    ]
    assert await backend.count_held_jobs(Q, "w1") == 0
    job = await backend.get_job("a")
    assert job is not None
    assert (job.status, job.error) == (
        JobStatus.DEAD,
        damaged_error("the key holds a list, not a job hash"),
    )
