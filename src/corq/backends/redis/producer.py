"""The producer's side of the Redis broker (the JobStore port): enqueue (admit), read, wait,
cancel.

An enqueue is one script per queue and batch (``enqueue_jobs.lua``): plain jobs are written
in two passes, jobs with flow-control directives admitted one by one (the dedupe include).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from corq.backends.base import (
    CANCELLED_TTL_MS,
    MAX_JOB_ID_CHARS,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Admitted,
    NewJob,
)
from corq.backends.redis.calls import by_queue
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.reads import read_jobs
from corq.errors import EnqueueError
from corq.flow import Outcome
from corq.job import TERMINAL_STATES, Job
from corq.types import JobId, QueueName


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


def debounced(job: NewJob) -> NewJob:
    """A debounced job as written when no pending job holds its key: it runs `debounce`
    after its enqueue (the script moves the pending one instead when there is one)."""
    debounce = job.dedupe.debounce_ms if job.dedupe is not None else None
    if debounce is None or job.run_at_ms >= job.enqueued_at_ms + debounce:
        return job
    return replace(job, run_at_ms=job.enqueued_at_ms + debounce)


_NOT_RUN = Admitted(job_id=JobId(""), outcome=Outcome.EXISTS)


class RedisJobStore(RedisContext):
    """Jobs as producers and callers see them."""

    async def enqueue_jobs(self, jobs: Sequence[NewJob]) -> list[bool]:
        return [admitted.outcome is Outcome.CREATED for admitted in await self.admit_jobs(jobs)]

    async def admit_jobs(self, jobs: Sequence[NewJob]) -> list[Admitted]:
        jobs = [debounced(job) for job in jobs]
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
                missing=_NOT_RUN,
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
