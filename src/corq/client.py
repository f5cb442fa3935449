"""The producer side: send jobs, look them up, wait for results, steer dead letters."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from corq.aio import reraise_if_cancelling
from corq.backends.base import Backend, NewJob, QueueStats
from corq.errors import (
    ArgumentError,
    BrokerError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    PayloadTooLargeError,
    ResultTimeoutError,
)
from corq.job import TERMINAL_STATES, Job, JobStatus
from corq.serializers import Serializer
from corq.task import EnqueueOptions, check_queue_name, check_task_name
from corq.types import Clock, JobId, QueueName, TaskName

if TYPE_CHECKING:
    from corq.task import Task

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long a producer keeps retrying while the broker is unreachable before raising.
ENQUEUE_RETRY_S = 30.0


class JobHandle:
    """A reference to one job, returned by enqueue."""

    __slots__ = ("_client", "id", "queue", "task")

    def __init__(self, client: Client, job_id: JobId, queue: QueueName, task: TaskName) -> None:
        self._client = client
        #: Job id.
        self.id = job_id
        #: Queue the job was sent to.
        self.queue = queue
        #: Task name.
        self.task = task

    def __repr__(self) -> str:
        return f"<JobHandle {self.task} id={self.id} queue={self.queue}>"

    async def info(self) -> Job:
        """The job's current record."""
        job = await self._client.get_job(self.id, self.queue)
        if job is None:
            raise JobNotFoundError(f"job {self.id} not found (finished and expired, or purged)")
        return job

    async def status(self) -> JobStatus:
        """The job's current state."""
        return (await self.info()).status

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the job to end and return its result; raise its error if it died."""
        return await self._client.wait_result(self.id, self.queue, timeout=timeout)

    async def cancel(self) -> bool:
        """Cancel the job if it has not started; True when it was cancelled."""
        return await self._client.cancel(self.id, self.queue)


class Client:
    """Producer API over one broker connection (bound to one event loop)."""

    def __init__(
        self,
        backend: Backend,
        *,
        serializer: Serializer,
        clock: Clock,
        max_payload_bytes: int,
        default_queue: QueueName = "default",
        registry: Mapping[TaskName, Task[Any, Any]] | None = None,
    ) -> None:
        self.backend = backend
        self.serializer = serializer
        self.clock = clock
        self.max_payload_bytes = max_payload_bytes
        self.default_queue = default_queue
        self.registry = registry or {}

    async def enqueue_calls(
        self,
        task: Task[Any, Any],
        calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        options: EnqueueOptions,
    ) -> list[JobHandle]:
        """Validate and send calls of a registered task (one round trip per batch)."""
        if options.job_id is not None and len(calls) > 1:
            raise ArgumentError("job_id can only be given when enqueueing one job")
        queue = check_queue_name(options.queue or task.options.queue)
        priority = task.options.priority if options.priority is None else options.priority
        payloads = [task.encode_payload(args, kwargs) for args, kwargs in calls]
        return await self._send(task.name, queue, payloads, options, priority)

    async def enqueue(
        self,
        task_name: TaskName,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: QueueName | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        job_id: JobId | None = None,
        priority: int | None = None,
    ) -> JobHandle:
        """Send a job by task name (validated when the task is registered in this process)."""
        options = EnqueueOptions(
            delay=delay, eta=eta, job_id=job_id, priority=priority, queue=queue
        )
        task = self.registry.get(task_name)
        if task is not None:
            return (await self.enqueue_calls(task, [(args, kwargs or {})], options))[0]
        check_task_name(task_name)
        payload = self.serializer.dumps({"args": list(args), "kwargs": kwargs or {}})
        target = check_queue_name(queue or self.default_queue)
        return (await self._send(task_name, target, [payload], options, priority or 0))[0]

    async def _send(
        self,
        task_name: TaskName,
        queue: QueueName,
        payloads: list[bytes],
        options: EnqueueOptions,
        priority: int,
    ) -> list[JobHandle]:
        _check_priority(priority)
        now = self.clock.now_ms()
        run_at = _run_at_ms(now, options)
        jobs = []
        for payload in payloads:
            if len(payload) > self.max_payload_bytes:
                raise PayloadTooLargeError(
                    f"task {task_name!r}: payload is {len(payload):,} bytes, over the limit of "
                    f"{self.max_payload_bytes:,} (settings.max_payload_bytes / "
                    "CORQ_MAX_PAYLOAD_BYTES)"
                )
            job_id = options.job_id or uuid.uuid4().hex
            jobs.append(
                NewJob(
                    id=job_id,
                    task=task_name,
                    queue=queue,
                    payload=payload,
                    priority=priority,
                    enqueued_at_ms=now,
                    run_at_ms=run_at,
                )
            )
        await self._with_retry(lambda: self.backend.enqueue_jobs(jobs), "enqueue")
        return [JobHandle(self, j.id, queue, task_name) for j in jobs]

    async def _with_retry(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Retry while the broker is unreachable; enqueue is idempotent by job id."""
        deadline = asyncio.get_running_loop().time() + ENQUEUE_RETRY_S
        delay = 0.05
        while True:
            try:
                return await call()
            except BrokerError as exc:
                reraise_if_cancelling()
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning(
                    "broker unreachable during %s (%s); retrying in %.2fs", what, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- reading ---------------------------------------------------------------------
    async def get_job(self, job_id: JobId, queue: QueueName | None = None) -> Job | None:
        return await self.backend.get_job(job_id, queue)

    def job(self, job_id: JobId, queue: QueueName, task: TaskName = "") -> JobHandle:
        return JobHandle(self, job_id, queue, task)

    async def wait_result(
        self, job_id: JobId, queue: QueueName, *, timeout: float | None = None
    ) -> Any:
        """Wait for the job's end without polling; its result, or its error raised."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = 60.0 if deadline is None else deadline - loop.time()
            job = await self.backend.wait_for_job(job_id, queue, max(0.0, min(remaining, 60.0)))
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found")
            if job.status in TERMINAL_STATES:
                return self._outcome(job)
            if deadline is not None and loop.time() >= deadline:
                raise ResultTimeoutError(f"job {job_id} still {job.status} after {timeout}s")

    def _outcome(self, job: Job) -> Any:
        if job.status is JobStatus.SUCCEEDED:
            task = self.registry.get(job.task)
            result_type = task.return_type if task is not None and task.return_type else Any
            return self.serializer.loads(job.result or b"null", result_type)
        if job.status is JobStatus.CANCELLED:
            raise JobCancelledError(f"job {job.id} was cancelled")
        raise JobFailedError(
            f"job {job.id} ({job.task}) {job.status} after {job.attempt} attempt(s): {job.error}",
            traceback=job.traceback,
        )

    async def cancel(self, job_id: JobId, queue: QueueName) -> bool:
        return await self.backend.cancel_job(job_id, queue, self.clock.now_ms())

    # -- operators -------------------------------------------------------------------
    async def queue_stats(self, queues: Sequence[QueueName] | None = None) -> list[QueueStats]:
        return await self.backend.queue_stats(queues)

    async def list_dead(self, queue: QueueName, offset: int = 0, limit: int = 50) -> list[Job]:
        return await self.backend.list_dead(queue, offset, limit)

    async def retry_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None = None) -> int:
        return await self.backend.retry_dead(queue, job_ids, self.clock.now_ms())

    async def purge_dead(self, queue: QueueName, job_ids: Sequence[JobId] | None = None) -> int:
        return await self.backend.purge_dead(queue, job_ids)

    async def close(self) -> None:
        await self.backend.close()


def _check_priority(priority: object) -> None:
    if not isinstance(priority, int) or not -100 <= priority <= 100:
        raise ArgumentError(f"priority must be an integer from -100 to 100, got {priority!r}")


def _run_at_ms(now_ms: int, options: EnqueueOptions) -> int:
    if options.delay is not None and options.eta is not None:
        raise ArgumentError("give delay or eta, not both")
    if options.delay is not None:
        delay = options.delay
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if seconds < 0:
            raise ArgumentError(f"delay must not be negative, got {seconds}")
        return now_ms + round(seconds * 1000)
    if options.eta is not None:
        eta = options.eta if options.eta.tzinfo else options.eta.replace(tzinfo=UTC)
        return max(now_ms, round(eta.timestamp() * 1000))
    return now_ms
