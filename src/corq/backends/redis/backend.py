"""The Redis broker: the :class:`~corq.backends.base.Backend` contract on redis-py asyncio.

Every state change is one Lua script per queue (see ``lua/``), so a crash between two calls
never leaves a job half-moved; calls spanning queues or big batches are pipelined into one
round trip. Connections are made lazily in the event loop that first uses the backend;
another loop or thread takes a :meth:`RedisBackend.clone`. Every redis-py failure surfaces
as :class:`~corq.errors.BrokerError`, so nothing above this package imports redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import cast

from redis.asyncio import Redis

from corq.backends.base import (
    Backend,
    ClaimBatch,
    Completion,
    Failure,
    NewJob,
    QueueStats,
    Reclaimed,
    Release,
    WorkerLease,
)
from corq.backends.redis.connections import Connections, broker_errors, cancel_was_swallowed
from corq.backends.redis.keys import PRIORITY_MAX, PRIORITY_MIN, QueueKeys, RedisKeys
from corq.backends.redis.records import Record, job_from_record
from corq.backends.redis.scripts import (
    BATCH,
    ScriptCall,
    Scripts,
    batches,
    by_queue,
    chunks,
)
from corq.errors import EnqueueError
from corq.job import TERMINAL_STATES, Job
from corq.types import JobId, QueueName, WorkerId

#: How long a cancelled job's record is kept.
CANCELLED_TTL_MS = 7 * 24 * 3600 * 1000


class RedisBackend:
    """Broker on Redis (standalone, or Cluster-safe key layout; see ``keys.py``)."""

    def __init__(self, url: str, *, prefix: str = "corq", socket_timeout_s: float = 5.0) -> None:
        self._url = url
        self._prefix = prefix
        self._socket_timeout_s = socket_timeout_s
        self._keys = RedisKeys(prefix)
        self._conns: Connections | None = None
        #: Queues already added to the global set by this process (saves a SADD per call).
        self._known_queues: set[QueueName] = set()

    def __repr__(self) -> str:
        return f"RedisBackend({self._url!r}, prefix={self._prefix!r})"

    # -- plumbing ----------------------------------------------------------------------
    def _conn(self) -> Connections:
        conns = self._conns
        if conns is None:
            conns = self._conns = Connections(self._url, self._socket_timeout_s)
        elif conns.loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "this RedisBackend belongs to another event loop; use backend.clone() here"
            )
        return conns

    @property
    def _redis(self) -> Redis:
        return self._conn().client

    @property
    def _scripts(self) -> Scripts:
        return self._conn().scripts

    def _q(self, queue: QueueName) -> QueueKeys:
        return self._keys.queue(queue)

    async def _remember_queues(self, queues: Sequence[QueueName]) -> None:
        new = [q for q in queues if q not in self._known_queues]
        if new:
            await self._redis.sadd(self._keys.queues, *new)
            self._known_queues.update(new)

    async def _run_grouped(
        self,
        total: int,
        groups: dict[QueueName, list[int]],
        make: Callable[[QueueKeys, Sequence[int]], ScriptCall[list[bool]]],
        size_of: Callable[[int], int] = lambda _: 0,
    ) -> list[bool]:
        """Run `make(queue, indices)` per queue and batch in one round trip; flags in order."""
        calls: list[ScriptCall[list[bool]]] = []
        order: list[Sequence[int]] = []
        for queue, indices in groups.items():
            for chunk in batches(indices, size_of):
                calls.append(make(self._q(queue), chunk))
                order.append(chunk)
        flags = [False] * total
        for batch, replies in zip(order, await self._scripts.run_all(calls), strict=True):
            for index, flag in zip(batch, replies, strict=True):
                flags[index] = flag
        return flags

    # -- producer side -------------------------------------------------------------
    async def enqueue_jobs(self, jobs: Sequence[NewJob]) -> list[bool]:
        for job in jobs:
            if not PRIORITY_MIN <= job.priority <= PRIORITY_MAX:
                raise EnqueueError(
                    f"job {job.id}: priority {job.priority} is outside "
                    f"{PRIORITY_MIN}..{PRIORITY_MAX}"
                )
        groups = by_queue(jobs, lambda job: job.queue)
        with broker_errors("enqueue"):
            await self._remember_queues(list(groups))
            return await self._run_grouped(
                len(jobs),
                groups,
                lambda keys, chunk: self._scripts.enqueue_jobs(keys, jobs=[jobs[i] for i in chunk]),
                size_of=lambda i: len(jobs[i].payload),
            )

    async def get_job(self, job_id: JobId, queue: QueueName | None = None) -> Job | None:
        with broker_errors("get_job"):
            if queue is not None:
                return job_from_record(
                    cast(Record, await self._redis.hgetall(self._q(queue).job(job_id)))
                )
            queues = await self.list_queues()
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in queues:
                    pipe.hgetall(self._q(name).job(job_id))
                records: list[Record] = await pipe.execute()
        return next((job for job in map(job_from_record, records) if job is not None), None)

    async def wait_for_job(self, job_id: JobId, queue: QueueName, timeout_s: float) -> Job | None:
        with broker_errors("wait_for_job"):
            return await self._wait_for_job(job_id, queue, timeout_s)

    async def _wait_for_job(self, job_id: JobId, queue: QueueName, timeout_s: float) -> Job | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        channel = self._q(queue).done(job_id)
        while True:
            async with self._conn().signals.watch(channel) as watch:
                while not watch.broken:
                    watch.event.clear()
                    job = await self.get_job(job_id, queue)
                    remaining = deadline - loop.time()
                    if job is None or job.status in TERMINAL_STATES or remaining <= 0:
                        return job
                    try:
                        async with asyncio.timeout(remaining):
                            await watch.event.wait()
                    except TimeoutError:
                        return await self.get_job(job_id, queue)

    async def cancel_job(self, job_id: JobId, queue: QueueName, now_ms: int) -> bool:
        call = self._scripts.cancel_job(
            self._q(queue), job_id=job_id, now_ms=now_ms, ttl_ms=CANCELLED_TTL_MS
        )
        with broker_errors("cancel_job"):
            return await self._scripts.run(call)

    async def set_progress(
        self, job_id: JobId, queue: QueueName, worker_id: WorkerId, fence: int, progress: float
    ) -> bool:
        call = self._scripts.set_progress(
            self._q(queue), job_id=job_id, worker_id=worker_id, fence=fence, progress=progress
        )
        with broker_errors("set_progress"):
            return await self._scripts.run(call)

    # -- worker side ---------------------------------------------------------------
    async def register_worker(self, lease: WorkerLease, now_ms: int) -> None:
        if not lease.queues:
            return
        deadline = now_ms + lease.lease_ms
        with broker_errors("register_worker"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue in lease.queues:
                    pipe.zadd(self._q(queue).workers, {lease.worker_id: deadline})
                pipe.sadd(self._keys.queues, *lease.queues)
                await pipe.execute()
        self._known_queues.update(lease.queues)

    async def deregister_worker(self, lease: WorkerLease) -> None:
        # A worker that still holds jobs is not removed but expired, so reclaim takes them.
        calls = [
            self._scripts.deregister_worker(self._q(q), worker_id=lease.worker_id)
            for q in lease.queues
        ]
        with broker_errors("deregister_worker"):
            await self._scripts.run_all(calls)

    async def heartbeat(self, lease: WorkerLease, now_ms: int) -> list[QueueName]:
        deadline = now_ms + lease.lease_ms
        calls = [
            self._scripts.heartbeat_worker(
                self._q(q), worker_id=lease.worker_id, deadline_ms=deadline
            )
            for q in lease.queues
        ]
        with broker_errors("heartbeat"):
            renewed = await self._scripts.run_all(calls)
        return [q for q, ok in zip(lease.queues, renewed, strict=True) if not ok]

    async def claim_jobs(
        self,
        queue: QueueName,
        worker_id: WorkerId,
        count: int,
        lease_ms: int,
        now_ms: int,
        *,
        idle: bool = False,
    ) -> ClaimBatch:
        call = self._scripts.claim_jobs(
            self._q(queue),
            worker_id=worker_id,
            count=count,
            lease_ms=lease_ms,
            now_ms=now_ms,
            idle=idle,
        )
        task = asyncio.current_task()
        cancels_before = task.cancelling() if task is not None else 0
        with broker_errors("claim_jobs"):
            batch = await self._scripts.run(call)
            if batch.jobs and cancel_was_swallowed(task, cancels_before):
                # Cancelled as the claim went through: hand the jobs straight back, so a
                # cancelled claim holds nothing (broker_errors then raises CancelledError).
                await self._scripts.run(self._unclaim(queue, worker_id, batch))
        return batch

    def _unclaim(
        self, queue: QueueName, worker_id: WorkerId, batch: ClaimBatch
    ) -> ScriptCall[list[bool]]:
        releases = [
            Release(job_id=job.id, queue=queue, fence=job.fence, unstarted=True)
            for job in batch.jobs
        ]
        return self._scripts.release_jobs(self._q(queue), worker_id=worker_id, releases=releases)

    async def wait_for_jobs(self, queue: QueueName, timeout_s: float) -> bool:
        wake = self._q(queue).wake
        with broker_errors("wait_for_jobs"):
            if timeout_s <= 0:  # BLPOP 0 would block forever
                return await self._redis.lpop(wake) is not None
            return await self._conn().blocking(timeout_s).blpop([wake], timeout_s) is not None

    async def promote_due_jobs(self, queue: QueueName, now_ms: int) -> int | None:
        keys = self._q(queue)
        with broker_errors("promote_due_jobs"):
            while True:  # more than one batch due: keep going until none is
                _, next_due = await self._scripts.run(
                    self._scripts.promote_due_jobs(keys, now_ms=now_ms)
                )
                if next_due is None or next_due > now_ms:
                    return next_due

    async def complete_jobs(
        self, worker_id: WorkerId, completions: Sequence[Completion], result_ttl_ms: int
    ) -> list[bool]:
        def make(keys: QueueKeys, chunk: Sequence[int]) -> ScriptCall[list[bool]]:
            jobs = [completions[i] for i in chunk]
            return self._scripts.complete_jobs(
                keys,
                worker_id=worker_id,
                jobs=[(c.job_id, c.fence, c.result, c.finished_at_ms) for c in jobs],
                result_ttl_ms=result_ttl_ms,
            )

        with broker_errors("complete_jobs"):
            groups = by_queue(completions, lambda c: c.queue)
            return await self._run_grouped(
                len(completions), groups, make, size_of=lambda i: len(completions[i].result)
            )

    async def fail_jobs(
        self, worker_id: WorkerId, failures: Sequence[Failure], result_ttl_ms: int
    ) -> list[bool]:
        # result_ttl_ms is unused here: a retried job is alive, a dead one is kept until
        # purged (dead letters never expire).
        def make(keys: QueueKeys, chunk: Sequence[int]) -> ScriptCall[list[bool]]:
            batch = [failures[i] for i in chunk]
            return self._scripts.fail_jobs(keys, worker_id=worker_id, failures=batch)

        with broker_errors("fail_jobs"):
            groups = by_queue(failures, lambda f: f.queue)
            return await self._run_grouped(len(failures), groups, make)

    async def release_jobs(self, worker_id: WorkerId, releases: Sequence[Release]) -> list[bool]:
        def make(keys: QueueKeys, chunk: Sequence[int]) -> ScriptCall[list[bool]]:
            batch = [releases[i] for i in chunk]
            return self._scripts.release_jobs(keys, worker_id=worker_id, releases=batch)

        with broker_errors("release_jobs"):
            groups = by_queue(releases, lambda r: r.queue)
            return await self._run_grouped(len(releases), groups, make)

    async def reclaim_stalled_jobs(
        self, queue: QueueName, now_ms: int, max_deaths: int
    ) -> list[Reclaimed]:
        keys = self._q(queue)
        reclaimed: list[Reclaimed] = []
        with broker_errors("reclaim_stalled_jobs"):
            while True:  # one bounded script call at a time, so Redis is never blocked long
                batch = await self._scripts.run(
                    self._scripts.reclaim_stalled_jobs(
                        keys, now_ms=now_ms, max_deaths=max_deaths, limit=BATCH
                    )
                )
                reclaimed += [
                    Reclaimed(job_id=job_id, queue=queue, worker_id=worker, dead=dead)
                    for worker, job_id, dead in batch.jobs
                ]
                if batch.done:
                    return reclaimed

    # -- operators -------------------------------------------------------------------
    async def list_queues(self) -> list[QueueName]:
        with broker_errors("list_queues"):
            names = await self._redis.smembers(self._keys.queues)
        return sorted(cast(bytes, name).decode("utf-8") for name in names)

    async def queue_stats(self, queues: Sequence[QueueName] | None = None) -> list[QueueStats]:
        names = list(queues) if queues is not None else await self.list_queues()
        with broker_errors("queue_stats"):
            counts = await self._scripts.run_all(
                [self._scripts.count_queue_jobs(self._q(q)) for q in names]
            )
        return [
            QueueStats(
                queue=q,
                ready=c.ready,
                delayed=c.delayed,
                in_flight=c.in_flight,
                dead=c.dead,
                workers=c.workers,
            )
            for q, c in zip(names, counts, strict=True)
        ]

    async def list_dead(self, queue: QueueName, offset: int = 0, limit: int = 50) -> list[Job]:
        keys = self._q(queue)
        if limit <= 0:
            return []
        with broker_errors("list_dead"):
            ids = await self._redis.zrevrange(keys.dead, offset, offset + limit - 1)
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(keys.job(cast(bytes, job_id).decode("utf-8")))
                records: list[Record] = await pipe.execute()
        return [job for job in map(job_from_record, records) if job is not None]

    async def retry_dead(
        self, queue: QueueName, job_ids: Sequence[JobId] | None, now_ms: int
    ) -> int:
        keys = self._q(queue)
        with broker_errors("retry_dead"):
            return await self._dead_letters(
                job_ids,
                lambda ids: self._scripts.retry_dead_jobs(
                    keys, job_ids=ids, now_ms=now_ms, limit=BATCH
                ),
            )

    async def purge_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None) -> int:
        keys = self._q(queue)
        with broker_errors("purge_dead"):
            return await self._dead_letters(
                job_ids, lambda ids: self._scripts.purge_dead_jobs(keys, job_ids=ids, limit=BATCH)
            )

    async def _dead_letters(
        self,
        job_ids: Sequence[JobId] | None,
        make: Callable[[Sequence[JobId]], ScriptCall[tuple[int, int]]],
    ) -> int:
        """Run a dead-letter script over the ids given, or over all (oldest first, in batches)."""
        if job_ids is not None:
            replies = await self._scripts.run_all([make(chunk) for chunk in chunks(job_ids)])
            return sum(done for done, _ in replies)
        total = 0
        while True:
            done, looked_at = await self._scripts.run(make(()))
            total += done
            if looked_at < BATCH:
                return total

    # -- lifecycle -------------------------------------------------------------------
    async def ping(self) -> None:
        with broker_errors("ping"):
            await self._redis.ping()

    def clone(self) -> Backend:
        return RedisBackend(self._url, prefix=self._prefix, socket_timeout_s=self._socket_timeout_s)

    async def close(self) -> None:
        conns, self._conns = self._conns, None
        if conns is not None:
            with broker_errors("close"):
                await conns.close()
