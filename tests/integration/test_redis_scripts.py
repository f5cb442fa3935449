"""Redis-specific checks of the broker: scripts, key layout, connections."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
import time
from collections.abc import AsyncIterator
from importlib import resources

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from corq.backends.base import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    Completion,
    NewJob,
    Release,
    WorkerLease,
    damaged_error,
)
from corq.backends.record import (
    CHECKED_FIELDS,
    CLAIMED_FIELDS,
    NEW_FIELDS,
    SHOWN_FIELDS,
)
from corq.backends.redis import RedisBackend
from corq.backends.redis.calls import (
    GENERATED_INCLUDES,
    expand_includes,
    include_source,
    load_source,
    lua_file,
)
from corq.backends.redis.fields import fields_include
from corq.backends.redis.keys import RedisKeys
from corq.backends.redis.scripts import Scripts
from corq.errors import BrokerError
from corq.job import JobStatus

T0 = 1_700_000_000_000
Q = "default"
LUA = resources.files("corq.backends.redis").joinpath("lua")
SCRIPT_NAMES = sorted(p.name.removesuffix(".lua") for p in LUA.iterdir() if p.name.endswith(".lua"))
INCLUDE_FILES = sorted(
    p.name.removesuffix(".lua")
    for p in LUA.joinpath("include").iterdir()
    if p.name.endswith(".lua")
)
INCLUDE_NAMES = sorted([*INCLUDE_FILES, *GENERATED_INCLUDES])
INCLUDE_LINE = re.compile(r'^--- @include "(\w+)"$', re.M)


def new_job(job_id: str, *, queue: str = Q, priority: int = 0) -> NewJob:
    return NewJob(
        id=job_id,
        task="t",
        queue=queue,
        payload=b"{}",
        priority=priority,
        enqueued_at_ms=T0,
        run_at_ms=T0,
    )


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


async def run_one_job(backend: RedisBackend, job_id: str, queue: str = Q) -> None:
    await backend.enqueue_jobs([new_job(job_id, queue=queue)])
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[queue], lease_ms=1000), T0)
    (job,) = (await backend.claim_jobs(queue, "w1", 1, 1000, T0)).jobs
    completion = Completion(
        job_id=job_id, queue=queue, fence=job.fence, result=b"", finished_at_ms=T0
    )
    assert await backend.complete_jobs("w1", [completion], 60_000) == [True]


# -- the scripts -----------------------------------------------------------------------
def test_every_lua_file_has_exactly_one_wrapper() -> None:
    public = {
        name
        for name, _ in inspect.getmembers(Scripts, inspect.isfunction)
        if not name.startswith("_")
    }

    assert SCRIPT_NAMES, "no scripts found"
    assert public - {"run", "run_all"} == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_script_documents_and_names_its_keys_and_args(name: str) -> None:
    source = lua_file(f"{name}.lua")
    header, _, body = source.partition("]]")

    assert header.startswith(f"--[[\n{name}: ")
    assert "Returns:" in header
    for kind in ("KEYS", "ARGV"):
        used = set(re.findall(rf"{kind}\[(\d+)\]", body))
        for index in used:
            assert re.search(rf"^{kind}\[{index}\]", header, re.M), f"{kind}[{index}] undocumented"
            binding = rf"^local \w+ = (\w+\()?{kind}\[{index}\]\)?$"
            assert re.search(binding, body, re.M), f"{kind}[{index}] is not bound to a named local"


@pytest.mark.parametrize("name", INCLUDE_NAMES)
def test_every_include_documents_itself_and_takes_no_keys_or_args(name: str) -> None:
    source = include_source(name)
    header, _, body = source.partition("]]")

    assert header.startswith(f"--[[\n{name}: ")
    # Keys and arguments reach an include only through its callers' named locals.
    assert not re.search(r"\b(KEYS|ARGV)\[", body)


def test_every_include_named_exists_and_every_include_is_used() -> None:
    named = set()
    for text in [lua_file(f"{n}.lua") for n in SCRIPT_NAMES] + list(
        map(include_source, INCLUDE_NAMES)
    ):
        named |= set(INCLUDE_LINE.findall(text))

    assert named == set(INCLUDE_NAMES)
    for name in SCRIPT_NAMES:
        assert not INCLUDE_LINE.search(load_source(name)), f"{name}: an include was not expanded"


def test_includes_expand_in_place_once_and_nested() -> None:
    text = '--- @include "held"\nlocal a = 1\n--- @include "claimed"\n--- @include "held"\n'

    with pytest.raises(ValueError, match="no Lua include named 'claimed'"):
        expand_includes(text, "example")

    expanded = expand_includes(text.replace("claimed", "record"), "example")
    assert expanded.count("local function holds(") == 1
    assert expanded.count("local function read_record(") == 1
    assert expanded.count("local NEW_FIELDS = ") == 1  # record includes fields in turn
    assert "-- (held is included above)" in expanded
    assert expanded.index("local function holds(") < expanded.index("local a = 1")
    assert not INCLUDE_LINE.search(expanded)


def test_a_missing_include_is_named_with_the_includes_that_led_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = '--[[\nbroken: names an include that does not exist.\n]]\n--- @include "nope"\n'
    monkeypatch.setitem(GENERATED_INCLUDES, "broken", lambda: broken)

    with pytest.raises(ValueError, match=r"^example: broken: no Lua include named 'nope'"):
        expand_includes('--- @include "broken"\n', "example")


async def test_the_fields_include_lists_the_record_as_record_py_declares_it(raw: Redis) -> None:
    script = fields_include() + (
        "return {NEW_FIELDS, CLAIMED_FIELDS, SHOWN_FIELDS, CHECKED_FIELDS, "
        "{FIELD_KIND.payload, FIELD_KIND.attempt, tostring(FIELD_DEFAULT.status)}}"
    )

    new, claimed, shown, checked, samples = await raw.eval(script, 0)

    assert [tuple(n.decode() for n in names) for names in (new, claimed, shown, checked)] == [
        NEW_FIELDS,
        CLAIMED_FIELDS,
        SHOWN_FIELDS,
        CHECKED_FIELDS,
    ]
    assert samples == [b"bytes", b"count", b"queued"]


async def test_a_claim_replies_with_the_claimed_fields_in_record_order(
    raw: Redis, prefix: str
) -> None:
    # Given one job enqueued and a registered holder, through the scripts alone
    scripts = Scripts(raw)
    keys = RedisKeys(prefix).queue(Q)
    job = dataclasses.replace(new_job("a"), priority=7)
    await scripts.run(scripts.enqueue_jobs(keys, jobs=[job]))
    await scripts.run(scripts.register_worker(keys, holder="w1", now_ms=T0, lease_ms=1000))

    # When it is claimed, the reply read raw
    call = scripts.claim_jobs(keys, holder="w1", count=1, suspects=0, lease_ms=1000, now_ms=T0)
    reply = await call.script(keys=call.keys, args=call.args)

    # Then after the four header values come the CLAIMED fields, in record order
    assert len(reply) == 4 + len(CLAIMED_FIELDS)
    values = dict(zip(CLAIMED_FIELDS, reply[4:], strict=True))
    assert values == {
        "id": b"a",
        "task": b"t",
        "queue": Q.encode(),
        "payload": b"{}",
        "priority": 7,
        "attempt": 1,
        "failures": 0,
        "deaths": 0,
        "fence": 1,
        "enqueued_at_ms": T0,
        "run_at_ms": T0,
        "suspect": 0,
        # Optional fields the job was not given: '' (a ClaimedJob reads them as None).
        "schedule": b"",
        "tick_ms": b"",
        "workflow": b"",
        "inputs": b"",
        "notify": 0,
        "key": b"",
    }


def test_the_damaged_record_error_is_worded_as_the_contract_says() -> None:
    assert f"local DAMAGED = '{damaged_error('')}'" in lua_file("include/dead.lua")


async def test_scripts_reload_after_script_flush(backend: RedisBackend, raw: Redis) -> None:
    # Given the scripts loaded once, then flushed from Redis
    await run_one_job(backend, "before")
    await raw.script_flush()

    # When used again, alone and pipelined (two queues in one call)
    await run_one_job(backend, "after")
    await raw.script_flush()
    created = await backend.enqueue_jobs([new_job("x", queue="q1"), new_job("y", queue="q2")])

    # Then Redis got them again
    assert created == [True, True]
    job = await backend.get_job("after", Q)
    assert job is not None
    assert job.status == JobStatus.SUCCEEDED


async def test_big_payloads_are_split_across_script_calls(backend: RedisBackend) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    jobs = [
        NewJob(id=f"big{i}", task="t", queue=Q, payload=payload, enqueued_at_ms=T0, run_at_ms=T0)
        for i in range(12)
    ]

    assert await backend.enqueue_jobs(jobs) == [True] * 12

    job = await backend.get_job("big11", Q)
    assert job is not None
    assert job.payload == payload


async def test_deregistering_a_worker_that_holds_jobs_leaves_them_reclaimable(
    backend: RedisBackend,
) -> None:
    # Given a worker that deregisters while still holding a job (a bug upstream)
    await backend.enqueue_jobs([new_job("a")])
    lease = WorkerLease(worker_id="w1", queues=[Q], lease_ms=60_000)
    await backend.register_worker(lease, T0)
    await backend.claim_jobs(Q, "w1", 1, 60_000, T0)

    await backend.deregister_worker(lease, T0)

    # Then the job is not orphaned: reclaim gives it back at once, without a death
    reclaimed = await backend.reclaim_stalled_jobs(Q, T0 + 1, max_deaths=3, ended_only=True)
    assert [(r.job_id, r.released, r.dead) for r in reclaimed] == [("a", True, False)]
    (stats,) = await backend.queue_stats([Q])
    assert (stats.ready, stats.in_flight, stats.workers) == (1, 0, 0)


# -- key layout ------------------------------------------------------------------------
def test_all_keys_of_one_queue_share_a_cluster_slot() -> None:
    keys = RedisKeys("corq").queue("emails:high")
    names = [keys.ready, keys.seq, keys.delayed, keys.wake, keys.workers, keys.dead]
    names += [keys.suspects, keys.departed, keys.reclaiming, keys.reclaim("host:1:w~x")]
    names += [keys.job("j-1"), keys.job("j{2}"), keys.held("host:1:w"), keys.done("j-1")]
    names += [keys.retrying("abc"), keys.waiting, keys.outbox, keys.notify("j{3}")]

    assert len({key_slot(name.encode()) for name in names}) == 1
    assert key_slot(RedisKeys("corq").queue("other").ready.encode()) != key_slot(
        keys.ready.encode()
    )


async def test_only_documented_keys_are_written(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await run_one_job(backend, "a")
    await backend.enqueue_jobs(
        [NewJob(id="b", task="t", queue=Q, payload=b"", enqueued_at_ms=T0, run_at_ms=T0 + 9)]
    )

    keys = {k.decode() if isinstance(k, bytes) else k for k in await raw.keys(f"{prefix}:*")}

    q = RedisKeys(prefix).queue(Q)
    documented = {RedisKeys(prefix).queues, q.ready, q.seq, q.delayed, q.wake, q.workers}
    documented |= {q.dead, q.held("w1"), q.job("a"), q.job("b"), q.suspects, q.departed}
    documented |= {q.reclaiming, q.reclaim("w1"), q.waiting, q.outbox, q.events}
    assert {q.job("a"), q.job("b"), q.delayed, q.workers} <= keys <= documented


async def test_ready_scores_stay_exact_at_the_extremes(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # Given a FIFO counter far along (scores near 2**53, where doubles stop being exact)
    await raw.set(RedisKeys(prefix).queue(Q).seq, 2**43)
    jobs = [new_job(f"lo{i}", priority=PRIORITY_MIN) for i in range(3)]
    jobs += [new_job(f"hi{i}", priority=PRIORITY_MAX) for i in range(3)]
    await backend.enqueue_jobs(jobs)
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=1000), T0)

    # When one is claimed and released, then all are claimed
    (first,) = (await backend.claim_jobs(Q, "w1", 1, 1000, T0)).jobs
    release = Release(job_id=first.id, queue=Q, fence=first.fence, unstarted=True)
    assert await backend.release_jobs("w1", [release]) == [True]
    claimed = (await backend.claim_jobs(Q, "w1", 10, 1000, T0)).jobs

    # Then priority, then FIFO, holds exactly (the released job back at the head)
    assert [j.id for j in claimed] == ["hi0", "hi1", "hi2", "lo0", "lo1", "lo2"]


# -- connections -----------------------------------------------------------------------
async def test_an_unreachable_broker_raises_broker_error(unused_tcp_port: int) -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{unused_tcp_port}/0", socket_timeout_s=0.5)
    try:
        with pytest.raises(BrokerError):
            await backend.ping()
        with pytest.raises(BrokerError):
            await backend.claim_jobs(Q, "w1", 1, 1000, T0)
    finally:
        await backend.close()


async def test_blocking_wait_outlasts_the_socket_timeout(redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, socket_timeout_s=0.3)
    try:
        started = time.perf_counter()
        assert await backend.wait_for_jobs(Q, timeout_s=1.0) is False
        assert time.perf_counter() - started >= 0.9
    finally:
        await backend.close()


async def test_a_backend_stays_in_its_event_loop(backend: RedisBackend) -> None:
    await backend.ping()

    def elsewhere() -> str:
        async def go() -> str:
            with pytest.raises(RuntimeError, match="clone"):
                await backend.ping()
            clone = backend.clone()
            try:
                await clone.ping()
            finally:
                await clone.close()
            return "ok"

        return asyncio.run(go())

    assert await asyncio.to_thread(elsewhere) == "ok"


async def test_a_thousand_waiters_share_one_connection(backend: RedisBackend, raw: Redis) -> None:
    # Given a thousand jobs held by a worker and a waiter on each
    await backend.enqueue_jobs([new_job(f"j{i}") for i in range(1000)])
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=60_000), T0)
    claimed = (await backend.claim_jobs(Q, "w1", 1000, 60_000, T0)).jobs
    clients_before = (await raw.info("clients"))["connected_clients"]
    waiters = [asyncio.create_task(backend.wait_for_job(j.id, Q, timeout_s=20)) for j in claimed]
    await asyncio.sleep(0.5)
    clients_during = (await raw.info("clients"))["connected_clients"]

    # When they all complete
    started = time.perf_counter()
    completions = [
        Completion(job_id=j.id, queue=Q, fence=j.fence, result=b"", finished_at_ms=T0)
        for j in claimed
    ]
    await backend.complete_jobs("w1", completions, 60_000)
    results = await asyncio.wait_for(asyncio.gather(*waiters), 20)

    # Then every waiter woke, over a bounded number of connections
    assert all(r is not None and r.status == JobStatus.SUCCEEDED for r in results)
    assert time.perf_counter() - started < 5
    assert clients_during - clients_before < 100


async def test_a_waiter_survives_a_lost_pubsub_connection(
    backend: RedisBackend, raw: Redis
) -> None:
    # Given a waiter on a running job
    await backend.enqueue_jobs([new_job("a")])
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=60_000), T0)
    (job,) = (await backend.claim_jobs(Q, "w1", 1, 60_000, T0)).jobs
    waiter = asyncio.create_task(backend.wait_for_job("a", Q, timeout_s=10))
    await asyncio.sleep(0.2)

    # When its pub/sub connection is killed, then the job completes
    assert await raw.client_kill_filter(_type="pubsub") >= 1
    await asyncio.sleep(0.3)
    completion = Completion(job_id="a", queue=Q, fence=job.fence, result=b"", finished_at_ms=T0)
    started = time.perf_counter()
    await backend.complete_jobs("w1", [completion], 60_000)

    # Then the waiter still wakes promptly
    result = await asyncio.wait_for(waiter, 10)
    assert result is not None
    assert result.status == JobStatus.SUCCEEDED
    assert time.perf_counter() - started < 1


async def test_heartbeat_cost_does_not_grow_with_jobs_held(redis_url: str, prefix: str) -> None:
    """100,000 jobs in flight must not mean 100,000 writes per heartbeat."""
    import redis.asyncio as aioredis

    from corq.backends import open_backend
    from corq.backends.base import NewJob, WorkerLease

    backend = open_backend(redis_url, prefix=prefix)
    raw = aioredis.Redis.from_url(redis_url)
    lease = WorkerLease(worker_id="w1", queues=("q",), lease_ms=10_000)

    async def commands_for_one_heartbeat() -> int:
        # The fewest of a few tries: a connection opened by the pool adds its handshake.
        costs = []
        for _ in range(3):
            before = (await raw.info("stats"))["total_commands_processed"]
            assert await backend.heartbeat(lease, 2_000) == []
            after = (await raw.info("stats"))["total_commands_processed"]
            costs.append(int(after - before))
        return min(costs)

    try:
        await backend.register_worker(lease, 1_000)
        idle_cost = await commands_for_one_heartbeat()
        # Given 5,000 jobs held by the worker
        jobs = [
            NewJob(
                id=f"j{i}",
                task="t",
                queue="q",
                payload=b"{}",
                enqueued_at_ms=1_000,
                run_at_ms=1_000,
            )
            for i in range(5_000)
        ]
        await backend.enqueue_jobs(jobs)
        for _ in range(5):
            await backend.claim_jobs("q", "w1", 1_000, 10_000, 1_000)
        assert (await backend.queue_stats(["q"]))[0].in_flight == 5_000
        # Then a heartbeat costs exactly what it cost with none
        assert await commands_for_one_heartbeat() == idle_cost
    finally:
        await raw.aclose()
        await backend.close()
