"""Reading job records in one round trip, whatever state they are in.

Each record is read with TYPE and HGETALL in one pipeline that does not raise on a
command's error (``raise_on_error=False``): a key of another type where a record should be
becomes a synthetic dead job saying so, a damaged hash reads field by field (see
``records.py``), so one bad key never hides the others from ``get_job`` or ``list_dead``.
An outage still raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from corq.backends.redis.keys import QueueKeys
from corq.backends.redis.records import Record, job_from_record, wrong_type_job
from corq.job import Job
from corq.types import JobId


def _record_key(keys: QueueKeys, job_id: JobId | bytes) -> str | bytes:
    """An id read back from Redis stays bytes: it may not be UTF-8 (another program's)."""
    if isinstance(job_id, bytes):
        return keys.job_prefix.encode() + job_id
    return keys.job(job_id)


async def read_jobs(
    client: Redis, wanted: Sequence[tuple[QueueKeys, JobId | bytes]]
) -> list[Job | None]:
    """The job of each (queue keys, id), or None where there is no such key."""
    if not wanted:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for keys, job_id in wanted:
            key = _record_key(keys, job_id)
            pipe.type(key)
            pipe.hgetall(key)
        replies = await pipe.execute(raise_on_error=False)
    jobs: list[Job | None] = []
    for at, (keys, job_id) in enumerate(wanted):
        kind, record = replies[2 * at], replies[2 * at + 1]
        if isinstance(kind, BaseException):
            raise kind
        kind_name = cast(bytes, kind).decode()
        text_id = job_id.decode("utf-8", "replace") if isinstance(job_id, bytes) else job_id
        if kind_name == "none":
            jobs.append(None)
        elif kind_name != "hash" or isinstance(record, BaseException):
            jobs.append(wrong_type_job(text_id, keys.queue, kind_name))
        else:
            jobs.append(job_from_record(cast(Record, record), text_id, keys.queue))
    return jobs
