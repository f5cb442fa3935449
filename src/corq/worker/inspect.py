"""What a live worker answers to ``corq inspect --stacks``: every asyncio task's coroutine
chain (and the job it runs) and every thread's stack, read without stopping anything.

A task's stack is its chain of awaited coroutines (``cr_await``), which asyncio's own
``Task.get_stack`` does not give (it returns only the outermost suspended frame).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from types import FrameType
from typing import Any

from corq.stacks import MAX_FRAMES, MAX_TASKS, Frame, TaskStack, ThreadStack, WorkerStacks
from corq.worker.registry import Registry


def worker_stacks(worker_id: str, registry: Registry) -> WorkerStacks:
    """The stacks now (called on the worker's loop)."""
    tasks = list(asyncio.all_tasks())
    shown = [_task(task, registry) for task in tasks[:MAX_TASKS]]
    return WorkerStacks(
        worker_id=worker_id,
        at_ms=time.time_ns() // 1_000_000,
        tasks=tuple(shown),
        threads=_threads(),
        tasks_omitted=max(0, len(tasks) - MAX_TASKS),
    )


def _task(task: asyncio.Task[Any], registry: Registry) -> TaskStack:
    running = registry.running_in(task)
    return TaskStack(
        name=task.get_name(),
        frames=_coroutine_frames(task.get_coro()),
        job_id=None if running is None else running.job.id,
        queue=None if running is None else running.job.queue,
    )


def _coroutine_frames(coro: Any) -> tuple[Frame, ...]:
    """The awaited chain from the task's coroutine inwards (generators and async
    generators too), at most MAX_FRAMES."""
    frames: list[Frame] = []
    while coro is not None and len(frames) < MAX_FRAMES:
        frame: FrameType | None = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is None:
            break
        frames.append(_frame(frame))
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return tuple(frames)


def _frame(frame: FrameType) -> Frame:
    code = frame.f_code
    return Frame(file=code.co_filename, line=frame.f_lineno or 0, function=code.co_name)


def _threads() -> tuple[ThreadStack, ...]:
    names = {t.ident: t.name for t in threading.enumerate()}
    stacks = []
    for ident, top in sys._current_frames().items():
        summary = traceback.extract_stack(top)[-MAX_FRAMES:]
        frames = tuple(Frame(file=f.filename, line=f.lineno or 0, function=f.name) for f in summary)
        stacks.append(
            ThreadStack(name=names.get(ident, f"thread-{ident}"), ident=ident, frames=frames)
        )
    return tuple(stacks)
