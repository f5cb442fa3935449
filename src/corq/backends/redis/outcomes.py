"""The outcomes of attempts (the Claims port): complete, fail, release; fenced, batched
per queue into one round trip."""

from __future__ import annotations

from collections.abc import Sequence

from corq.backends.base import Completion, Failure, Release
from corq.backends.redis.calls import ScriptCall, by_queue
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.keys import QueueKeys
from corq.types import WorkerId


class RedisOutcomes(RedisContext):
    """What became of the jobs a worker held."""

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
