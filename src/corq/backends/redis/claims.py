"""Handing jobs to workers (the Claims port, with ``outcomes.py`` and ``reclaim.py``):
claims, what a holder holds, progress, wake-ups and promotion."""

from __future__ import annotations

import asyncio

from corq.backends.base import ClaimBatch, ClaimedJob, HeldJob, Release
from corq.backends.redis import replies
from corq.backends.redis.calls import ScriptCall
from corq.backends.redis.connections import broker_errors, cancel_was_swallowed
from corq.backends.redis.context import RedisContext
from corq.types import JobId, QueueName, WorkerId


class RedisClaims(RedisContext):
    """Claims and what a worker does with the jobs it holds, short of their outcome."""

    async def claim_jobs(
        self,
        queue: QueueName,
        worker_id: WorkerId,
        count: int,
        lease_ms: int,
        now_ms: int | None,
        *,
        suspects: int = 0,
        idle: bool = False,
    ) -> ClaimBatch:
        call = self._scripts.claim_jobs(
            self._q(queue),
            holder=worker_id,
            count=count,
            suspects=suspects,
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
                await self._scripts.run(self._unclaim(queue, worker_id, batch.jobs))
        return batch

    async def await_jobs(
        self, queue: QueueName, worker_id: WorkerId, timeout_s: float
    ) -> list[ClaimedJob] | None:
        """One BLPOP on the holder's inbox (see the wake include): the job handed over,
        [] for a bare wake, None when the time is up. A job handed over after the time is
        up waits there for the next call (or deregister_worker gives it back)."""
        inbox = self._q(queue).inbox(worker_id)
        task = asyncio.current_task()
        cancels_before = task.cancelling() if task is not None else 0
        with broker_errors("await_jobs"):
            if timeout_s <= 0:  # BLPOP 0 would block forever
                entry = await self._redis.lpop(inbox)
            else:
                popped = await self._conn().blocking(timeout_s).blpop([inbox], timeout_s)
                entry = None if popped is None else popped[1]
            if not isinstance(entry, bytes):  # None: the time is up (no decoding: bytes)
                return None
            jobs = replies.handed(entry)
            if jobs and cancel_was_swallowed(task, cancels_before):
                # Cancelled as the job arrived: give it straight back, unstarted, so a
                # cancelled wait holds nothing (broker_errors then raises CancelledError).
                await self._scripts.run(self._unclaim(queue, worker_id, jobs))
        return jobs

    def _unclaim(
        self, queue: QueueName, worker_id: WorkerId, jobs: list[ClaimedJob]
    ) -> ScriptCall[list[bool]]:
        releases = [
            Release(job_id=job.id, queue=queue, fence=job.fence, unstarted=True) for job in jobs
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

    async def set_progress(
        self, job_id: JobId, queue: QueueName, worker_id: WorkerId, fence: int, progress: float
    ) -> bool:
        call = self._scripts.set_progress(
            self._q(queue), job_id=job_id, holder=worker_id, fence=fence, progress=progress
        )
        with broker_errors("set_progress"):
            return await self._scripts.run(call)

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
