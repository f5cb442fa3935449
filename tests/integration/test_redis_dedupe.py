"""Redis-specific checks of admit_jobs: the keys uniqueness and cooldown write, their
pruning, a damaged mapping, and uniqueness under enqueues from several processes."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from corq.backends.base import Admitted, Completion, Failure, NewJob, WorkerLease
from corq.backends.redis import RedisBackend
from corq.backends.redis.keys import RedisKeys
from corq.flow import Dedupe, OnDuplicate, Outcome
from corq.job import JobStatus

T0 = 1_700_000_000_000
Q = "default"


def job(
    job_id: str,
    *,
    unique_key: str | None = None,
    dedupe: Dedupe | None = None,
    at: int = T0,
    payload: bytes = b"{}",
    priority: int = 0,
    task: str = "t",
) -> NewJob:
    return NewJob(
        id=job_id,
        task=task,
        queue=Q,
        payload=payload,
        priority=priority,
        enqueued_at_ms=at,
        run_at_ms=at,
        unique_key=unique_key,
        dedupe=dedupe,
    )


def admitted_as(job_id: str, outcome: Outcome) -> Admitted:
    return Admitted(job_id=job_id, outcome=outcome)


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def run(backend: RedisBackend, job_id: str, at: int = T0) -> int:
    """Claim `job_id` (the only ready job) as w1; its fence."""
    await backend.register_worker(WorkerLease(worker_id="w1", queues=[Q], lease_ms=60_000), at)
    (claimed,) = (await backend.claim_jobs(Q, "w1", 1, 60_000, at)).jobs
    assert claimed.id == job_id
    return claimed.fence


async def complete(backend: RedisBackend, job_id: str, fence: int, at: int) -> bool:
    done = Completion(job_id=job_id, queue=Q, fence=fence, result=b"", finished_at_ms=at)
    (ok,) = await backend.complete_jobs("w1", [done], 60_000)
    return ok


# -- the keys ------------------------------------------------------------------------
async def test_a_unique_job_is_mapped_and_its_end_frees_the_key(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)

    assert await backend.admit_jobs([job("a", unique_key="k")]) == [
        admitted_as("a", Outcome.CREATED)
    ]
    assert await raw.hgetall(keys.unique) == {b"k": b"a"}
    assert await raw.hget(keys.job("a"), "unique_key") == b"k"

    await complete(backend, "a", await run(backend, "a"), T0 + 1)

    assert await raw.exists(keys.unique) == 0
    assert await backend.admit_jobs([job("b", unique_key="k", at=T0 + 2)]) == [
        admitted_as("b", Outcome.CREATED)
    ]


async def test_a_plain_enqueue_writes_no_flow_key(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await backend.enqueue_jobs([job("a"), job("b")])

    names = {k.decode() async for k in raw.scan_iter(f"{prefix}:*")}
    tag = f"{prefix}:{{{Q}}}"
    assert not names & {f"{tag}:unique", f"{tag}:cooldown", f"{tag}:flow"}


async def test_a_plain_enqueue_looks_up_no_flow_key(backend: RedisBackend, raw: Redis) -> None:
    await backend.enqueue_jobs([job("warm")])  # the script loaded, the queue known
    await raw.config_resetstat()

    await backend.enqueue_jobs([job(f"p{n}") for n in range(10)])

    stats = await raw.info("commandstats")
    inner = {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
    # No lookup of a unique key or a cooldown, no count: the plain two-pass write.
    assert "hget" not in inner
    assert "hincrby" not in inner
    assert inner["hset"] == 10  # one write per record, nothing added to it


async def test_a_window_keeps_the_key_until_promotion_prunes_it(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    kept = Dedupe(window_ms=1_000)
    await backend.admit_jobs([job("a", unique_key="k", dedupe=kept)])
    await complete(backend, "a", await run(backend, "a"), T0 + 10)

    assert await raw.zrange(keys.unique_kept, 0, -1, withscores=True) == [(b"k", T0 + 1_010)]
    again = await backend.admit_jobs([job("b", unique_key="k", dedupe=kept, at=T0 + 500)])
    assert again == [admitted_as("a", Outcome.EXISTING)]
    assert await backend.promote_due_jobs(Q, T0 + 600) == T0 + 1_010  # comes back for it

    await backend.promote_due_jobs(Q, T0 + 1_010)

    assert await raw.exists(keys.unique, keys.unique_kept) == 0
    assert await backend.admit_jobs([job("c", unique_key="k", at=T0 + 1_011)]) == [
        admitted_as("c", Outcome.CREATED)
    ]


async def test_pruning_leaves_a_key_a_later_job_took(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    kept = Dedupe(window_ms=1_000)
    await backend.admit_jobs([job("a", unique_key="k", dedupe=kept)])
    await complete(backend, "a", await run(backend, "a"), T0)
    # After the window, before any pruning, a new job takes the key.
    assert await backend.admit_jobs([job("b", unique_key="k", at=T0 + 2_000)]) == [
        admitted_as("b", Outcome.CREATED)
    ]

    await backend.promote_due_jobs(Q, T0 + 2_000)

    assert await raw.hgetall(keys.unique) == {b"k": b"b"}
    assert await backend.admit_jobs([job("c", unique_key="k", at=T0 + 2_001)]) == [
        admitted_as("b", Outcome.EXISTING)
    ]


async def test_a_cooldown_counts_what_it_drops_and_promotion_prunes_it(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    cool = Dedupe(cooldown_ms=1_000)

    first = await backend.admit_jobs([job("a", dedupe=cool), job("b", dedupe=cool, at=T0 + 1)])

    assert first == [admitted_as("a", Outcome.CREATED), admitted_as("a", Outcome.DROPPED)]
    assert await raw.hget(keys.flow, "cooled") == b"1"
    assert (await backend.flow_stats(Q)).cooled == 1
    assert await raw.hgetall(keys.cooldown) == {b"t:t": f"{T0 + 1_000}:a".encode()}
    assert await raw.exists(keys.job("b")) == 0

    await backend.promote_due_jobs(Q, T0 + 1_000)

    assert await raw.exists(keys.cooldown, keys.cooldown_until) == 0
    assert await backend.admit_jobs([job("c", dedupe=cool, at=T0 + 1_000)]) == [
        admitted_as("c", Outcome.CREATED)
    ]


# -- a damaged mapping ----------------------------------------------------------------
@pytest.mark.parametrize("damage", ["gone", "not a hash", "another key"])
async def test_a_mapping_to_a_job_that_does_not_hold_the_key_counts_as_free(
    backend: RedisBackend, raw: Redis, prefix: str, damage: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    await backend.admit_jobs([job("a", unique_key="k")])
    if damage == "gone":
        await raw.delete(keys.job("a"))
    elif damage == "not a hash":
        await raw.delete(keys.job("a"))
        await raw.set(keys.job("a"), "junk")
    else:
        await raw.hset(keys.job("a"), "unique_key", "other")

    assert await backend.admit_jobs([job("b", unique_key="k")]) == [
        admitted_as("b", Outcome.CREATED)
    ]
    assert await raw.hget(keys.unique, "k") == b"b"


async def test_a_unique_map_of_the_wrong_type_refuses_the_call(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    await raw.set(keys.unique, "junk")

    with pytest.raises(Exception, match="WRONGTYPE"):
        await backend.admit_jobs([job("a", unique_key="k")])
    assert await raw.exists(keys.job("a")) == 0
    # A plain enqueue does not look at it.
    assert await backend.enqueue_jobs([job("b")]) == [True]


async def test_an_end_goes_on_when_the_unique_map_is_damaged(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    await backend.admit_jobs([job("a", unique_key="k")])
    fence = await run(backend, "a")
    await raw.delete(keys.unique)
    await raw.set(keys.unique, "junk")

    assert await complete(backend, "a", fence, T0 + 1)

    record = await backend.get_job("a", Q)
    assert record is not None
    assert record.status is JobStatus.SUCCEEDED


async def test_a_damaged_cooldown_window_counts_as_closed(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    await raw.hset(keys.cooldown, "t:t", "junk")

    (admitted,) = await backend.admit_jobs([job("a", dedupe=Dedupe(cooldown_ms=100))])

    assert admitted == admitted_as("a", Outcome.CREATED)
    assert await raw.hget(keys.cooldown, "t:t") == f"{T0 + 100}:a".encode()


# -- the policies, as Redis keeps them -------------------------------------------------
async def test_replace_keeps_the_queued_jobs_place_in_its_new_priority(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    replace = Dedupe(on_duplicate=OnDuplicate.REPLACE)
    await backend.admit_jobs([job("a", unique_key="k"), job("x"), job("y", priority=5)])

    (admitted,) = await backend.admit_jobs(
        [job("b", unique_key="k", dedupe=replace, payload=b"new", priority=5)]
    )

    assert admitted == admitted_as("a", Outcome.REPLACED)
    assert await raw.zrange(keys.ready, 0, -1) == [b"a", b"y", b"x"]  # a before y: FIFO
    record = await backend.get_job("a", Q)
    assert record is not None
    assert record.payload == b"new"
    assert record.priority == 5


async def test_cancel_fences_off_a_running_holder_and_frees_its_holder(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    cancel = Dedupe(on_duplicate=OnDuplicate.CANCEL)
    await backend.admit_jobs([job("a", unique_key="k")])
    fence = await run(backend, "a")

    (admitted,) = await backend.admit_jobs([job("b", unique_key="k", dedupe=cancel, at=T0 + 5)])

    assert admitted == Admitted(job_id="b", outcome=Outcome.CREATED, cancelled="a")
    assert await raw.smembers(keys.held("w1")) == set()
    old = await backend.get_job("a", Q)
    assert old is not None
    assert old.status is JobStatus.CANCELLED
    assert not await complete(backend, "a", fence, T0 + 6)  # its outcome is refused
    assert await raw.hget(keys.unique, "k") == b"b"


async def test_debounce_moves_a_queued_holder_to_the_delayed_set(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    bounce = Dedupe(debounce_ms=100, max_wait_ms=250)
    await backend.admit_jobs([job("a", unique_key="k")])  # queued, no debounce yet

    (admitted,) = await backend.admit_jobs([job("b", unique_key="k", dedupe=bounce, at=T0 + 200)])

    assert admitted == admitted_as("a", Outcome.DEBOUNCED)
    assert await raw.zcard(keys.ready) == 0
    assert await raw.zrange(keys.delayed, 0, -1, withscores=True) == [(b"a", T0 + 250)]
    record = await backend.get_job("a", Q)
    assert record is not None
    assert record.status is JobStatus.SCHEDULED


# -- several producers at once ---------------------------------------------------------
def _enqueue_in_process(
    url: str, prefix: str, worker: int, keys: int, out: multiprocessing.Queue[object]
) -> None:
    async def main() -> list[tuple[str, str]]:
        backend = RedisBackend(url, prefix=prefix)
        try:
            jobs = [job(f"p{worker}-{k}", unique_key=f"key-{k}") for k in range(keys)]
            results = []
            for one in jobs:  # one call each, so the processes interleave
                (admitted,) = await backend.admit_jobs([one])
                results.append((admitted.job_id, admitted.outcome.value))
            return results
        finally:
            await backend.close()

    out.put(asyncio.run(main()))


@pytest.mark.slow
async def test_uniqueness_holds_under_enqueues_from_several_processes(
    redis_url: str, prefix: str, raw: Redis
) -> None:
    processes, keys = 4, 200
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[object] = ctx.Queue()
    procs = [
        ctx.Process(target=_enqueue_in_process, args=(redis_url, prefix, w, keys, out))
        for w in range(processes)
    ]
    for proc in procs:
        proc.start()
    results = [await asyncio.to_thread(out.get, True, 60) for _ in procs]
    for proc in procs:
        await asyncio.to_thread(proc.join, 30)

    created: dict[str, list[str]] = {}
    for result in results:
        assert isinstance(result, list)
        for job_id, outcome in result:
            if outcome == "created":
                created.setdefault(job_id.split("-")[1], []).append(job_id)
    assert sorted(created) == sorted(str(k) for k in range(keys))
    assert all(len(ids) == 1 for ids in created.values())
    # Every handle names the one job created for its key.
    winners = {k: ids[0] for k, ids in created.items()}
    for result in results:
        assert isinstance(result, list)
        for job_id, _ in result:
            assert job_id == winners[job_id.split("-")[1]]
    keys_ = RedisKeys(prefix).queue(Q)
    assert await raw.hlen(keys_.unique) == keys
    assert await raw.zcard(keys_.ready) == keys


# -- every end frees the key ------------------------------------------------------------
async def test_a_dead_job_frees_its_key(backend: RedisBackend, raw: Redis, prefix: str) -> None:
    keys = RedisKeys(prefix).queue(Q)
    await backend.admit_jobs([job("a", unique_key="k")])
    fence = await run(backend, "a")
    failure = Failure(
        job_id="a",
        queue=Q,
        fence=fence,
        error="boom",
        traceback=None,
        finished_at_ms=T0 + 1,
        retry_at_ms=None,
    )

    assert await backend.fail_jobs("w1", [failure], 60_000) == [True]

    assert await raw.exists(keys.unique) == 0


async def test_a_cancelled_job_frees_its_key_and_one_kept_by_a_window_stays(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    await backend.admit_jobs(
        [job("a", unique_key="k"), job("b", unique_key="kept", dedupe=Dedupe(window_ms=500))]
    )

    assert await backend.cancel_job("a", Q, T0 + 1)
    assert await backend.cancel_job("b", Q, T0 + 1)

    assert await raw.hgetall(keys.unique) == {b"kept": b"b"}
    assert await raw.zrange(keys.unique_kept, 0, -1, withscores=True) == [(b"kept", T0 + 501)]


async def test_an_end_leaves_a_key_another_job_holds(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    cancel = Dedupe(on_duplicate=OnDuplicate.CANCEL)
    await backend.admit_jobs([job("a", unique_key="k")])
    fence = await run(backend, "a")
    await backend.admit_jobs([job("b", unique_key="k", dedupe=cancel, at=T0 + 1)])

    assert not await complete(backend, "a", fence, T0 + 2)  # refused: the map stays b's
    assert await backend.cancel_job("b", Q, T0 + 3)

    assert await raw.exists(keys.unique) == 0


# -- in one call --------------------------------------------------------------------------
async def test_the_second_job_of_a_call_sees_the_first(backend: RedisBackend) -> None:
    replace = Dedupe(on_duplicate=OnDuplicate.REPLACE)

    admitted = await backend.admit_jobs(
        [
            job("a", unique_key="k"),
            job("b", unique_key="k"),
            job("c", unique_key="k", dedupe=replace, payload=b"c"),
            job("a"),  # an id taken earlier in the call
            job("d"),  # a plain job among them is written as ever
        ]
    )

    assert admitted == [
        admitted_as("a", Outcome.CREATED),
        admitted_as("a", Outcome.EXISTING),
        admitted_as("a", Outcome.REPLACED),
        admitted_as("a", Outcome.EXISTS),
        admitted_as("d", Outcome.CREATED),
    ]
    record = await backend.get_job("a", Q)
    assert record is not None
    assert record.payload == b"c"


async def test_debounce_writes_a_new_job_beside_a_running_holder(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    keys = RedisKeys(prefix).queue(Q)
    bounce = Dedupe(debounce_ms=100)
    await backend.admit_jobs([job("a", unique_key="k")])
    await run(backend, "a")

    (admitted,) = await backend.admit_jobs([job("b", unique_key="k", dedupe=bounce, at=T0 + 5)])

    assert admitted == admitted_as("b", Outcome.CREATED)
    assert await raw.zrange(keys.delayed, 0, -1, withscores=True) == [(b"b", T0 + 105)]
    assert await raw.hget(keys.unique, "k") == b"b"
    running = await backend.get_job("a", Q)
    assert running is not None
    assert running.status is JobStatus.RUNNING
