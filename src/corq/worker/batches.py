"""Batched tasks (``@app.task(batch_size=100, batch_wait=1)``): many jobs, one call.

A claimed job of a batched task does not run at once: `Batches` buffers it per task (and
per key, with ``batch_by_key``), in the registry and holding its slot like any claimed job
(the worker's lease covers it, reconciliation knows it). A buffer is called when it holds
``batch_size`` jobs, when ``batch_wait`` has passed since its first job, or when the worker
has no slot left to claim more (waiting could only delay the jobs it holds).

The call (`call_batch`) hands the function one list, each job's argument as one item, in
claim order; it returns a list with one result per job, or None (each job's result is
None). Every job keeps its id, state and result. An exception, a timeout or a result of
the wrong shape fails every job of the call, each retried under the task's policy on its
own. A job that cannot run (a payload that does not decode) goes to the dead letters alone;
the rest are called without it. At shutdown the jobs still buffered go back unstarted.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from corq.limits import error_line
from corq.task import Task
from corq.types import TaskName
from corq.worker.outcomes import Outcome, Raised
from corq.worker.registry import Running
from corq.worker.runner import Runner, _raised, _timed_out
from corq.worker.threads import ThreadOutcomeKind

log = logging.getLogger(__name__)

#: One buffer: a queue, a task and, with ``batch_by_key``, a key.
BufferKey = tuple[str, TaskName, str | None]


@dataclass(slots=True)
class _Buffer:
    jobs: list[Running] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Batches:
    """Buffers claimed jobs of batched tasks; `run` is called with each full batch."""

    def __init__(
        self, tasks: Mapping[TaskName, Task[Any, Any]], run: Callable[[list[Running]], None]
    ) -> None:
        self.tasks = tasks
        self._run = run
        self._buffers: dict[BufferKey, _Buffer] = {}

    def batched(self, running: Running) -> bool:
        """True when `running`'s task takes its jobs in batches."""
        task = self.tasks.get(running.job.task)
        return task is not None and task.batched

    def add(self, running: Running) -> None:
        """Buffer a claimed job; its batch is called once full (or when its wait is over)."""
        options = self.tasks[running.job.task].options
        job = running.job
        key = (job.queue, job.task, job.key if options.batch_by_key else None)
        buffer = self._buffers.setdefault(key, _Buffer())
        buffer.jobs.append(running)
        if len(buffer.jobs) >= (options.batch_size or 1):
            self._flush(key)
        elif buffer.timer is None:
            loop = asyncio.get_running_loop()
            buffer.timer = loop.call_later(options.batch_wait_s, self._flush, key)

    def flush_all(self) -> None:
        """Call every buffer now (the worker has no slot left to claim more into them)."""
        for key in list(self._buffers):
            self._flush(key)

    def _flush(self, key: BufferKey) -> None:
        buffer = self._buffers.pop(key, None)
        if buffer is None:
            return
        if buffer.timer is not None:
            buffer.timer.cancel()
        self._run(buffer.jobs)

    def remove(self, running: Running) -> bool:
        """Take one job out of its buffer; False if it is in none."""
        for key, buffer in self._buffers.items():
            if running in buffer.jobs:
                buffer.jobs.remove(running)
                if not buffer.jobs:
                    self._buffers.pop(key)
                    if buffer.timer is not None:
                        buffer.timer.cancel()
                return True
        return False

    def drain(self) -> list[Running]:
        """Every buffered job, taken out of its buffer (shutdown gives them back)."""
        drained = []
        for buffer in self._buffers.values():
            if buffer.timer is not None:
                buffer.timer.cancel()
            drained += buffer.jobs
        self._buffers.clear()
        return drained

    def __len__(self) -> int:
        return sum(len(b.jobs) for b in self._buffers.values())


async def call_batch(runner: Runner, batch: list[Running]) -> list[Outcome | None]:
    """Call a batched task once for `batch`; one outcome per job, in order (None: write
    nothing, the job was taken away)."""
    outcomes: list[Outcome | None] = [None] * len(batch)
    task: Task[Any, Any] | None = None
    items: list[tuple[int, Any]] = []
    for n, running in enumerate(batch):
        prepared = runner._prepare(running.job)
        if not isinstance(prepared, tuple):
            outcomes[n] = prepared
            continue
        snoozed = None
        if runner.gates:  # each job of the batch passes the start gates on its own
            snoozed = await runner.gated(running.job, prepared[0], prepared[1], prepared[2])
        if snoozed is not None:
            outcomes[n] = snoozed
        else:
            task, args = prepared[0], prepared[1]
            items.append((n, args[0]))
    if task is None:
        return outcomes
    called = [batch[n] for n, _ in items]
    try:
        results = await _call(runner, task, called, [item for _, item in items])
    except asyncio.CancelledError:
        results = [_cancelled(runner, running) for running in called]
    except Exception as exc:  # a fault of corq's own: park the jobs where they can be seen
        log.exception("batch of task %s: corq failed to run it", task.name)
        error = f"corq could not run this job: {error_line(exc)}"
        results = [runner.outcomes.dead(running.job, error) for running in called]
    for (n, _), outcome in zip(items, results, strict=True):
        outcomes[n] = outcome
        if outcome is not None and runner.gates:
            await runner.gates.finished(batch[n].job, task, outcome)
    return outcomes


async def _call(
    runner: Runner, task: Task[Any, Any], batch: list[Running], items: list[Any]
) -> list[Outcome | None]:
    """Run the function on the loop or a thread; what it did, as each job's outcome."""
    runner._bind(batch[0])  # the context (corq.current_job) is the first job's
    for running in batch:
        running.started = True
    if task.is_async:
        deadline = asyncio.timeout(task.options.timeout_s)
        try:
            async with deadline:
                value = await task.fn(items)
        except asyncio.CancelledError:
            raise  # ours (a deadline becomes TimeoutError): each job as its reason says
        except BaseException as exc:  # a task's error is data: every job of the call failed
            if isinstance(exc, TimeoutError) and deadline.expired():
                return _failed(runner, task, batch, _timed_out(task))
            return _failed(runner, task, batch, _raised(task, exc))
        return _results(runner, task, batch, value)
    call = functools.partial(contextvars.copy_context().run, task.fn, items)

    def started() -> None:
        for running in batch:
            running.unstoppable = True

    outcome = await runner.threads.run(call, timeout_s=task.options.timeout_s, on_start=started)
    if outcome.kind is ThreadOutcomeKind.OK:
        return _results(runner, task, batch, outcome.value)
    if outcome.kind is ThreadOutcomeKind.TIMEOUT:
        return _failed(runner, task, batch, _timed_out(task))
    assert outcome.exception is not None
    return _failed(runner, task, batch, _raised(task, outcome.exception, outcome.traceback))


def _results(
    runner: Runner, task: Task[Any, Any], batch: list[Running], value: Any
) -> list[Outcome | None]:
    """One result per job (a list as long as the batch), or None for all of them."""
    if value is None:
        return [runner._encoded(r.job, task, None) for r in batch]
    if not isinstance(value, list | tuple) or len(value) != len(batch):
        got = f"{len(value)} results" if isinstance(value, list | tuple) else type(value).__name__
        error = (
            f"TypeError: batched task {task.name!r} must return a list of one result per job "
            f"({len(batch)}) or None, got {got}"
        )
        return _failed(runner, task, batch, Raised(error=error))
    return [runner._encoded(r.job, task, v) for r, v in zip(batch, value, strict=True)]


def _failed(
    runner: Runner, task: Task[Any, Any], batch: list[Running], raised: Raised
) -> list[Outcome | None]:
    return [runner.outcomes.failed(r.job, task.options.retry, raised) for r in batch]


def _cancelled(runner: Runner, running: Running) -> Outcome | None:
    """A cancelled call: each job as its own cancel reason says; one cancelled only because
    another job of its call was taken away goes back to its queue."""
    if running.cancel_reason is None:
        return runner.outcomes.released(running.job, unstarted=False)
    return runner.cancelled(running)
