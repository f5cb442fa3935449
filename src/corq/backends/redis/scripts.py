"""Typed wrappers of the Lua scripts in ``lua/``: one method per script, named like its file.

A wrapper does not talk to Redis: it packs its named parameters into KEYS/ARGV and returns
a :class:`ScriptCall` that knows how to parse the reply. :meth:`Scripts.run` runs one call
(EVALSHA, loading the script again if Redis answers NOSCRIPT, e.g. after a restart or a
``SCRIPT FLUSH``); :meth:`Scripts.run_all` sends many in one pipeline round trip, which is
how operations spanning queues or big batches stay a single round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from corq.backends.base import ClaimBatch, ClaimedJob, Failure, NewJob, Release
from corq.backends.redis.keys import PRIORITY_MAX, QueueKeys
from corq.types import JobId, QueueName, WorkerId

T = TypeVar("T")
Item = TypeVar("Item")

#: Longest a queue's wake list may grow: enough to wake every idle worker of a big pool,
#: small enough that a burst of enqueues does not leave thousands of stale tokens.
WAKE_CAP = 64
#: Most delayed jobs one claim or promotion moves, so one script call stays short.
PROMOTE_LIMIT = 1000
#: Jobs per script call: big enough to amortise the round trip, small enough that one call
#: blocks Redis for only a few milliseconds.
BATCH = 1000
#: Payload (or result) bytes per script call, so big payloads make smaller calls.
BATCH_BYTES = 4 * 1024 * 1024


def chunks(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batches(indices: list[int], size_of: Callable[[int], int]) -> Iterator[list[int]]:
    """Cut `indices` into runs of at most BATCH items and (roughly) BATCH_BYTES bytes."""
    batch: list[int] = []
    total = 0
    for index in indices:
        size = size_of(index)
        if batch and (len(batch) == BATCH or total + size > BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(index)
        total += size
    if batch:
        yield batch


def by_queue(
    items: Sequence[Item], queue_of: Callable[[Item], QueueName]
) -> dict[QueueName, list[int]]:
    """Indices of `items` per queue, in order (one script call serves one queue)."""
    groups: dict[QueueName, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(queue_of(item), []).append(index)
    return groups


@dataclass(frozen=True, slots=True)
class ScriptCall(Generic[T]):
    """One script invocation, ready to run alone or in a pipeline."""

    script: AsyncScript
    keys: list[str]
    args: list[str | bytes | int]
    parse: Callable[[Any], T]


@dataclass(frozen=True, slots=True)
class StalledBatch:
    """What one ``reclaim_stalled_jobs`` call did: (worker, job id, dead) per job."""

    done: bool
    jobs: list[tuple[WorkerId, JobId, bool]]


@dataclass(frozen=True, slots=True)
class QueueCounts:
    ready: int
    delayed: int
    dead: int
    workers: int
    in_flight: int


def _source(name: str) -> str:
    return resources.files("corq.backends.redis").joinpath(f"lua/{name}.lua").read_text("utf-8")


def _text(value: bytes) -> str:
    return value.decode("utf-8")


def _score(value: bytes | int | None) -> int | None:
    """Scores come back as Redis prints doubles (maybe ``1.7e+12``), so go through float."""
    return None if value is None else int(float(value))


def _flags(reply: list[int]) -> list[bool]:
    return [bool(flag) for flag in reply]


def _pair(reply: list[int]) -> tuple[int, int]:
    return int(reply[0]), int(reply[1])


def _claim_batch(queue: QueueName, reply: list[Any]) -> ClaimBatch:
    if reply[0] == 1:
        return ClaimBatch(jobs=[], lost=True)
    suspects, isolated = int(reply[2]), reply[3] == 1
    jobs = [
        ClaimedJob(
            id=_text(reply[at]),
            task=_text(reply[at + 1]),
            queue=queue,
            payload=reply[at + 2],
            attempt=int(reply[at + 3]),
            failures=int(reply[at + 4]),
            deaths=int(reply[at + 5]),
            fence=int(reply[at + 6]),
            enqueued_at_ms=int(reply[at + 7]),
            run_at_ms=int(reply[at + 8]),
            priority=int(reply[at + 9]),
        )
        for at in range(4, len(reply), 10)
    ]
    return ClaimBatch(
        jobs=jobs, next_due_ms=_score(reply[1]), suspects=suspects, isolated=isolated and bool(jobs)
    )


def _promoted(reply: list[Any]) -> tuple[int, int | None]:
    return int(reply[0]), _score(reply[1])


def _stalled(reply: list[Any]) -> StalledBatch:
    jobs = [
        (_text(reply[at]), _text(reply[at + 1]), reply[at + 2] == 1)
        for at in range(1, len(reply), 3)
    ]
    return StalledBatch(done=reply[0] == 1, jobs=jobs)


def _counts(reply: list[int]) -> QueueCounts:
    return QueueCounts(*(int(n) for n in reply))


class Scripts:
    """The scripts, registered on one client (their SHA1s are computed once)."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._loaded: dict[str, AsyncScript] = {}

    def _call(
        self, name: str, keys: list[str], args: list[str | bytes | int], parse: Callable[[Any], T]
    ) -> ScriptCall[T]:
        script = self._loaded.get(name)
        if script is None:
            script = self._loaded[name] = self._client.register_script(_source(name))
        return ScriptCall(script, keys, args, parse)

    async def run(self, call: ScriptCall[T]) -> T:
        """EVALSHA one call (redis-py loads the script on NOSCRIPT and retries once)."""
        return call.parse(await call.script(keys=call.keys, args=call.args))

    async def run_all(self, calls: Sequence[ScriptCall[T]]) -> list[T]:
        """Run the calls in one pipeline round trip (no MULTI: each script is atomic)."""
        if len(calls) <= 1:
            return [await self.run(call) for call in calls]
        async with self._client.pipeline(transaction=False) as pipe:
            for call in calls:
                await call.script(keys=call.keys, args=call.args, client=pipe)
            replies = await pipe.execute()
        return [call.parse(reply) for call, reply in zip(calls, replies, strict=True)]

    # -- one wrapper per lua/*.lua ----------------------------------------------------
    def enqueue_jobs(self, keys: QueueKeys, *, jobs: Sequence[NewJob]) -> ScriptCall[list[bool]]:
        args: list[str | bytes | int] = [keys.job_prefix, keys.queue, PRIORITY_MAX, WAKE_CAP]
        for job in jobs:
            args += [job.id, job.task, job.payload, job.priority, job.enqueued_at_ms, job.run_at_ms]
        queue_keys = [keys.ready, keys.delayed, keys.seq, keys.wake]
        return self._call("enqueue_jobs", queue_keys, args, _flags)

    def claim_jobs(
        self,
        keys: QueueKeys,
        *,
        worker_id: WorkerId,
        count: int,
        lease_ms: int,
        now_ms: int,
        idle: bool = False,
    ) -> ScriptCall[ClaimBatch]:
        return self._call(
            "claim_jobs",
            [
                keys.workers,
                keys.ready,
                keys.delayed,
                keys.seq,
                keys.wake,
                keys.held(worker_id),
                keys.suspects,
            ],
            [
                keys.job_prefix,
                worker_id,
                count,
                lease_ms,
                now_ms,
                PROMOTE_LIMIT,
                PRIORITY_MAX,
                int(idle),
            ],
            partial(_claim_batch, keys.queue),
        )

    def promote_due_jobs(
        self, keys: QueueKeys, *, now_ms: int
    ) -> ScriptCall[tuple[int, int | None]]:
        return self._call(
            "promote_due_jobs",
            [keys.delayed, keys.ready, keys.seq, keys.wake, keys.suspects],
            [keys.job_prefix, now_ms, PROMOTE_LIMIT, PRIORITY_MAX, WAKE_CAP],
            _promoted,
        )

    def complete_jobs(
        self,
        keys: QueueKeys,
        *,
        worker_id: WorkerId,
        jobs: Sequence[tuple[JobId, int, bytes, int]],
        result_ttl_ms: int,
    ) -> ScriptCall[list[bool]]:
        """`jobs`: (id, fence, result, finished_at_ms) each."""
        args: list[str | bytes | int] = [
            keys.job_prefix,
            keys.done_prefix,
            worker_id,
            result_ttl_ms,
        ]
        for job_id, fence, result, finished_at_ms in jobs:
            args += [job_id, fence, result, finished_at_ms]
        return self._call("complete_jobs", [keys.held(worker_id)], args, _flags)

    def fail_jobs(
        self, keys: QueueKeys, *, worker_id: WorkerId, failures: Sequence[Failure]
    ) -> ScriptCall[list[bool]]:
        args: list[str | bytes | int] = [keys.job_prefix, keys.done_prefix, worker_id, WAKE_CAP]
        for f in failures:
            retry_at = "" if f.retry_at_ms is None else f.retry_at_ms
            args += [f.job_id, f.fence, int(f.counted), f.error, f.traceback or "", retry_at]
            args.append(f.finished_at_ms)
        queue_keys = [keys.held(worker_id), keys.delayed, keys.dead, keys.wake]
        return self._call("fail_jobs", queue_keys, args, _flags)

    def release_jobs(
        self, keys: QueueKeys, *, worker_id: WorkerId, releases: Sequence[Release]
    ) -> ScriptCall[list[bool]]:
        args: list[str | bytes | int] = [keys.job_prefix, worker_id, WAKE_CAP]
        for r in releases:
            args += [r.job_id, r.fence, int(r.unstarted)]
        return self._call(
            "release_jobs",
            [keys.held(worker_id), keys.ready, keys.wake, keys.suspects],
            args,
            _flags,
        )

    def reclaim_stalled_jobs(
        self, keys: QueueKeys, *, now_ms: int, max_deaths: int, limit: int
    ) -> ScriptCall[StalledBatch]:
        return self._call(
            "reclaim_stalled_jobs",
            [keys.workers, keys.ready, keys.dead, keys.wake, keys.suspects],
            [
                keys.job_prefix,
                keys.held_prefix,
                keys.done_prefix,
                now_ms,
                max_deaths,
                limit,
                WAKE_CAP,
            ],
            _stalled,
        )

    def heartbeat_worker(
        self, keys: QueueKeys, *, worker_id: WorkerId, deadline_ms: int
    ) -> ScriptCall[bool]:
        return self._call("heartbeat_worker", [keys.workers], [worker_id, deadline_ms], bool)

    def deregister_worker(self, keys: QueueKeys, *, worker_id: WorkerId) -> ScriptCall[bool]:
        return self._call(
            "deregister_worker", [keys.workers, keys.held(worker_id)], [worker_id], bool
        )

    def cancel_job(
        self, keys: QueueKeys, *, job_id: JobId, now_ms: int, ttl_ms: int
    ) -> ScriptCall[bool]:
        return self._call(
            "cancel_job",
            [keys.job(job_id), keys.ready, keys.delayed, keys.suspects],
            [job_id, keys.done(job_id), now_ms, ttl_ms],
            bool,
        )

    def set_progress(
        self, keys: QueueKeys, *, job_id: JobId, worker_id: WorkerId, fence: int, progress: float
    ) -> ScriptCall[bool]:
        return self._call(
            "set_progress", [keys.job(job_id)], [worker_id, fence, repr(float(progress))], bool
        )

    def retry_dead_jobs(
        self, keys: QueueKeys, *, job_ids: Sequence[JobId], now_ms: int, limit: int
    ) -> ScriptCall[tuple[int, int]]:
        """No `job_ids`: the `limit` oldest dead jobs. Returns (moved, looked at)."""
        return self._call(
            "retry_dead_jobs",
            [keys.dead, keys.ready, keys.seq, keys.wake],
            [keys.job_prefix, now_ms, PRIORITY_MAX, WAKE_CAP, limit, *job_ids],
            _pair,
        )

    def purge_dead_jobs(
        self, keys: QueueKeys, *, job_ids: Sequence[JobId], limit: int
    ) -> ScriptCall[tuple[int, int]]:
        """No `job_ids`: the `limit` oldest dead jobs. Returns (purged, looked at)."""
        return self._call("purge_dead_jobs", [keys.dead], [keys.job_prefix, limit, *job_ids], _pair)

    def count_queue_jobs(self, keys: QueueKeys) -> ScriptCall[QueueCounts]:
        return self._call(
            "count_queue_jobs",
            [keys.ready, keys.delayed, keys.dead, keys.workers, keys.suspects],
            [keys.held_prefix],
            _counts,
        )
