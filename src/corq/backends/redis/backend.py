"""The Redis broker: the :class:`~corq.backends.base.Backend` contract on redis-py asyncio.

Every state change is one Lua script per queue (see ``lua/``), so a crash between two calls
never leaves a job half-moved; calls spanning queues or big batches are pipelined into one
round trip. Connections are made lazily in the event loop that first uses the backend;
another loop or thread takes a :meth:`RedisBackend.clone`. Every redis-py failure surfaces
as :class:`~corq.errors.BrokerError` (an outage) or :class:`~corq.errors.BrokerDataError`
(a refusal), so nothing above this package imports redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial

from redis.asyncio import Redis

from corq.backends.base import (
    CANCELLED_TTL_MS,
    HOLDER_SEPARATOR,
    MAX_JOB_ID_CHARS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Backend,
    ClaimBatch,
    Completion,
    Failure,
    HeldJob,
    NewJob,
    QueueStats,
    Reclaimed,
    Release,
    WorkerLease,
    backstop_deaths,
)
from corq.backends.redis import admin
from corq.backends.redis.connections import Connections, broker_errors, cancel_was_swallowed
from corq.backends.redis.keys import QueueKeys, RedisKeys
from corq.backends.redis.reads import read_jobs
from corq.backends.redis.registry import QueueRegistry
from corq.backends.redis.scripts import (
    DeadBounds,
    ScriptCall,
    Scripts,
    batches,
    by_queue,
)
from corq.errors import EnqueueError
from corq.job import TERMINAL_STATES, Job
from corq.types import JobId, QueueName, WorkerId


def check_new_job(job: NewJob) -> None:
    """Refuse, before anything is written, what no broker stores: an empty id, an id over
    MAX_JOB_ID_CHARS, a priority that is not an integer in PRIORITY_MIN..PRIORITY_MAX (the
    same messages as the SQLite broker's)."""
    if not job.id:
        raise EnqueueError("job id is empty")
    if len(job.id) > MAX_JOB_ID_CHARS:
        raise EnqueueError(
            f"job id {job.id[:40]!r}... is {len(job.id)} characters long; "
            f"at most {MAX_JOB_ID_CHARS} are allowed"
        )
    if type(job.priority) is not int or not PRIORITY_MIN <= job.priority <= PRIORITY_MAX:
        raise EnqueueError(
            f"job {job.id}: priority {job.priority!r} is outside {PRIORITY_MIN}..{PRIORITY_MAX}"
        )


class RedisBackend:
    """Broker on Redis (standalone, or Cluster-safe key layout; see ``keys.py``).

    `dead_max` and `dead_ttl_ms` bound each queue's dead letters (0: unbounded). A `now_ms`
    of None lets each script read Redis's own clock (TIME).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "corq",
        socket_timeout_s: float = 5.0,
        dead_max: int = 0,
        dead_ttl_ms: int = 0,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._socket_timeout_s = socket_timeout_s
        self._dead = DeadBounds(max_count=max(0, dead_max), ttl_ms=max(0, dead_ttl_ms))
        self._keys = RedisKeys(prefix)
        self._conns: Connections | None = None
        self._registry = QueueRegistry(self._keys)

    def __repr__(self) -> str:
        return f"RedisBackend({self._url!r}, prefix={self._prefix!r})"

    # -- plumbing ----------------------------------------------------------------------
    def _conn(self) -> Connections:
        conns = self._conns
        if conns is None:
            conns = self._conns = Connections(self._url, self._socket_timeout_s, self._dead)
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
            check_new_job(job)
        groups = by_queue(jobs, lambda job: job.queue)
        with broker_errors("enqueue"):
            # A queue's last use is the producer's time (as SQLite notes it), so a FakeClock
            # moves it too.
            last_used = max(job.enqueued_at_ms for job in jobs) if jobs else None
            await self._registry.touch(self._scripts, list(groups), last_used)
            return await self._run_grouped(
                len(jobs),
                groups,
                lambda keys, chunk: self._scripts.enqueue_jobs(keys, jobs=[jobs[i] for i in chunk]),
                size_of=lambda i: len(jobs[i].payload),
            )

    async def get_job(self, job_id: JobId, queue: QueueName | None = None) -> Job | None:
        with broker_errors("get_job"):
            if queue is not None:
                (job,) = await read_jobs(self._redis, [(self._q(queue), job_id)])
                return job
            names = await self._registry.names(self._redis, self._scripts)
            jobs = await read_jobs(self._redis, [(self._q(name), job_id) for name in names])
        return next((job for job in jobs if job is not None), None)

    async def wait_for_job(self, job_id: JobId, queue: QueueName, timeout_s: float) -> Job | None:
        def finished(job: Job | None) -> bool:
            return job is None or job.status in TERMINAL_STATES

        with broker_errors("wait_for_job"):
            return await self._conn().signals.wait_until(
                self._q(queue).done(job_id),
                partial(self.get_job, job_id, queue),
                finished,
                timeout_s,
            )

    async def cancel_job(self, job_id: JobId, queue: QueueName, now_ms: int | None) -> bool:
        call = self._scripts.cancel_job(
            self._q(queue), job_id=job_id, now_ms=now_ms, ttl_ms=CANCELLED_TTL_MS
        )
        with broker_errors("cancel_job"):
            return await self._scripts.run(call)

    async def set_progress(
        self, job_id: JobId, queue: QueueName, worker_id: WorkerId, fence: int, progress: float
    ) -> bool:
        call = self._scripts.set_progress(
            self._q(queue), job_id=job_id, holder=worker_id, fence=fence, progress=progress
        )
        with broker_errors("set_progress"):
            return await self._scripts.run(call)

    # -- worker side ---------------------------------------------------------------
    async def register_worker(self, lease: WorkerLease, now_ms: int | None) -> None:
        calls = [
            self._scripts.register_worker(
                self._q(q), holder=lease.holder(q), now_ms=now_ms, lease_ms=lease.lease_ms
            )
            for q in lease.queues
        ]
        with broker_errors("register_worker"):
            await self._scripts.run_all(calls)
            await self._registry.touch(self._scripts, lease.queues, now_ms)

    async def deregister_worker(
        self, lease: WorkerLease, now_ms: int | None, linger_ms: int = 0
    ) -> None:
        calls = [
            self._scripts.deregister_worker(
                self._q(q), holder=lease.holder(q), now_ms=now_ms, linger_ms=linger_ms
            )
            for q in lease.queues
        ]
        with broker_errors("deregister_worker"):
            await self._scripts.run_all(calls)

    async def end_leases(self, lease: WorkerLease) -> int:
        prefix = lease.worker_id + HOLDER_SEPARATOR
        calls = [
            self._scripts.end_leases(self._q(q), worker_prefix=prefix, holder=lease.holder(q))
            for q in lease.queues
        ]
        with broker_errors("end_leases"):
            return sum(await self._scripts.run_all(calls))

    async def heartbeat(self, lease: WorkerLease, now_ms: int | None) -> list[QueueName]:
        calls = [
            self._scripts.heartbeat_worker(
                self._q(q), holder=lease.holder(q), now_ms=now_ms, lease_ms=lease.lease_ms
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
        now_ms: int | None,
        *,
        suspects: int = 0,
    ) -> ClaimBatch:
        call = self._scripts.claim_jobs(
            self._q(queue),
            holder=worker_id,
            count=count,
            suspects=suspects,
            lease_ms=lease_ms,
            now_ms=now_ms,
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
        return self._scripts.release_jobs(self._q(queue), holder=worker_id, releases=releases)

    async def count_held_jobs(self, queue: QueueName, worker_id: WorkerId) -> int:
        with broker_errors("count_held_jobs"):
            return int(await self._redis.scard(self._q(queue).held(worker_id)))

    async def list_held_jobs(self, queue: QueueName, worker_id: WorkerId) -> list[HeldJob]:
        keys = self._q(queue)
        held: dict[JobId, HeldJob] = {}  # SSCAN may return an id twice
        cursor = "0"
        with broker_errors("list_held_jobs"):
            while True:
                step = await self._scripts.run(
                    self._scripts.list_held_jobs(keys, holder=worker_id, cursor=cursor)
                )
                held.update((job.job_id, job) for job in step.jobs)
                cursor = step.cursor
                if cursor == "0":
                    return list(held.values())

    async def wait_for_jobs(self, queue: QueueName, timeout_s: float) -> bool:
        wake = self._q(queue).wake
        with broker_errors("wait_for_jobs"):
            if timeout_s <= 0:  # BLPOP 0 would block forever
                return await self._redis.lpop(wake) is not None
            return await self._conn().blocking(timeout_s).blpop([wake], timeout_s) is not None

    async def promote_due_jobs(self, queue: QueueName, now_ms: int | None) -> int | None:
        keys = self._q(queue)
        with broker_errors("promote_due_jobs"):
            while True:  # more than one batch due: keep going until none is
                step = await self._scripts.run(self._scripts.promote_due_jobs(keys, now_ms=now_ms))
                if not step.more:
                    return step.next_due_ms

    async def complete_jobs(
        self, worker_id: WorkerId, completions: Sequence[Completion], result_ttl_ms: int
    ) -> list[bool]:
        def make(keys: QueueKeys, chunk: Sequence[int]) -> ScriptCall[list[bool]]:
            jobs = [completions[i] for i in chunk]
            return self._scripts.complete_jobs(
                keys,
                holder=worker_id,
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
        # result_ttl_ms is unused here: a retried job is alive, a dead one is kept as a dead
        # letter (within the dead-letter bounds).
        def make(keys: QueueKeys, chunk: Sequence[int]) -> ScriptCall[list[bool]]:
            batch = [failures[i] for i in chunk]
            return self._scripts.fail_jobs(keys, holder=worker_id, failures=batch)

        def size_of(i: int) -> int:
            return len(failures[i].error) + len(failures[i].traceback or "")

        with broker_errors("fail_jobs"):
            groups = by_queue(failures, lambda f: f.queue)
            return await self._run_grouped(len(failures), groups, make, size_of)

    async def release_jobs(self, worker_id: WorkerId, releases: Sequence[Release]) -> list[bool]:
        def make(keys: QueueKeys, chunk: Sequence[int]) -> ScriptCall[list[bool]]:
            batch = [releases[i] for i in chunk]
            return self._scripts.release_jobs(keys, holder=worker_id, releases=batch)

        with broker_errors("release_jobs"):
            groups = by_queue(releases, lambda r: r.queue)
            return await self._run_grouped(len(releases), groups, make)

    async def reclaim_stalled_jobs(
        self, queue: QueueName, now_ms: int | None, max_deaths: int, *, ended_only: bool = False
    ) -> list[Reclaimed]:
        call = self._scripts.reclaim_stalled_jobs(
            self._q(queue),
            now_ms=now_ms,
            max_deaths=max_deaths,
            backstop=backstop_deaths(max_deaths),
            ended_only=ended_only,
        )
        reclaimed: list[Reclaimed] = []
        with broker_errors("reclaim_stalled_jobs"):
            while True:  # one bounded script call at a time, so Redis is never blocked long
                step = await self._scripts.run(call)
                reclaimed += [
                    Reclaimed(
                        job_id=job.job_id,
                        queue=queue,
                        worker_id=job.holder,
                        dead=job.dead,
                        released=job.released,
                    )
                    for job in step.jobs
                ]
                if step.done:
                    return reclaimed

    # -- operators -------------------------------------------------------------------
    async def list_queues(self) -> list[QueueName]:
        with broker_errors("list_queues"):
            return await self._registry.names(self._redis, self._scripts)

    async def prune_queues(self, now_ms: int | None, idle_ms: int) -> list[QueueName]:
        with broker_errors("prune_queues"):
            return await admin.prune_queues(
                self._redis, self._scripts, self._registry, self._keys, now_ms, idle_ms
            )

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
        with broker_errors("list_dead"):
            return await admin.list_dead(self._redis, self._q(queue), offset, limit)

    async def retry_dead(
        self, queue: QueueName, job_ids: Sequence[JobId] | None, now_ms: int | None
    ) -> int:
        with broker_errors("retry_dead"):
            return await admin.retry_dead(self._scripts, self._q(queue), job_ids, now_ms)

    async def purge_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None) -> int:
        with broker_errors("purge_dead"):
            return await admin.purge_dead(self._scripts, self._q(queue), job_ids)

    # -- lifecycle -------------------------------------------------------------------
    async def ping(self) -> None:
        with broker_errors("ping"):
            await self._redis.ping()

    def clone(self) -> Backend:
        return RedisBackend(
            self._url,
            prefix=self._prefix,
            socket_timeout_s=self._socket_timeout_s,
            dead_max=self._dead.max_count,
            dead_ttl_ms=self._dead.ttl_ms,
        )

    async def close(self) -> None:
        conns, self._conns = self._conns, None
        if conns is not None:
            with broker_errors("close"):
                await conns.close()
