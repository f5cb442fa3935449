"""Run one claimed job and turn what happened into an outcome for the broker.

Where a job runs:
- a coroutine task on the worker's event loop;
- a plain function on a thread (its timeout counts from the moment its body starts);
- a ``process=True`` task in a process of its own (one job per child at a time);
- a suspect (a job whose worker died with it before) in a *sandbox*, a child process of
  this worker: if that child dies, the job killed it, and the worker, alive, says so.

``Runner.run`` is total: whatever a task does (raise anything, raise CancelledError itself,
hold an exception whose ``__str__`` raises, return something that cannot be encoded) it
returns an outcome, or None only when the worker took the job away (lost lease).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import traceback
from collections.abc import Mapping
from typing import Any

from corq.backends.base import ClaimedJob, Failure
from corq.context import JobTuple, Reporter, bind_job
from corq.errors import Retry, Snooze
from corq.limits import error_line, safe_str, snooze_of
from corq.serializers import Serializer
from corq.task import Task
from corq.types import TaskName
from corq.worker.gates import Gates
from corq.worker.inputs import InputError, ParentReader
from corq.worker.outcomes import Outcome, Outcomes, Raised
from corq.worker.processes import (
    ChildCall,
    ChildOutcome,
    ChildOutcomeKind,
    ProcessSlots,
    importable,
)
from corq.worker.registry import CancelReason, Running
from corq.worker.threads import ThreadOutcome, ThreadOutcomeKind, ThreadSlots
from corq.workflow import Inputs

log = logging.getLogger(__name__)

#: A job ready to run: its task, arguments, and the payload a child process would decode.
_Prepared = tuple[Task[Any, Any], tuple[Any, ...], dict[str, Any], bytes]


class Runner:
    """Calls task functions where they belong and builds their outcomes."""

    def __init__(
        self,
        registry: Mapping[TaskName, Task[Any, Any]],
        serializer: Serializer,
        outcomes: Outcomes,
        *,
        threads: int,
        processes: int,
        sandboxes: int,
        report: Reporter | None = None,
        parents: ParentReader | None = None,
        gates: Gates | None = None,
    ) -> None:
        self.registry = registry
        #: Asked before each body starts (see worker.gates); empty: no cost.
        self.gates = gates or Gates()
        self.serializer = serializer
        self.outcomes = outcomes
        self.report = report
        #: Reads workflow jobs' parents (None: jobs with inputs cannot run, e.g. in tests
        #: of the runner alone).
        self.parents = parents
        self.threads = ThreadSlots(threads, name="corq-job")
        self.processes = ProcessSlots(processes or os.cpu_count() or 1, name="corq-process")
        self.sandboxes = ProcessSlots(sandboxes, name="corq-sandbox")
        self._unsandboxable: set[TaskName] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, running: Running) -> Outcome | None:
        """Execute the job; None when nothing should be written (its claim is gone)."""
        try:
            job = running.job
            # A workflow job's input needs a broker read; every other job stays on the
            # plain, synchronous path.
            prepared = self._prepare(job) if job.inputs is None else await self._with_input(job)
            if not isinstance(prepared, tuple):
                return prepared
            task, args, kwargs, payload = prepared
            if self.gates:
                snoozed = await self.gated(job, task, args, kwargs)
                if snoozed is not None:
                    return snoozed
            outcome = await self._run_body(running, task, args, kwargs, payload)
            if self.gates:
                return await self._told(running, task, outcome)
            return outcome
        except asyncio.CancelledError:
            return self.cancelled(running)
        except Exception as exc:  # a fault of corq's own: park the job where it can be seen
            log.exception("job %s: corq failed to run it", running.job.id)
            return self.outcomes.dead(
                running.job, f"corq could not run this job: {error_line(exc)}"
            )

    async def gated(
        self, job: ClaimedJob, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Failure | None:
        """The snooze a start gate asks for (see worker.gates), or None: run it."""
        answer = await self.gates.check(job, task, args, kwargs)
        if answer is None:
            return None
        return self.outcomes.snoozed(job, answer.until_ms, answer.reason)

    async def _told(self, running: Running, task: Task[Any, Any], outcome: Outcome) -> Outcome:
        """Tell the gates how the attempt ended; a shutdown meanwhile still writes it (the
        body has run: giving the job back would run it twice)."""
        try:
            await self.gates.finished(running.job, task, outcome)
        except asyncio.CancelledError:
            if running.cancel_reason is not CancelReason.SHUTDOWN:
                raise
        return outcome

    async def _run_body(
        self,
        running: Running,
        task: Task[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        payload: bytes,
    ) -> Outcome:
        if running.job.suspect or task.options.process:
            outcome = await self._run_in_child(running, task, payload)
            if outcome is not None:
                return outcome
        if task.is_async:
            return await self._run_coroutine(running, task, args, kwargs)
        return await self._run_on_thread(running, task, args, kwargs)

    def _prepare(self, job: ClaimedJob) -> _Prepared | Outcome:
        """The task and its arguments, or the dead letter of a job that cannot run."""
        task = self._task(job)
        if not isinstance(task, Task):
            return task
        try:
            args, kwargs = task.decode_payload(self.serializer.loads(job.payload))
        except Exception as exc:  # any decode problem means this payload is bad
            return self.outcomes.dead(job, f"corrupted job payload: {error_line(exc)}")
        return task, args, kwargs, job.payload

    def _task(self, job: ClaimedJob) -> Task[Any, Any] | Outcome:
        task = self.registry.get(job.task) if job.task else None
        if task is not None:
            return task
        if not job.task:
            return self.outcomes.dead(job, "corrupted job record: it has no task name")
        return self.outcomes.dead(job, f"unknown task '{job.task}'")

    async def _with_input(self, job: ClaimedJob) -> _Prepared | Outcome:
        """A workflow job's task and arguments, its parents' input first; a dead letter
        when the input cannot be built or does not fit the task (see worker.inputs)."""
        task = self._task(job)
        if not isinstance(task, Task):
            return task
        try:
            data = self.serializer.loads(job.payload)
            inputs = Inputs(job.inputs or "")
            if not (isinstance(data, dict) and isinstance(data.get("args", []), list)):
                raise ValueError("payload is not {'args': [...], 'kwargs': {...}}")
        except Exception as exc:  # a bad payload, or inputs no corq writes
            return self.outcomes.dead(job, f"corrupted job payload: {error_line(exc)}")
        value = await self._read_input(job, inputs)
        if isinstance(value, Failure):
            return value
        data = {"args": [value, *data.get("args", [])], "kwargs": data.get("kwargs", {})}
        try:
            args, kwargs = task.decode_payload(data)
        except Exception as exc:  # the parents' results do not fit the task's hints
            return self.outcomes.dead(
                job, f"InputError: its input does not fit task {task.name!r}: {error_line(exc)}"
            )
        if not (job.suspect or task.options.process):
            return task, args, kwargs, job.payload
        try:  # a child decodes its payload itself: hand it the input inside
            return task, args, kwargs, self.serializer.dumps(data)
        except Exception as exc:  # an UpstreamError from an allow_failed edge, say
            return self.outcomes.dead(
                job,
                f"InputError: its input cannot be handed to a child process: {error_line(exc)}",
            )

    async def _read_input(self, job: ClaimedJob, inputs: Inputs) -> Any:
        """The input, or the dead letter (a Failure: no parent's decoded result is one)
        saying why there is none."""
        if self.parents is None:
            return self.outcomes.dead(job, "InputError: this worker cannot read parents")
        try:
            return await self.parents.input_for(job, inputs)
        except InputError as exc:
            return self.outcomes.dead(job, f"InputError: {exc}")

    # -- coroutines ------------------------------------------------------------------
    async def _run_coroutine(
        self, running: Running, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Outcome:
        job = running.job
        self._bind(running)
        running.started = True
        timeout_s = task.options.timeout_s
        # asyncio.timeout costs even unbounded: only use one when the task has a timeout.
        deadline = None if timeout_s is None else asyncio.timeout(timeout_s)
        try:
            if deadline is None:
                result = await task.fn(*args, **kwargs)
            else:
                async with deadline:
                    result = await task.fn(*args, **kwargs)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if running.cancel_reason is not None or (current and current.cancelling()):
                raise  # ours: a shutdown or a lost lease (a deadline becomes TimeoutError)
            return self.outcomes.failed(job, task.options.retry, _raised(task, exc))
        except BaseException as exc:  # a task's error is data: record it, go on
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                return self.outcomes.failed(job, task.options.retry, _timed_out(task))
            return self.outcomes.failed(job, task.options.retry, _raised(task, exc))
        return self._encoded(job, task, result)

    # -- plain functions ---------------------------------------------------------------
    async def _run_on_thread(
        self, running: Running, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Outcome:
        job = running.job
        self._bind(running)
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, task.fn, *args, **kwargs)

        def started() -> None:
            running.started = True
            running.unstoppable = True  # a thread cannot be stopped once it runs the body

        result = await self.threads.run(call, timeout_s=task.options.timeout_s, on_start=started)
        return self._from_thread(job, task, result)

    def _from_thread(self, job: ClaimedJob, task: Task[Any, Any], result: ThreadOutcome) -> Outcome:
        if result.kind is ThreadOutcomeKind.OK:
            return self._encoded(job, task, result.value)
        if result.kind is ThreadOutcomeKind.TIMEOUT:
            return self.outcomes.failed(job, task.options.retry, _timed_out(task))
        exc = result.exception
        assert exc is not None
        raised = _raised(task, exc, result.traceback)
        return self.outcomes.failed(job, task.options.retry, raised)

    # -- child processes ------------------------------------------------------------
    async def _run_in_child(
        self, running: Running, task: Task[Any, Any], payload: bytes
    ) -> Outcome | None:
        """Run in a process of its own; None when the task cannot run there (run it here)."""
        job = running.job
        if not importable(task.fn):
            if task.options.process:
                return self.outcomes.dead(job, _not_importable(task))
            self._note_unsandboxable(task)
            return None
        slots = self.sandboxes if job.suspect else self.processes
        parents = () if self.parents is None else await self.parents.for_child(job)
        call = ChildCall.for_task(task, payload, _context(job), parents)
        report = None if self.report is None else functools.partial(self.report, _context(job))

        def started() -> None:
            running.started = True

        outcome = await slots.run(
            call, timeout_s=task.options.timeout_s, on_start=started, on_progress=report
        )
        return self._from_child(running, task, outcome)

    def _from_child(
        self, running: Running, task: Task[Any, Any], child: ChildOutcome
    ) -> Outcome | None:
        job = running.job
        if child.kind is ChildOutcomeKind.OK:
            assert child.result is not None
            return self.outcomes.succeeded(job, child.result)
        if child.kind is ChildOutcomeKind.TIMEOUT:
            return self.outcomes.failed(job, task.options.retry, _timed_out(task))
        if child.kind is ChildOutcomeKind.DIED:
            return self.outcomes.crashed(job, running.holder, child.error or "its process died")
        if child.kind is ChildOutcomeKind.UNAVAILABLE:
            if child.started:  # its sandbox was closed under it (shutdown): give it back
                return self.outcomes.released(job, unstarted=False)
            if task.options.process:
                return self.outcomes.dead(job, f"{_not_importable(task)}: {child.error}")
            log.warning("job %s: %s; running it in the worker process", job.id, child.error)
            self._note_unsandboxable(task)
            return None
        raised = Raised(
            error=child.error or "error in a child process",
            traceback=child.traceback,
            retry_requested=child.retry_requested,
            retry_delay_s=child.retry_delay_s,
            retry_on_matched=child.retry_on_matched,
            snooze_s=child.snooze_s,
        )
        return self.outcomes.failed(job, task.options.retry, raised)

    def _note_unsandboxable(self, task: Task[Any, Any]) -> None:
        if task.name not in self._unsandboxable:
            self._unsandboxable.add(task.name)
            log.warning(
                "task %r cannot run in a child process (define it at module level so its "
                "module path finds it); its suspect and process jobs run in the worker, where "
                "a crash cannot be pinned on the job that caused it",
                task.name,
            )

    # -- shared ----------------------------------------------------------------------
    def _encoded(self, job: ClaimedJob, task: Task[Any, Any], result: Any) -> Outcome:
        try:
            encoded = self.serializer.dumps(result)
        except Exception as exc:  # SerializationError, RecursionError, a __str__ that raises...
            raised = Raised(error=f"cannot encode the result: {error_line(exc)}")
            return self.outcomes.failed(job, task.options.retry, raised)
        return self.outcomes.succeeded(job, encoded)

    def _bind(self, running: Running) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        parents = None if self.parents is None else self.parents.parents
        bind_job(_context(running.job), self.report, loop, parents, running.cancel_flag)

    def cancelled(self, running: Running) -> Outcome | None:
        """What to write for a job the worker stopped (None: nothing)."""
        job = running.job
        if running.cancel_reason is CancelReason.SHUTDOWN and not running.unstoppable:
            return self.outcomes.released(job, unstarted=not running.started)
        # Lost claim, hard stop, or a thread that keeps running: writing anything now could
        # let the job run twice at once. The broker gives it back when this holder departs.
        return None

    def free_sandboxes(self) -> int:
        return self.sandboxes.free_slots()

    def abandoned_threads(self) -> int:
        """Threads still running bodies the worker gave up on (timeouts, shutdown)."""
        return self.threads.running_abandoned()

    async def close(self) -> None:
        self.threads.close()
        await self.processes.close()
        await self.sandboxes.close()


def _not_importable(task: Task[Any, Any]) -> str:
    return (
        f"task {task.name!r} has process=True but a child process cannot find its function "
        f"{task.fn.__module__}.{task.fn.__qualname__} (define it at module level)"
    )


def _context(job: ClaimedJob) -> JobTuple:
    return (
        job.id,
        job.task,
        job.queue,
        job.attempt,
        job.enqueued_at_ms,
        job.schedule,
        job.tick_ms,
        job.workflow,
    )


def _raised(task: Task[Any, Any], exc: BaseException, tb: str | None = None) -> Raised:
    """Describe what a task raised without trusting it (its __str__ may raise too)."""
    if isinstance(exc, Snooze):
        delay_s, text = snooze_of(exc)
        if delay_s is not None:
            return Raised(error=text, snooze_s=delay_s)
        return Raised(error=text, traceback=_format(exc) if tb is None else tb)
    if isinstance(exc, Retry):
        return Raised(
            error=f"Retry: {safe_str(exc)}",
            retry_requested=True,
            retry_delay_s=_retry_delay(exc),
        )
    if tb is None:
        tb = _format(exc)
    retry_on = task.options.retry.retry_on
    return Raised(
        error=error_line(exc),
        traceback=tb,
        retry_on_matched=not retry_on or isinstance(exc, retry_on),
    )


def _retry_delay(exc: Retry) -> float | None:
    delay = exc.delay
    if delay is None:
        return None
    try:
        return float(delay)
    except (TypeError, ValueError, OverflowError):
        return 0.0  # Retry(delay="soon") from a task: retry now rather than never


def _timed_out(task: Task[Any, Any]) -> Raised:
    return Raised(
        error=f"TimeoutError: attempt exceeded the task's {task.options.timeout_s:g}s timeout"
    )


def _format(exc: BaseException) -> str | None:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception:  # a hostile exception can break formatting too
        return None
