"""The replies of the Lua scripts, parsed into typed values.

Every parser takes what one script returns (see its header's ``Returns:``) and never fails
on what a script checked: ids a script validated as UTF-8 decode, numbers it checked are
integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corq.backends.base import ClaimBatch, ClaimedJob, HeldJob
from corq.types import JobId, QueueName, WorkerId

#: What claim_jobs.lua returns per job, in order (a flat reply, len(CLAIMED_FIELDS) apiece).
CLAIMED_FIELDS = (
    "id",
    "task",
    "payload",
    "attempt",
    "failures",
    "deaths",
    "fence",
    "enqueued_at_ms",
    "run_at_ms",
    "priority",
    "suspect",
)


@dataclass(frozen=True, slots=True)
class StalledJob:
    """One job a ``reclaim_stalled_jobs`` call took back."""

    holder: WorkerId
    job_id: JobId
    #: Sent to the dead letters (backstop reached, or a damaged record).
    dead: bool
    #: Given back without a death (its holder had departed).
    released: bool


@dataclass(frozen=True, slots=True)
class StalledBatch:
    """What one ``reclaim_stalled_jobs`` call did."""

    done: bool
    jobs: list[StalledJob]


@dataclass(frozen=True, slots=True)
class HeldStep:
    """One SSCAN step of ``list_held_jobs``: the jobs seen, and where to go on ("0": done)."""

    cursor: str
    jobs: list[HeldJob]


@dataclass(frozen=True, slots=True)
class Promoted:
    """What one ``promote_due_jobs`` call did."""

    count: int
    next_due_ms: int | None
    more: bool


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """What ``count_queue_jobs`` read (see QueueStats)."""

    ready: int
    delayed: int
    dead: int
    workers: int
    in_flight: int


def text(value: bytes) -> str:
    """Text as stored; bytes that are not UTF-8 (written by another program) are replaced."""
    return value.decode("utf-8", "replace")


def decode_id(value: bytes) -> JobId:
    """A job id a script checked is UTF-8; surrogates keep any other byte, never crash."""
    return value.decode("utf-8", "surrogateescape")


def score(value: bytes | int | None) -> int | None:
    """Scores come back as Redis prints doubles (maybe ``1.7e+12``), so go through float."""
    return None if value is None else int(float(value))


def flags(reply: list[int]) -> list[bool]:
    return [bool(flag) for flag in reply]


def pair(reply: list[int]) -> tuple[int, int]:
    return int(reply[0]), int(reply[1])


def claimed(queue: QueueName, row: list[Any]) -> ClaimedJob:
    """One job of a claim reply (fields in CLAIMED_FIELDS order; unpacked by name, which is
    also the fastest way: a claim parses thousands)."""
    (
        job_id,
        task,
        payload,
        attempt,
        failures,
        deaths,
        fence,
        enqueued_at_ms,
        run_at_ms,
        priority,
        suspect,
    ) = row
    return ClaimedJob(
        id=decode_id(job_id),
        task=text(task),
        queue=queue,
        payload=payload,
        attempt=attempt,
        failures=failures,
        deaths=deaths,
        fence=fence,
        enqueued_at_ms=enqueued_at_ms,
        run_at_ms=run_at_ms,
        priority=priority,
        suspect=suspect == 1,
    )


def claim_batch(queue: QueueName, reply: list[Any]) -> ClaimBatch:
    if reply[0] == 1:
        return ClaimBatch(jobs=[], lost=True)
    width = len(CLAIMED_FIELDS)
    jobs = [claimed(queue, reply[at : at + width]) for at in range(3, len(reply), width)]
    return ClaimBatch(jobs=jobs, next_due_ms=score(reply[1]), suspects=int(reply[2]))


def promoted(reply: list[Any]) -> Promoted:
    return Promoted(count=int(reply[0]), next_due_ms=score(reply[1]), more=reply[2] == 1)


def stalled(reply: list[Any]) -> StalledBatch:
    jobs = [
        StalledJob(holder=text(h), job_id=decode_id(j), dead=d == 1, released=r == 1)
        for h, j, d, r in reply[1:]
    ]
    return StalledBatch(done=reply[0] == 1, jobs=jobs)


def held_step(reply: list[Any]) -> HeldStep:
    jobs = [HeldJob(job_id=decode_id(job_id), fence=int(fence)) for job_id, fence in reply[1:]]
    return HeldStep(cursor=text(reply[0]), jobs=jobs)


def counts(reply: list[int]) -> QueueCounts:
    return QueueCounts(*(int(n) for n in reply))


def names(reply: list[bytes]) -> list[bytes]:
    return list(reply)
