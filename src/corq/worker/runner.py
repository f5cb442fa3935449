"""Run one claimed job and turn what happened into an outcome for the broker."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import logging
import multiprocessing
import os
import traceback
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from corq.backends.base import ClaimedJob, Completion, Failure, Release
from corq.context import bind_job
from corq.errors import Retry, SerializationError
from corq.serializers import Serializer
from corq.task import Task
from corq.types import Clock, TaskName

log = logging.getLogger(__name__)

Outcome = Completion | Failure | Release
#: What the worker binds for current_job(): id, task, queue, attempt, enqueued_at_ms.
JobTuple = tuple[str, str, str, int, int]


@dataclass(eq=False)
class Running:
    """A job this worker is running."""

    job: ClaimedJob
    #: The asyncio task executing it (set right after creation).
    task: asyncio.Task[None] | None = None
    #: Why the worker cancelled it: "shutdown" (re-queue) or "lost" (claim gone; write nothing).
    cancel_reason: str | None = None
    #: False until the task body actually began (sync jobs may wait for a pool thread).
    started: bool = field(default=False)
    #: True for a suspect job, which runs alone on this worker.
    isolated: bool = False


class Runner:
    """Calls task functions: coroutines on the loop, plain functions in pools."""

    def __init__(
        self,
        registry: Mapping[TaskName, Task[Any, Any]],
        serializer: Serializer,
        clock: Clock,
        *,
        threads: int,
        processes: int,
        report: Callable[[ClaimedJob, float], Coroutine[Any, Any, bool]] | None = None,
    ) -> None:
        self.report = report
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.registry = registry
        self.serializer = serializer
        self.clock = clock
        self.threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="corq-job")
        self._processes_n = processes or os.cpu_count() or 1
        self._processes: ProcessPoolExecutor | None = None

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self._event_loop is None:
            self._event_loop = asyncio.get_running_loop()
        return self._event_loop

    async def run(self, running: Running) -> Outcome | None:
        """Execute the job; None when nothing should be written (its claim was lost)."""
        job = running.job
        if not job.task:
            return self._dead(job, "corrupted job record: it has no task name")
        task = self.registry.get(job.task)
        if task is None:
            return self._dead(job, f"unknown task '{job.task}'")
        try:
            args, kwargs = task.decode_payload(self.serializer.loads(job.payload))
        except Exception as exc:  # any decode problem means this message is bad
            return self._dead(job, f"corrupted job payload: {type(exc).__name__}: {exc}")
        # asyncio.timeout costs even when unbounded: only use it for tasks with a timeout.
        deadline = asyncio.timeout(task.options.timeout_s) if task.options.timeout_s else None
        try:
            if deadline is None:
                result = await self._call(task, job, running, args, kwargs)
            else:
                async with deadline:
                    result = await self._call(task, job, running, args, kwargs)
        except asyncio.CancelledError:
            return self._cancelled(running)
        except Retry as exc:
            return self._failure(task, job, exc, f"Retry: {exc}", None, delay_s=exc.delay)
        except BaseException as exc:  # a task's error is data: record it, go on
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                limit = task.options.timeout_s
                error = f"TimeoutError: attempt exceeded the task's {limit:g}s timeout"
                return self._failure(task, job, exc, error, None)
            return self._failure(task, job, exc, _one_line(exc), traceback.format_exc())
        try:
            encoded = self.serializer.dumps(result)
        except SerializationError as exc:
            return self._failure(task, job, exc, f"cannot encode the result: {exc}", None)
        return Completion(
            job_id=job.id,
            queue=job.queue,
            fence=job.fence,
            result=encoded,
            finished_at_ms=self.clock.now_ms(),
        )

    async def _call(
        self,
        task: Task[Any, Any],
        job: ClaimedJob,
        running: Running,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        context = (job.id, job.task, job.queue, job.attempt, job.enqueued_at_ms)
        report = None if self.report is None else functools.partial(self.report, job)
        bind_job(context, report, self._loop())
        if task.is_async:
            running.started = True
            return await task.fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        if task.options.process:
            running.started = True
            return await self._call_in_process(loop, task, context, args, kwargs)
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(
            self.threads, functools.partial(ctx.run, _mark_started, running, task, args, kwargs)
        )

    async def _call_in_process(
        self,
        loop: asyncio.AbstractEventLoop,
        task: Task[Any, Any],
        context: JobTuple,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        pool = self._process_pool()
        call = functools.partial(
            _call_in_child, task.fn.__module__, task.fn.__qualname__, context, args, kwargs
        )
        try:
            return await loop.run_in_executor(pool, call)
        except BrokenProcessPool:
            # The child died (segfault, OOM kill); the next job gets a fresh pool.
            self._processes = None
            raise

    def _process_pool(self) -> Executor:
        if self._processes is None:
            self._processes = ProcessPoolExecutor(
                max_workers=self._processes_n, mp_context=multiprocessing.get_context("spawn")
            )
        return self._processes

    def _cancelled(self, running: Running) -> Outcome | None:
        if running.cancel_reason == "shutdown":
            job = running.job
            return Release(
                job_id=job.id, queue=job.queue, fence=job.fence, unstarted=not running.started
            )
        # Cancelled because the claim was lost (or a hard stop): the job is not ours any more.
        return None

    def _dead(self, job: ClaimedJob, error: str) -> Failure:
        log.error("job %s (%s) sent to the dead letters: %s", job.id, job.task, error)
        return Failure(
            job_id=job.id,
            queue=job.queue,
            fence=job.fence,
            error=error,
            traceback=None,
            retry_at_ms=None,
            finished_at_ms=self.clock.now_ms(),
            counted=False,
        )

    def _failure(
        self,
        task: Task[Any, Any],
        job: ClaimedJob,
        exc: BaseException,
        error: str,
        traceback_text: str | None,
        delay_s: float | None = None,
    ) -> Failure:
        failures = job.failures + 1
        policy = task.options.retry
        retry = policy.should_retry(failures, None if isinstance(exc, Retry) else exc)
        now = self.clock.now_ms()
        retry_at = None
        if retry:
            delay = policy.next_delay_s(failures) if delay_s is None else max(0.0, delay_s)
            retry_at = now + round(delay * 1000)
            log.warning(
                "job %s (%s) attempt %d failed: %s; retry in %.2fs",
                job.id,
                job.task,
                job.attempt,
                error,
                delay,
            )
        else:
            log.error(
                "job %s (%s) attempt %d failed: %s; no retries left, now dead",
                job.id,
                job.task,
                job.attempt,
                error,
            )
        return Failure(
            job_id=job.id,
            queue=job.queue,
            fence=job.fence,
            error=error,
            traceback=traceback_text,
            retry_at_ms=retry_at,
            finished_at_ms=now,
        )

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
        if self._processes is not None:
            self._processes.shutdown(wait=False, cancel_futures=True)


def _mark_started(
    running: Running, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    running.started = True
    return task.fn(*args, **kwargs)


def _call_in_child(
    module: str,
    qualname: str,
    context: JobTuple,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Runs in a pool process: find the registered function by its own module path."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    fn = target.fn if isinstance(target, Task) else target
    bind_job(context)
    return fn(*args, **kwargs)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
