"""Operator calls (the Admin port): queues, their counts, dead letters, pruning.

The dead-letter and pruning functions loop over bounded script calls, never one unbounded
call; :class:`RedisAdmin` runs each one inside ``broker_errors``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from corq.backends.base import BATCH, QueueStats
from corq.backends.redis.calls import chunks
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.keys import QueueKeys, RedisKeys
from corq.backends.redis.reads import read_jobs
from corq.backends.redis.registry import QueueRegistry, queue_name
from corq.backends.redis.scripts import Scripts
from corq.job import Job
from corq.types import JobId, QueueName


async def list_dead(client: Redis, keys: QueueKeys, offset: int, limit: int) -> list[Job]:
    """Dead letters newest first, damaged ones included (ids kept as bytes: maybe not UTF-8)."""
    if limit <= 0:
        return []
    ids = cast(list[bytes], await client.zrevrange(keys.dead, offset, offset + limit - 1))
    jobs = await read_jobs(client, [(keys, job_id) for job_id in ids])
    return [job for job in jobs if job is not None]


async def retry_dead(
    scripts: Scripts, keys: QueueKeys, job_ids: Sequence[JobId] | None, now_ms: int | None
) -> int:
    """The ids given, or every job dead when the call began, each at most once: a copy of
    the dead letters is taken at the first step and worked through BATCH at a time."""
    if job_ids is not None:
        calls = [
            scripts.retry_dead_jobs(keys, job_ids=chunk, now_ms=now_ms) for chunk in chunks(job_ids)
        ]
        return sum(moved for moved, _ in await scripts.run_all(calls))
    snapshot = keys.retrying(uuid.uuid4().hex)
    total, first = 0, True
    while True:
        call = scripts.retry_dead_jobs(
            keys, job_ids=(), now_ms=now_ms, snapshot=snapshot, take_snapshot=first
        )
        moved, looked_at = await scripts.run(call)
        total, first = total + moved, False
        if looked_at < BATCH:
            return total


async def purge_dead(scripts: Scripts, keys: QueueKeys, job_ids: Sequence[JobId] | None) -> int:
    """The ids given, or every dead letter, the oldest BATCH at a time until none is left."""
    if job_ids is not None:
        calls = [scripts.purge_dead_jobs(keys, job_ids=chunk) for chunk in chunks(job_ids)]
        return sum(purged for purged, _ in await scripts.run_all(calls))
    total = 0
    while True:
        purged, looked_at = await scripts.run(scripts.purge_dead_jobs(keys, job_ids=()))
        total += purged
        if looked_at < BATCH:
            return total


async def prune_queues(
    client: Redis,
    scripts: Scripts,
    registry: QueueRegistry,
    keys: RedisKeys,
    now_ms: int | None,
    idle_ms: int,
) -> list[QueueName]:
    """Forget at most BATCH idle names whose queue holds nothing.

    Each queue is checked and cleared by a script of its own slot; the names go from the
    registry (another slot) in a second step, only if nobody used them meanwhile.
    """
    if now_ms is None:
        seconds, micros = await client.time()
        now_ms = seconds * 1000 + micros // 1000
    cutoff_ms = now_ms - idle_ms
    idle = await registry.idle(client, scripts, cutoff_ms)
    named = [(raw, name) for raw in idle if (name := queue_name(raw)) is not None]
    empty = await scripts.run_all([scripts.prune_queue(keys.queue(name)) for _, name in named])
    gone = [raw for (raw, _), ok in zip(named, empty, strict=True) if ok]
    if not gone:
        return []
    removed = await scripts.run(scripts.forget_queues(keys.queues, names=gone, cutoff_ms=cutoff_ms))
    names = [raw.decode("utf-8") for raw in removed]
    registry.forget_touches(names)
    return names


class RedisAdmin(RedisContext):
    """What operators call."""

    async def list_queues(self) -> list[QueueName]:
        with broker_errors("list_queues"):
            return await self._registry.names(self._redis, self._scripts)

    async def prune_queues(self, now_ms: int | None, idle_ms: int) -> list[QueueName]:
        with broker_errors("prune_queues"):
            return await prune_queues(
                self._redis, self._scripts, self._registry, self._keys, now_ms, idle_ms
            )

    async def queue_stats(self, queues: Sequence[QueueName] | None = None) -> list[QueueStats]:
        names = list(queues) if queues is not None else await self.list_queues()
        with broker_errors("queue_stats"):
            counts = await self._scripts.run_all(
                [self._scripts.count_queue_jobs(self._q(q)) for q in names]
            )
            async with self._redis.pipeline(transaction=False) as pipe:
                for q in names:
                    pipe.exists(self._q(q).paused)
                paused = await pipe.execute() if names else []
        return [
            QueueStats(
                queue=q,
                ready=c.ready,
                delayed=c.delayed,
                in_flight=c.in_flight,
                dead=c.dead,
                workers=c.workers,
                paused=bool(p),
            )
            for q, c, p in zip(names, counts, paused, strict=True)
        ]

    async def list_dead(self, queue: QueueName, offset: int = 0, limit: int = 50) -> list[Job]:
        with broker_errors("list_dead"):
            return await list_dead(self._redis, self._q(queue), offset, limit)

    async def retry_dead(
        self, queue: QueueName, job_ids: Sequence[JobId] | None, now_ms: int | None
    ) -> int:
        with broker_errors("retry_dead"):
            return await retry_dead(self._scripts, self._q(queue), job_ids, now_ms)

    async def purge_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None) -> int:
        with broker_errors("purge_dead"):
            return await purge_dead(self._scripts, self._q(queue), job_ids)
