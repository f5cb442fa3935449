"""What a worker holds: every job it claimed until the broker has its outcome.

A job stays here from its claim until its outcome is written (or refused), not merely until
its task returns: that is the set reconciliation compares with what the broker says the
worker holds. A job the broker lists and this registry does not know is held without being
run, and is given back.

Every part that stops a job goes through `Registry.cancel` with a `CancelReason`, so the
runner learns why from the job itself. Each entry knows the asyncio task running it: the
heartbeat thread asks which job the task the loop is stepping runs, when the loop stalls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from corq.backends.base import ClaimedJob
from corq.context import CancelFlag
from corq.types import JobId, QueueName, WorkerId

Key = tuple[QueueName, JobId]


class CancelReason(Enum):
    """Why the worker cancelled a job it was running."""

    #: The worker is stopping: give the job back to the head of its queue.
    SHUTDOWN = "shutdown"
    #: The claim is gone or given up (lease lost, reconciliation found it held elsewhere,
    #: or an immediate stop): write nothing, the job is not ours any more.
    LOST = "lost"
    #: An operator cancelled it: the broker ended it already (fenced off), so nothing is
    #: written; a started thread gets a grace period to see ``current_job().cancelled``.
    OPERATOR = "operator"


@dataclass(eq=False, slots=True)
class Running:
    """A job this worker claimed and has not yet had recorded."""

    job: ClaimedJob
    #: The holder id it was claimed under (its queue's incarnation at claim time).
    holder: WorkerId
    #: The asyncio task executing it (set right after creation, cleared once it ends).
    task: asyncio.Task[None] | None = None
    #: Why the worker cancelled it, if it did.
    cancel_reason: CancelReason | None = None
    #: False until the task body actually began (sync and process jobs may wait for a slot).
    started: bool = False
    #: True once the task body can no longer be stopped by cancelling (a started thread job).
    unstoppable: bool = False
    #: True once the job's outcome is handed to the writer (or there is none to write).
    finished: bool = False
    #: Set while it waits in a batch (no task yet): cancelling it takes it out and ends it.
    withdraw: Callable[[Running], None] | None = None
    #: Set when an operator cancelled it: ``current_job().cancelled`` reads it (threads).
    cancel_flag: CancelFlag = field(default_factory=CancelFlag)

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
        """Hold a job from its claim on."""
        self._jobs[running.key] = running

    def get(self, queue: QueueName, job_id: JobId) -> Running | None:
        return self._jobs.get((queue, job_id))

    def finished(self, running: Running) -> None:
        """Its task ended (an outcome is on its way to the writer, or there is none)."""
        running.finished = True
        running.task = None  # let it be freed now, not when the outcome is written

    def remove(self, queue: QueueName, job_id: JobId, fence: int) -> Running | None:
        """Forget a job once its outcome for this claim (fence) is settled; the job forgotten."""
        running = self._jobs.get((queue, job_id))
        if running is None or running.job.fence != fence:
            return None
        del self._jobs[(queue, job_id)]
        return running

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

    def running_in(self, task: asyncio.Task[Any] | None) -> Running | None:
        """The job an asyncio task runs, if it runs one.

        Safe from another thread: copying the values is one step under the GIL, and only a
        stall asks (a scan then costs nothing a job would notice; an index would cost every
        job a dict entry).
        """
        if task is None:
            return None
        for running in list(self._jobs.values()):
            if running.task is task:
                return running
        return None

    @staticmethod
    def cancel(running: Running, reason: CancelReason, grace_s: float = 0.0) -> None:
        """Stop a job for `reason`; the runner reads the reason to decide what to write.

        An operator's cancel is never turned into another reason later (a shutdown must
        not release a job the broker ended). A started thread cancelled by an operator
        sees its flag first and is abandoned only after `grace_s`."""
        if running.cancel_reason is not CancelReason.OPERATOR:
            running.cancel_reason = reason
        if running.cancel_reason is CancelReason.OPERATOR:
            running.cancel_flag.raised = True
            task = running.task
            if running.unstoppable and task is not None and grace_s > 0:
                task.get_loop().call_later(grace_s, task.cancel)
                return
        if running.task is not None:
            running.task.cancel()
        elif running.withdraw is not None:
            running.withdraw(running)

    def find(self, job_id: JobId, queue: QueueName | None = None) -> Running | None:
        """The executing job with this id (in `queue`, or in any queue)."""
        if queue is not None:
            running = self._jobs.get((queue, job_id))
            return running if running is not None and running.executing else None
        return next((r for r in self.executing() if r.job.id == job_id), None)

    def cancel_held_by(self, queue: QueueName, holder: WorkerId, reason: CancelReason) -> int:
        """Cancel every executing job of `queue` claimed under `holder`; how many."""
        stopped = [r for r in self.executing() if r.job.queue == queue and r.holder == holder]
        for running in stopped:
            self.cancel(running, reason)
        return len(stopped)
