"""What a worker holds: every job it claimed until the broker has its outcome.

A job stays here from its claim until its outcome is written (or refused), not merely until
its task returns: that is the set reconciliation compares with what the broker says the
worker holds. A job the broker lists and this registry does not know is held without being
run, and is given back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from corq.backends.base import ClaimedJob
from corq.types import JobId, QueueName, WorkerId

Key = tuple[QueueName, JobId]


class CancelReason(Enum):
    """Why the worker cancelled a job it was running."""

    #: The worker is stopping: give the job back to the head of its queue.
    SHUTDOWN = "shutdown"
    #: The claim is gone (lease lost, or reconciliation found it held elsewhere): write
    #: nothing, the job is not ours any more.
    LOST = "lost"


@dataclass(eq=False, slots=True)
class Running:
    """A job this worker claimed and has not yet had recorded."""

    job: ClaimedJob
    #: The holder id it was claimed under (its queue's incarnation at claim time).
    holder: WorkerId
    #: The asyncio task executing it (set right after creation).
    task: asyncio.Task[None] | None = None
    #: Why the worker cancelled it, if it did.
    cancel_reason: CancelReason | None = None
    #: False until the task body actually began (sync and process jobs may wait for a slot).
    started: bool = False
    #: True once the task body can no longer be stopped by cancelling (a started thread job).
    unstoppable: bool = False
    #: True once the job's outcome is handed to the writer (or there is none to write).
    finished: bool = False

    @property
    def key(self) -> Key:
        return (self.job.queue, self.job.id)

    @property
    def executing(self) -> bool:
        """True while its task has not produced an outcome yet."""
        return not self.finished


@dataclass
class Registry:
    """Jobs by (queue, id); a job id is unique only within its queue."""

    _jobs: dict[Key, Running] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Running]:
        return iter(list(self._jobs.values()))

    def add(self, running: Running) -> None:
        self._jobs[running.key] = running

    def get(self, queue: QueueName, job_id: JobId) -> Running | None:
        return self._jobs.get((queue, job_id))

    def remove(self, queue: QueueName, job_id: JobId, fence: int) -> None:
        """Forget a job once its outcome for this claim (fence) is settled."""
        running = self._jobs.get((queue, job_id))
        if running is not None and running.job.fence == fence:
            del self._jobs[(queue, job_id)]

    def executing(self) -> list[Running]:
        """Jobs whose task has not produced an outcome yet."""
        return [r for r in self._jobs.values() if r.executing]

    def held_by(self, queue: QueueName, holder: WorkerId) -> dict[JobId, int]:
        """Job id -> fence of what this worker holds in `queue` under `holder`."""
        return {
            r.job.id: r.job.fence
            for r in self._jobs.values()
            if r.job.queue == queue and r.holder == holder
        }
