"""The storage contract every broker implements.

Nothing above ``corq.backends`` knows which broker it talks to. Every method is one atomic
step in the broker (one Lua script or pipeline on Redis, one transaction on SQLite), so a
crash between two calls never leaves a job half-moved.

Fencing: a worker claims jobs under its ``worker_id``; each claim gets a new ``fence``
number. Completing, failing or releasing a job succeeds only while the job is still held by
that worker under that fence; otherwise the call reports False and changes nothing.

Leases: a worker's registration in each queue has one lease deadline, renewed by
``heartbeat`` (cost O(queues), not O(jobs)). ``reclaim_stalled_jobs`` takes every job held
by a worker whose lease passed and counts a death on it (``deaths + 1``, the worker id added
to its death log). Then:

- if it was running *isolated* and now has ``deaths >= max_deaths``: dead, a poison job;
- else if ``deaths >= max_deaths - 1``: it becomes a *suspect* (status queued, record flag
  ``suspect``), kept apart from the ready jobs;
- else: queued again at its old place (the head of the queue).

Suspects are handed out only to an idle worker (``claim_jobs(idle=True)``), one at a time,
as an *isolated* claim: the worker runs nothing else until it ends. So a job is declared
poison only after it killed a worker while running alone, and innocent jobs that happened
to share a worker with a poison job are never blamed for its crashes. A suspect that is
released, or fails and is retried, goes back among the suspects; ``retry_dead`` clears the
flag with the rest of the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from corq.job import Job
from corq.types import JobId, QueueName, TaskName, WorkerId


@dataclass(frozen=True, kw_only=True, slots=True)
class NewJob:
    """A job as a producer hands it over."""

    #: Unique id; enqueueing an id that already exists is a no-op reported as False.
    id: JobId
    #: Registered task name.
    task: TaskName
    #: Queue to wait in.
    queue: QueueName
    #: Encoded arguments.
    payload: bytes
    #: Higher runs first.
    priority: int = 0
    #: When the producer enqueued it.
    enqueued_at_ms: int
    #: When it may start; greater than now means ``scheduled`` (the delayed set).
    run_at_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimedJob:
    """A job a worker now holds and must finish, fail or release."""

    #: Job id.
    id: JobId
    #: Registered task name.
    task: TaskName
    #: Queue it came from.
    queue: QueueName
    #: Encoded arguments.
    payload: bytes
    #: This attempt's number (1 on the first run).
    attempt: int
    #: Earlier attempts that raised or timed out.
    failures: int
    #: Earlier attempts whose worker died.
    deaths: int
    #: Claim number; passed back when the outcome is recorded.
    fence: int
    #: When the producer enqueued it.
    enqueued_at_ms: int
    #: When it became due (enqueue time, or the end of its delay).
    run_at_ms: int
    #: Priority it was enqueued with.
    priority: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimBatch:
    """What one ``claim_jobs`` call returns."""

    #: Jobs now held by the worker (at most the count asked for).
    jobs: list[ClaimedJob]
    #: True when the worker was not registered in this queue any more: its lease expired
    #: and its earlier jobs were reclaimed. Nothing was claimed; register again.
    lost: bool = False
    #: Earliest run time in the delayed set, if any (after promoting due ones).
    next_due_ms: int | None = None
    #: Suspect jobs waiting for an idle worker (see module docstring).
    suspects: int = 0
    #: True when `jobs` is exactly one suspect: run it alone, claim nothing until it ends.
    isolated: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """A successful attempt."""

    job_id: JobId
    queue: QueueName
    fence: int
    #: Encoded return value.
    result: bytes
    finished_at_ms: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    """A failed attempt: retried at ``retry_at_ms``, or dead when that is None."""

    job_id: JobId
    queue: QueueName
    fence: int
    #: One-line error (``ValueError: boom``).
    error: str
    #: Formatted traceback, if any.
    traceback: str | None
    #: When to run again; None sends the job to the dead letters.
    retry_at_ms: int | None
    finished_at_ms: int
    #: False when the attempt never ran the task body (unknown task, undecodable payload):
    #: such a failure does not count against the retries.
    counted: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class Release:
    """Give a held job back to the head of its queue (shutdown)."""

    job_id: JobId
    queue: QueueName
    fence: int
    #: True when the task body never started: the attempt is not counted.
    unstarted: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Reclaimed:
    """A job taken back from a worker whose lease expired."""

    job_id: JobId
    queue: QueueName
    #: The worker that died holding it.
    worker_id: WorkerId
    #: True when this death made it a poison job (now dead).
    dead: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueStats:
    """Counts for one queue."""

    queue: QueueName
    #: Jobs ready to run now (suspects included).
    ready: int
    #: Jobs waiting for their time (delays and retry backoff).
    delayed: int
    #: Jobs held by workers.
    in_flight: int
    #: Jobs in the dead letters.
    dead: int
    #: Live workers registered on the queue.
    workers: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerLease:
    """Registration of one worker, renewed by heartbeats."""

    worker_id: WorkerId
    queues: Sequence[QueueName]
    #: How long a heartbeat keeps the worker alive.
    lease_ms: int


class Backend(Protocol):
    """Storage contract shared by the Redis and SQLite brokers."""

    # -- producer side -------------------------------------------------------------
    async def enqueue_jobs(self, jobs: Sequence[NewJob]) -> list[bool]:
        """Store jobs atomically per queue; True per job created, False for an existing id.

        Jobs with ``run_at_ms`` in the future go to the delayed set (``scheduled``).
        Idle workers of the queue are woken.
        """
        ...

    async def get_job(self, job_id: JobId, queue: QueueName | None = None) -> Job | None:
        """The job's record, or None; without a queue every known queue is searched."""
        ...

    async def wait_for_job(self, job_id: JobId, queue: QueueName, timeout_s: float) -> Job | None:
        """Block (without sleep-polling) until the job is in a terminal state or the time is
        up; returns the latest record either way (None if it does not exist)."""
        ...

    async def cancel_job(self, job_id: JobId, queue: QueueName, now_ms: int) -> bool:
        """Cancel a scheduled, queued or failed-awaiting-retry job; False if not cancellable."""
        ...

    # -- worker side ---------------------------------------------------------------
    async def register_worker(self, lease: WorkerLease, now_ms: int) -> None:
        """Add (or re-add) the worker to each of its queues with a fresh lease."""
        ...

    async def deregister_worker(self, lease: WorkerLease) -> None:
        """Remove the worker after a clean shutdown (it must hold no jobs)."""
        ...

    async def heartbeat(self, lease: WorkerLease, now_ms: int) -> list[QueueName]:
        """Renew the lease in every queue; returns the queues where the worker was no longer
        registered (its jobs there were reclaimed). Those queues are not re-added."""
        ...

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
        """Promote due delayed jobs, then take up to `count` ready jobs (highest priority,
        then oldest) as held by the worker, status running, attempt + 1, new fence.

        When `idle` (the worker runs nothing at all) and suspects wait, take exactly one
        suspect instead, as an isolated claim (``ClaimBatch.isolated``)."""
        ...

    async def set_progress(
        self, job_id: JobId, queue: QueueName, worker_id: WorkerId, fence: int, progress: float
    ) -> bool:
        """Record a running job's progress (0.0 to 1.0), fenced like an outcome."""
        ...

    async def wait_for_jobs(self, queue: QueueName, timeout_s: float) -> bool:
        """Block until the queue may have work (a wake signal) or the timeout; True if woken."""
        ...

    async def promote_due_jobs(self, queue: QueueName, now_ms: int) -> int | None:
        """Move delayed jobs whose time has come to the ready queue (waking workers);
        returns the earliest remaining run time, or None."""
        ...

    async def complete_jobs(
        self, worker_id: WorkerId, completions: Sequence[Completion], result_ttl_ms: int
    ) -> list[bool]:
        """Record results (fenced); the records expire after `result_ttl_ms`."""
        ...

    async def fail_jobs(
        self, worker_id: WorkerId, failures: Sequence[Failure], result_ttl_ms: int
    ) -> list[bool]:
        """Record failed attempts (fenced): to the delayed set for a retry, or dead."""
        ...

    async def release_jobs(self, worker_id: WorkerId, releases: Sequence[Release]) -> list[bool]:
        """Give held jobs back to the head of their queue (fenced)."""
        ...

    async def reclaim_stalled_jobs(
        self, queue: QueueName, now_ms: int, max_deaths: int
    ) -> list[Reclaimed]:
        """Take back the jobs of every worker whose lease expired (see module docstring)."""
        ...

    # -- operators -------------------------------------------------------------------
    async def list_queues(self) -> list[QueueName]:
        """Every queue that has ever been enqueued to or served."""
        ...

    async def queue_stats(self, queues: Sequence[QueueName] | None = None) -> list[QueueStats]:
        """Counts per queue (all known queues when None)."""
        ...

    async def list_dead(self, queue: QueueName, offset: int = 0, limit: int = 50) -> list[Job]:
        """Dead jobs, newest first."""
        ...

    async def retry_dead(
        self, queue: QueueName, job_ids: Sequence[JobId] | None, now_ms: int
    ) -> int:
        """Queue dead jobs again (all when `job_ids` is None) with a fresh retry budget;
        returns how many moved."""
        ...

    async def purge_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None) -> int:
        """Delete dead jobs (all when None); returns how many."""
        ...

    # -- lifecycle -------------------------------------------------------------------
    async def ping(self) -> None:
        """Raise BrokerError unless the broker answers."""
        ...

    def clone(self) -> Backend:
        """A new backend on the same store with its own connections (another thread/loop)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
