"""The DeadLetters port on Redis: filtered pages of a queue's dead letters, and re-drive.

A page is one ``find_dead_jobs`` script call (one bounded window of the ``dead`` ZSET),
then one pipelined read of the records it kept. A re-drive is ``retry_dead_jobs`` for one
id with the new payload: the same step as ``retry_dead``.
"""

from __future__ import annotations

from corq.backends.base import BATCH, DeadFilter, DeadPage
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.reads import read_jobs
from corq.backends.redis.replies import DeadQuery
from corq.errors import ArgumentError
from corq.job import Job
from corq.types import JobId, QueueName

#: Every cursor this broker makes starts so (a SQLite one does not).
_CURSOR_TAG = "r1"


def encode_cursor(after: tuple[bytes, bytes] | None) -> str | None:
    if after is None:
        return None
    score, job_id = after
    return f"{_CURSOR_TAG}:{score.decode('ascii')}:{job_id.hex()}"


def decode_cursor(cursor: str | None) -> tuple[bytes, bytes] | None:
    """The (score, id) a cursor names; ArgumentError for one this broker did not make."""
    if cursor is None:
        return None
    tag, _, rest = cursor.partition(":")
    score, _, job_id = rest.partition(":")
    try:
        if tag != _CURSOR_TAG:
            raise ValueError(tag)
        float(score)
        return score.encode("ascii"), bytes.fromhex(job_id)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ArgumentError(f"not a dead-letter cursor of this broker: {cursor[:80]!r}") from exc


def dead_query(where: DeadFilter) -> DeadQuery:
    return DeadQuery(
        task=where.task or "",
        needle=where.needle or "",
        since="" if where.since_ms is None else where.since_ms,
        until="" if where.until_ms is None else where.until_ms,
    )


class RedisDeadLetters(RedisContext):
    """Operators' search and re-drive of the dead letters."""

    async def find_dead(
        self, queue: QueueName, where: DeadFilter, cursor: str | None, limit: int
    ) -> DeadPage:
        after = decode_cursor(cursor)
        if limit <= 0:
            return DeadPage(jobs=[], cursor=cursor)
        keys = self._q(queue)
        with broker_errors("find_dead"):
            call = self._scripts.find_dead_jobs(
                keys, after=after, where=dead_query(where), limit=min(limit, BATCH)
            )
            window = await self._scripts.run(call)
            read = await read_jobs(self._redis, [(keys, job_id) for job_id, _ in window.found])
        jobs: list[Job] = [
            job
            for job, (_, judged) in zip(read, window.found, strict=True)
            if job is not None and (judged or where.error_matches(job.error))
        ]
        return DeadPage(jobs=jobs, cursor=encode_cursor(window.cursor))

    async def redrive_dead(
        self, queue: QueueName, job_id: JobId, payload: bytes | None, now_ms: int | None
    ) -> bool:
        with broker_errors("redrive_dead"):
            call = self._scripts.retry_dead_jobs(
                self._q(queue), job_ids=[job_id], now_ms=now_ms, payload=payload
            )
            moved, _ = await self._scripts.run(call)
        return moved == 1
