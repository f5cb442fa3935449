"""Operator calls on single jobs and live workers: cancel a job wherever it is, read a
running worker's stacks (``corq job cancel``, ``corq inspect WORKER --stacks``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from corq.admin.base import AdminBase
from corq.backends.base import HOLDER_SEPARATOR, ControlMessage
from corq.control import ALL_WORKERS, ControlKind
from corq.errors import (
    ArgumentError,
    JobNotCancellableError,
    JobNotFoundError,
    WorkerNotAnsweringError,
)
from corq.job import JobStatus
from corq.names import check_queue_name
from corq.producer_checks import check_lookup_id
from corq.stacks import WorkerStacks
from corq.types import JobId, QueueName

#: Longest an inspection may wait for its answer.
MAX_INSPECT_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelledJob:
    """What ``cancel`` did."""

    job_id: JobId
    queue: QueueName
    #: The state it was cancelled in (running: its worker was told to stop it).
    was: JobStatus
    #: The worker that was running it (its worker id, not a holder id), if it was running.
    worker_id: str | None = None


class JobsAdmin(AdminBase):
    """Cancellation and live inspection."""

    async def cancel(self, job_id: JobId, queue: QueueName | None = None) -> CancelledJob:
        """Cancel a job in any state that has not ended (running ones are stopped on their
        worker within milliseconds, or at its next reconciliation). Without `queue` every
        known queue is searched. Raises JobNotFoundError (no such job) or
        JobNotCancellableError (it ended already)."""
        check_lookup_id(job_id)
        name = None if queue is None else check_queue_name(queue)
        job = await self.backend.get_job(job_id, name)
        if job is None:
            where = f" in queue {name!r}" if name else ""
            raise JobNotFoundError(f"no job {job_id!r}{where} (never sent, or expired)")
        if not await self.client.cancel(job.id, job.queue):
            now = await self.backend.get_job(job.id, job.queue)
            state = job.status if now is None else now.status
            raise JobNotCancellableError(f"job {job_id!r} has ended already ({state})")
        holder = job.worker_id if job.status is JobStatus.RUNNING else None
        return CancelledJob(
            job_id=job.id,
            queue=job.queue,
            was=job.status,
            worker_id=None if not holder else holder.split(HOLDER_SEPARATOR, 1)[0],
        )

    async def inspect_stacks(self, worker_id: str, timeout: float = 2.0) -> WorkerStacks:
        """Every asyncio task's coroutine stack and every thread's stack of a live worker,
        asked through the broker (the worker keeps running). Raises
        WorkerNotAnsweringError when no answer comes within `timeout` seconds."""
        if not worker_id or worker_id == ALL_WORKERS:
            raise ArgumentError(f"inspect needs one worker id, not {worker_id!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ArgumentError(f"timeout must be a number of seconds, not {timeout!r}")
        if not 0 < timeout <= MAX_INSPECT_TIMEOUT_S:
            raise ArgumentError(f"timeout must be within (0, {MAX_INSPECT_TIMEOUT_S:g}] seconds")
        request_id = uuid.uuid4().hex
        message = ControlMessage(
            kind=ControlKind.INSPECT, worker_id=worker_id, request_id=request_id, body=b"stacks"
        )
        await self.backend.send_control(message)
        reply = await self.backend.take_reply(request_id, timeout)
        if reply is None:
            raise WorkerNotAnsweringError(
                f"worker {worker_id!r} did not answer within {timeout:g}s "
                "(not running, not on this broker, or another id)"
            )
        return WorkerStacks.from_json(reply)
