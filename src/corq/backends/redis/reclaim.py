"""Taking back the jobs of holders whose lease passed (``reclaim_stalled_jobs``, of the
Claims port), in bounded script calls."""

from __future__ import annotations

from corq.backends.base import Reclaimed, backstop_deaths
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.types import QueueName


class RedisReclaim(RedisContext):
    """The reclaim of passed leases."""

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
