"""Child processes that run one job at a time, so a crash is pinned on the job that caused it.

Why not ProcessPoolExecutor: its children share one queue and one fate. A child that dies
breaks the pool (BrokenProcessPool), every job in flight is counted as failed, and nothing
says which job killed it. Here each slot is its own child with its own connection, running
one job at a time: a job's outcome is what its child answered, or how that child died.
`ProcessSlots` serves ``process=True`` tasks and the sandboxes of suspect jobs (a job whose
worker died twice runs in a child of a live worker, so only a job that kills its own process
is blamed for it).

The parts: this module (the slots, and what a call in a child returns), `spawn` (the
parent's end of one child) and `child` (what runs in the child, and the messages both ends
exchange: msgpack, never pickle, so no bytes from the broker are ever unpickled).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import itertools
import logging
import math
import multiprocessing
import multiprocessing.util  # registers its atexit join first, so ours (a kill) runs before it
import signal
import sys
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from typing import Any

from corq.context import JobTuple
from corq.limits import error_line
from corq.task import Task
from corq.worker.child import (
    ENCODER,
    JobMessage,
    OkMessage,
    ProgressMessage,
    RaisedMessage,
    StartedMessage,
    UnavailableMessage,
    class_name,
    find_function,
)
from corq.worker.inputs import ParentTuple
from corq.worker.spawn import REAP_WAIT_S, ProgressRelay, SpawnedChild

log = logging.getLogger(__name__)


class ChildOutcomeKind(enum.Enum):
    """How a call in a child process ended."""

    #: The task returned; `result` holds the value encoded with the task's serializer.
    OK = "ok"
    #: The task raised (anything, SystemExit and CancelledError included), or its value
    #: could not be encoded.
    ERROR = "error"
    #: The child exited without answering: the job (or something it started) killed it.
    DIED = "died"
    #: The body ran past `timeout_s` (counted from its start); its child was killed.
    TIMEOUT = "timeout"
    #: Nothing was learned about the job: the child could not import the task or decode
    #: the payload, no child could be started, or the slots were closed. The parent decides
    #: (run it in-process, or release it).
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, kw_only=True, slots=True)
class ChildCall:
    """One job for a child: where its function lives, and its arguments as stored bytes."""

    #: Module the child imports to find the function.
    module: str
    #: Attribute path in that module: the function itself, or a `corq.Task` wrapping it.
    qualname: str
    #: The job's encoded arguments, as stored (a workflow job's with its input prepended);
    #: the child decodes them itself.
    payload: bytes
    #: What `corq.context.bind_job` takes: job id, task, queue, attempt, enqueued_at_ms,
    #: schedule, tick_ms, workflow.
    context: JobTuple
    #: Serializer name (``json``, ``msgpack``) of the payload and the result.
    serializer: str = "json"
    #: The task's ``retry_on`` classes as ``module.qualname`` (empty: retry any exception).
    retry_on: tuple[str, ...] = ()
    #: Its parents as stored, read by the worker for ``current_job().parents()`` in the
    #: child (a child has no broker connection); None when they were too big to send.
    parents: tuple[ParentTuple, ...] | None = ()

    @classmethod
    def for_task(
        cls,
        task: Task[Any, Any],
        payload: bytes,
        context: JobTuple,
        parents: tuple[ParentTuple, ...] | None = (),
    ) -> ChildCall:
        """The call that runs `task`'s function in a child (see `importable` first)."""
        return cls(
            module=task.fn.__module__,
            qualname=task.fn.__qualname__,
            payload=payload,
            context=context,
            serializer=task.app.serializer.name,
            retry_on=tuple(class_name(c) for c in task.options.retry.retry_on),
            parents=parents,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ChildOutcome:
    """What happened to one call; fields not meaningful for its kind are None or False."""

    #: How it ended.
    kind: ChildOutcomeKind
    #: True once the child reported that the body began (`on_start` was called).
    started: bool = False
    #: OK: the result, encoded in the child with the task's serializer.
    result: bytes | None = None
    #: ERROR, DIED, TIMEOUT, UNAVAILABLE: one line, safe to store (`corq.limits.error_line`).
    error: str | None = None
    #: ERROR: the traceback, cut with `corq.limits.safe_text` (None for Retry and for a
    #: result that could not be encoded).
    traceback: str | None = None
    #: ERROR: qualified name of the exception's type (``ValueError``, ``corq.errors.Retry``).
    exception_type: str | None = None
    #: ERROR: the task raised `corq.Retry`.
    retry_requested: bool = False
    #: ERROR: the delay `corq.Retry` asked for, clamped to [0, MAX_DELAY_S]; None means the
    #: task's backoff.
    retry_delay_s: float | None = None
    #: ERROR: the task's retry policy accepts this exception (always for Retry and when its
    #: ``retry_on`` is empty), so the parent can apply `RetryPolicy.should_retry(n, None)`.
    retry_on_matched: bool = False
    #: ERROR: the task raised `corq.Snooze` with a valid delay (seconds); `error` is its
    #: reason.
    snooze_s: float | None = None
    #: DIED: the child's exit code, negative for a signal; None when it could not be read.
    exit_code: int | None = None


def importable(fn: Callable[..., Any]) -> bool:
    """Whether a spawned child can find `fn` (or this Task's function) by its module path."""
    target = fn.fn if isinstance(fn, Task) else fn
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return False
    if module == "__main__":
        # spawn re-runs the parent's main module only when it came from a file or with -m.
        main = sys.modules.get("__main__")
        if getattr(main, "__file__", None) is None and getattr(main, "__spec__", None) is None:
            return False
    try:
        return find_function(module, qualname)[0] is target
    except Exception:  # whatever the lookup raises, the child would fail the same way
        return False


#: Fresh children a call tries when one dies before the body begins.
_FRESH_CHILD_TRIES = 3


# -- parent side ---------------------------------------------------------------------------
class ProcessSlots:
    """`size` reusable spawned children, each running one job at a time.

    Children start when first needed and stop after `idle_s` without a job. Callers wait
    for a free slot in arrival order. Use it from one event loop, which watches the
    children's file descriptors (POSIX only).
    """

    def __init__(self, size: int, *, name: str, idle_s: float = 60.0) -> None:
        if size < 1:
            raise ValueError(f"ProcessSlots needs at least one slot, got {size}")
        if not idle_s > 0:
            raise ValueError(f"idle_s must be positive, got {idle_s}")
        self._name = name
        self._idle_s = idle_s
        self._gate = _Gate(size)
        self._context: SpawnContext = multiprocessing.get_context("spawn")
        self._numbers = itertools.count(1)
        self._idle: list[SpawnedChild] = []
        self._children: set[SpawnedChild] = set()
        self._closed = False
        _LIVE_SLOTS.add(self)

    def free_slots(self) -> int:
        """Slots a new call would get at once."""
        return self._gate.free()

    async def run(
        self,
        call: ChildCall,
        *,
        timeout_s: float | None,
        on_start: Callable[[], None] | None = None,
        on_progress: Callable[[float], Awaitable[bool]] | None = None,
    ) -> ChildOutcome:
        """Run `call` in a child; every problem is an outcome, only CancelledError escapes.

        `timeout_s` counts from the moment the child reports the body began (a child's
        start-up and the wait for a slot are not the job's time). If the caller is
        cancelled, the child running the job is killed.
        """
        await self._gate.acquire()
        child: SpawnedChild | None = None
        progress = ProgressRelay(on_progress)
        try:
            for _ in range(_FRESH_CHILD_TRIES):
                if self._closed:
                    return _closed(started=False)
                child = self._checkout()
                outcome = await self._exchange(child, call, timeout_s, on_start, progress)
                self._park(child)
                # A child that died before the body began (killed while idle, or while it
                # started up) says nothing about the job: try a fresh one.
                if outcome.kind is not ChildOutcomeKind.DIED or outcome.started:
                    return outcome
            return outcome
        except asyncio.CancelledError:
            progress.cancel()
            if child is not None:
                child.kill()
            raise
        except Exception as exc:  # an OS limit or a bug here must not escape into the runner
            log.exception("%s: cannot run %s.%s in a child", self._name, call.module, call.qualname)
            if child is not None:
                child.kill()
            error = f"cannot run it in a child process: {error_line(exc)}"
            return ChildOutcome(kind=ChildOutcomeKind.UNAVAILABLE, error=error)
        finally:
            progress.detach()
            self._gate.release()

    async def close(self) -> None:
        """Kill every child and wait (briefly) until they are reaped; idempotent.

        Calls still running get UNAVAILABLE; later calls get UNAVAILABLE at once.
        """
        self._closed = True
        _LIVE_SLOTS.discard(self)
        children = list(self._children)
        for child in children:
            child.kill()
        self._idle.clear()
        exits = [child.exit_code for child in children if not child.exit_code.done()]
        if exits:
            await asyncio.wait(exits, timeout=REAP_WAIT_S)

    def kill_all(self) -> None:
        """Kill every child now, without the event loop (for process exit); idempotent."""
        self._closed = True
        children = list(self._children)
        for child in children:
            child.kill()
        deadline = time.monotonic() + 2.0
        for child in children:
            child.process.join(max(0.0, deadline - time.monotonic()))

    def _checkout(self) -> SpawnedChild:
        while self._idle:
            child = self._idle.pop()  # the most recent: the others may go idle and stop
            child.cancel_idle_timer()
            if not child.exit_code.done():
                return child
        child = SpawnedChild(self._context, f"{self._name}-{next(self._numbers)}")
        self._children.add(child)
        child.exit_code.add_done_callback(lambda _: self._children.discard(child))
        return child

    def _park(self, child: SpawnedChild) -> None:
        if self._closed or child.exit_code.done():
            return
        if math.isfinite(self._idle_s):
            child.idle_timer = asyncio.get_running_loop().call_later(
                self._idle_s, self._retire, child
            )
        self._idle.append(child)

    def _retire(self, child: SpawnedChild) -> None:
        if child in self._idle:
            self._idle.remove(child)
            child.kill()

    async def _exchange(
        self,
        child: SpawnedChild,
        call: ChildCall,
        timeout_s: float | None,
        on_start: Callable[[], None] | None,
        progress: ProgressRelay,
    ) -> ChildOutcome:
        job = JobMessage(
            module=call.module,
            qualname=call.qualname,
            payload=call.payload,
            context=call.context,
            serializer=call.serializer,
            retry_on=call.retry_on,
            parents=call.parents,
        )
        try:
            await child.send(ENCODER.encode(job))
        except OSError:
            child.kill()  # it died before reading its job: its exit says how
        started = False
        deadline: float | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    reply = await child.replies.get()
            except TimeoutError:  # only the deadline raises it here
                return await _timed_out(child, timeout_s)
            match reply:
                case None:
                    if self._closed:
                        return _closed(started=started)
                    return _died(child.exit_code.result(), started=started)
                case StartedMessage():
                    started = True
                    if timeout_s is not None:
                        deadline = asyncio.get_running_loop().time() + timeout_s
                    _call_quietly(on_start)
                case ProgressMessage(value=value):
                    progress.push(value)
                case _:
                    return _answered(reply)


class _Gate:
    """At most `size` holders; waiters are served in arrival order."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def free(self) -> int:
        return self._free

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                with contextlib.suppress(ValueError):  # release() may have dropped it
                    self._waiters.remove(waiter)
            else:
                self.release()  # the slot reached us as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # handed over: the count of free slots is unchanged
                return
        self._free += 1


def _call_quietly(callback: Callable[[], None] | None) -> None:
    if callback is None:
        return
    try:
        callback()
    except Exception:  # the caller's bug must not be taken for the job's outcome
        log.exception("on_start callback failed")


def _answered(reply: OkMessage | RaisedMessage | UnavailableMessage) -> ChildOutcome:
    if isinstance(reply, OkMessage):
        return ChildOutcome(kind=ChildOutcomeKind.OK, started=True, result=reply.result)
    if isinstance(reply, UnavailableMessage):
        return ChildOutcome(kind=ChildOutcomeKind.UNAVAILABLE, error=reply.error)
    return ChildOutcome(
        kind=ChildOutcomeKind.ERROR,
        started=True,
        error=reply.error,
        traceback=reply.traceback,
        exception_type=reply.exception_type,
        retry_requested=reply.retry_requested,
        retry_delay_s=reply.retry_delay_s,
        retry_on_matched=reply.retry_on_matched,
        snooze_s=reply.snooze_s,
    )


def _died(exit_code: int | None, *, started: bool) -> ChildOutcome:
    return ChildOutcome(
        kind=ChildOutcomeKind.DIED,
        started=started,
        error=_describe_exit(exit_code),
        exit_code=exit_code,
    )


def _describe_exit(exit_code: int | None) -> str:
    """How a child ended, for an error message ("its process was killed by SIGSEGV")."""
    if exit_code is None:
        return "its process ended (exit status unknown)"
    if exit_code < 0:
        try:
            return f"its process was killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"its process was killed by signal {-exit_code}"
    return f"its process exited with code {exit_code}"


async def _timed_out(child: SpawnedChild, timeout_s: float | None) -> ChildOutcome:
    child.kill()
    # Wait for the reap so a slot never holds two processes (bounded: a child stuck in
    # the kernel must not hold the job's outcome).
    await asyncio.wait([child.exit_code], timeout=REAP_WAIT_S)
    error = f"the attempt exceeded its {timeout_s:g}s timeout; its process was killed"
    return ChildOutcome(kind=ChildOutcomeKind.TIMEOUT, started=True, error=error)


def _closed(*, started: bool) -> ChildOutcome:
    error = "the process slots were closed"
    return ChildOutcome(kind=ChildOutcomeKind.UNAVAILABLE, started=started, error=error)


#: Slots not closed yet: killed at interpreter exit, before multiprocessing joins children.
_LIVE_SLOTS: weakref.WeakSet[ProcessSlots] = weakref.WeakSet()


@atexit.register
def _kill_all_at_exit() -> None:
    for slots in list(_LIVE_SLOTS):
        slots.kill_all()


# -- child side --------------------------------------------------------------------------
