"""The embedded SQLite broker: the Backend contract on one local file.

Every method is one SQLite transaction (BEGIN IMMEDIATE for writes) run on the backend's
own thread (see thread.py), so the event loop never blocks and a crash between two calls
never leaves a job half-moved. Several processes may share the file: WAL mode lets
readers run alongside the single writer, and busy_timeout queues writers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial

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
from corq.backends.sqlite import admin, claims, leases, producer
from corq.backends.sqlite.store import Conn
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.backends.sqlite.url import Target, parse_url
from corq.backends.sqlite.watch import HUB, ChangeWatch
from corq.errors import EnqueueError
from corq.job import Job
from corq.types import JobId, QueueName, WorkerId

#: How often the SQLite thread of a waiting backend looks for commits by other processes:
#: bounds the latency of a cross-process wake (~20 ms) at the cost of one thread wake-up and
#: one pragma per tick, only while anyone waits.
POLL_S = 0.02
#: Accepted priorities: the same range the Redis broker's scores can hold, so a job valid
#: on one broker is valid on the other.
PRIORITY_MIN, PRIORITY_MAX = -100, 100


#: No claim has reported a due time for the queue yet.
_NOT_TOLD: object = object()


def _due_is_news(due: int | None, told: object) -> bool:
    """A delayed job due earlier than the last claim reported (or when it reported none)."""
    if due is None or told is _NOT_TOLD:
        return False
    return told is None or (isinstance(told, int) and due < told)


class SqliteBackend:
    """Backend on an SQLite file (``sqlite:///path``) or on the process's in-memory database
    (``sqlite:///:memory:``, shared by every backend of the process, gone with the last)."""

    def __init__(
        self, url: str, *, socket_timeout_s: float = 5.0, _target: Target | None = None
    ) -> None:
        self.url = url
        self._target = _target or parse_url(url)
        self._timeout_s = socket_timeout_s
        # How long a writer waits for another process's transaction before BrokerError.
        busy_timeout_ms = max(1, round(socket_timeout_s * 1000))
        self._thread = ConnectionThread(self._target, busy_timeout_ms, self._committed, POLL_S)
        self._watch: ChangeWatch | None = None
        #: Per queue, the next due time the last claim reported (None: nothing delayed).
        self._told_due: dict[QueueName, int | None] = {}

    def __repr__(self) -> str:
        return f"SqliteBackend({self._target.database!r})"

    # -- producer side -------------------------------------------------------------
    async def enqueue_jobs(self, jobs: Sequence[NewJob]) -> list[bool]:
        for job in jobs:
            if not PRIORITY_MIN <= job.priority <= PRIORITY_MAX:
                raise EnqueueError(
                    f"job {job.id}: priority {job.priority} is outside "
                    f"{PRIORITY_MIN}..{PRIORITY_MAX}"
                )
        return await self._thread.run(partial(producer.enqueue_jobs, jobs=list(jobs)))

    async def get_job(self, job_id: JobId, queue: QueueName | None = None) -> Job | None:
        return await self._thread.run(
            partial(producer.get_job, job_id=job_id, queue=queue), Tx.READ
        )

    async def wait_for_job(self, job_id: JobId, queue: QueueName, timeout_s: float) -> Job | None:
        """Look at the record again after every commit (here or in another process)."""
        look = partial(producer.job_outcome, job_id=job_id, queue=queue)
        deadline = asyncio.get_running_loop().time() + max(0.0, timeout_s)
        seen, (job, over) = await self._thread.look(look)
        while not over and await self._wait_change(seen, deadline):
            seen, (job, over) = await self._thread.look(look)
        return job  # finished, gone, or the latest record when time ran out

    async def cancel_job(self, job_id: JobId, queue: QueueName, now_ms: int) -> bool:
        return await self._thread.run(
            partial(producer.cancel_job, job_id=job_id, queue=queue, now_ms=now_ms)
        )

    # -- worker side ---------------------------------------------------------------
    async def register_worker(self, lease: WorkerLease, now_ms: int) -> None:
        await self._thread.run(partial(leases.register_worker, lease=lease, now_ms=now_ms))

    async def deregister_worker(self, lease: WorkerLease) -> None:
        await self._thread.run(partial(leases.deregister_worker, lease=lease))

    async def heartbeat(self, lease: WorkerLease, now_ms: int) -> list[QueueName]:
        return await self._thread.run(partial(leases.heartbeat, lease=lease, now_ms=now_ms))

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
        batch = await self._thread.run(
            partial(
                claims.claim_jobs,
                queue=queue,
                worker_id=worker_id,
                count=count,
                lease_ms=lease_ms,
                now_ms=now_ms,
                idle=idle,
            )
        )
        if not batch.lost:
            self._told_due[queue] = batch.next_due_ms
        return batch

    async def set_progress(
        self, job_id: JobId, queue: QueueName, worker_id: WorkerId, fence: int, progress: float
    ) -> bool:
        return await self._thread.run(
            partial(
                claims.set_progress,
                job_id=job_id,
                queue=queue,
                worker_id=worker_id,
                fence=fence,
                progress=progress,
            )
        )

    async def wait_for_jobs(self, queue: QueueName, timeout_s: float) -> bool:
        """True as soon as the queue has a ready job, more suspects than at first, or a
        delayed job due earlier than any before (so the worker recomputes its sleep); False
        after `timeout_s`.

        Waiting suspects alone do not count as work: only an idle worker may take one, and
        a busy worker that waits must not be woken again and again by them.
        """
        probe = partial(claims.ready_probe, queue=queue)
        deadline = asyncio.get_running_loop().time() + max(0.0, timeout_s)
        seen, (ready, first_suspects, first_due) = await self._thread.look(probe)
        # A delayed job (or retry) that arrived since the last claim told the caller its next
        # due time is news too, even though it was already there at this first look.
        if _due_is_news(first_due, self._told_due.get(queue, _NOT_TOLD)):
            return True
        while not ready:
            if not await self._wait_change(seen, deadline):
                return False
            seen, (ready, suspects, next_due) = await self._thread.look(probe)
            if suspects > first_suspects:
                return True
            if next_due is not None and (first_due is None or next_due < first_due):
                return True
        return True

    async def promote_due_jobs(self, queue: QueueName, now_ms: int) -> int | None:
        return await self._thread.run(partial(claims.promote_due_jobs, queue=queue, now_ms=now_ms))

    async def complete_jobs(
        self, worker_id: WorkerId, completions: Sequence[Completion], result_ttl_ms: int
    ) -> list[bool]:
        return await self._thread.run(
            partial(
                claims.complete_jobs,
                worker_id=worker_id,
                completions=list(completions),
                result_ttl_ms=result_ttl_ms,
            )
        )

    async def fail_jobs(
        self, worker_id: WorkerId, failures: Sequence[Failure], result_ttl_ms: int
    ) -> list[bool]:
        """`result_ttl_ms` is unused: a job failing for good stays in the dead letters until
        retried or purged, and one awaiting a retry is not finished."""
        return await self._thread.run(
            partial(claims.fail_jobs, worker_id=worker_id, failures=list(failures))
        )

    async def release_jobs(self, worker_id: WorkerId, releases: Sequence[Release]) -> list[bool]:
        return await self._thread.run(
            partial(claims.release_jobs, worker_id=worker_id, releases=list(releases))
        )

    async def reclaim_stalled_jobs(
        self, queue: QueueName, now_ms: int, max_deaths: int
    ) -> list[Reclaimed]:
        return await self._thread.run(
            partial(leases.reclaim_stalled_jobs, queue=queue, now_ms=now_ms, max_deaths=max_deaths)
        )

    # -- operators -------------------------------------------------------------------
    async def list_queues(self) -> list[QueueName]:
        return await self._thread.run(admin.list_queues, Tx.READ)

    async def queue_stats(self, queues: Sequence[QueueName] | None = None) -> list[QueueStats]:
        names = None if queues is None else list(queues)
        return await self._thread.run(partial(admin.queue_stats, queues=names), Tx.READ)

    async def list_dead(self, queue: QueueName, offset: int = 0, limit: int = 50) -> list[Job]:
        return await self._thread.run(
            partial(admin.list_dead, queue=queue, offset=offset, limit=limit), Tx.READ
        )

    async def retry_dead(
        self, queue: QueueName, job_ids: Sequence[JobId] | None, now_ms: int
    ) -> int:
        ids = None if job_ids is None else list(job_ids)
        return await self._thread.run(
            partial(admin.retry_dead, queue=queue, job_ids=ids, now_ms=now_ms)
        )

    async def purge_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None) -> int:
        ids = None if job_ids is None else list(job_ids)
        return await self._thread.run(partial(admin.purge_dead, queue=queue, job_ids=ids))

    # -- lifecycle -------------------------------------------------------------------
    async def ping(self) -> None:
        await self._thread.run(_select_one, Tx.READ)

    def clone(self) -> Backend:
        """Same database, own thread and connection (for another thread or event loop)."""
        return SqliteBackend(self.url, socket_timeout_s=self._timeout_s, _target=self._target)

    async def close(self) -> None:
        if self._watch is not None:
            HUB.unsubscribe(self._target.key, self._watch)
            self._watch.close()
            self._watch = None
        await self._thread.close()

    # -- waking ----------------------------------------------------------------------
    def _committed(self) -> None:
        """On the SQLite thread, after a commit that changed rows: wake local waiters."""
        HUB.publish(self._target.key)

    async def _wait_change(self, seen_generation: int, deadline: float) -> bool:
        """Wait for a possible change; False when the deadline passed first."""
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await self._change_watch(loop).wait(seen_generation, remaining)
        return True

    def _change_watch(self, loop: asyncio.AbstractEventLoop) -> ChangeWatch:
        if self._watch is None or self._watch.loop is not loop:
            if self._watch is not None:
                HUB.unsubscribe(self._target.key, self._watch)
            self._watch = ChangeWatch(loop, self._thread)
            HUB.subscribe(self._target.key, self._watch)
        return self._watch


def _select_one(conn: Conn) -> None:
    conn.execute("SELECT 1").fetchone()
