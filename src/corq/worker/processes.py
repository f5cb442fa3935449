"""Child processes that run one job at a time, so a crash is pinned on the job that caused it.

Why not ProcessPoolExecutor: its children share one queue and one fate. A child that dies
breaks the pool (BrokenProcessPool), every job in flight is counted as failed, and nothing
says which job killed it. Here each slot is its own child with its own connection, running
one job at a time: a job's outcome is what its child answered, or how that child died.
`ProcessSlots` serves ``process=True`` tasks and the sandboxes of suspect jobs (a job whose
worker died twice runs in a child of a live worker, so only a job that kills its own process
is blamed for it).

Messages are msgpack envelopes sent with `multiprocessing.connection` ``send_bytes``, never
pickle (spawn's own bootstrap pickles only the connection and the parent's pid)::

    parent → child   _Job(module, qualname, payload, context, serializer, retry_on)
    child → parent   _Started, any number of _Progress(value), then one of
                     _Ok(result) · _Raised(...) · _Unavailable(error)

The child finds the task by its own module path and decodes the payload with the task's
serializer, so no bytes from the broker are ever unpickled.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import importlib
import inspect
import itertools
import logging
import math
import multiprocessing
import multiprocessing.util  # registers its atexit join first, so ours (a kill) runs before it
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

import msgspec

from corq.context import bind_job
from corq.errors import Retry
from corq.limits import (
    MAX_ERROR_CHARS,
    MAX_TRACEBACK_CHARS,
    clamp_delay_s,
    error_line,
    safe_str,
    safe_text,
)
from corq.serializers import get_serializer
from corq.task import Task

log = logging.getLogger(__name__)

#: What `corq.context.bind_job` takes: job id, task, queue, attempt, enqueued_at_ms.
JobTuple = tuple[str, str, str, int, int]

#: How often a child checks that its parent is alive (an orphan must not keep running a job).
_PARENT_POLL_S = 0.2
#: Job messages up to this size are written from the event loop. A child still starting up
#: does not read its socket yet, so a larger write could block the loop: it goes to a thread.
_INLINE_SEND_BYTES = 32 * 1024
#: Longest wait for a killed child to be reaped before the parent moves on.
_REAP_WAIT_S = 5.0
#: Exit code of a child whose parent went away.
_EXIT_ORPHANED = 70


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
    #: The job's encoded arguments, exactly as stored; the child decodes them itself.
    payload: bytes
    #: What `corq.context.bind_job` takes: job id, task, queue, attempt, enqueued_at_ms.
    context: JobTuple
    #: Serializer name (``json``, ``msgpack``) of the payload and the result.
    serializer: str = "json"
    #: The task's ``retry_on`` classes as ``module.qualname`` (empty: retry any exception).
    retry_on: tuple[str, ...] = ()

    @classmethod
    def for_task(cls, task: Task[Any, Any], payload: bytes, context: JobTuple) -> ChildCall:
        """The call that runs `task`'s function in a child (see `importable` first)."""
        return cls(
            module=task.fn.__module__,
            qualname=task.fn.__qualname__,
            payload=payload,
            context=context,
            serializer=task.app.serializer.name,
            retry_on=tuple(_class_name(c) for c in task.options.retry.retry_on),
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
        return _find_function(module, qualname)[0] is target
    except Exception:  # whatever the lookup raises, the child would fail the same way
        return False


#: Fresh children a call tries when one dies before the body begins.
_FRESH_CHILD_TRIES = 3


# -- messages ----------------------------------------------------------------------------
class _Job(msgspec.Struct, tag="job", array_like=True):
    module: str
    qualname: str
    payload: bytes
    context: JobTuple
    serializer: str
    retry_on: tuple[str, ...]


class _Started(msgspec.Struct, tag="started", array_like=True):
    pass


class _Progress(msgspec.Struct, tag="progress", array_like=True):
    value: float


class _Ok(msgspec.Struct, tag="ok", array_like=True):
    result: bytes


class _Raised(msgspec.Struct, tag="raised", array_like=True):
    error: str
    traceback: str | None
    exception_type: str
    retry_requested: bool
    retry_delay_s: float | None
    retry_on_matched: bool


class _Unavailable(msgspec.Struct, tag="unavailable", array_like=True):
    error: str


_Reply = _Started | _Progress | _Ok | _Raised | _Unavailable
_ENCODER = msgspec.msgpack.Encoder()
_JOB_DECODER = msgspec.msgpack.Decoder(_Job)
_REPLY_DECODER = msgspec.msgpack.Decoder(_Reply)


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
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
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
        child: _Child | None = None
        progress = _ProgressRelay(on_progress)
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
            await asyncio.wait(exits, timeout=_REAP_WAIT_S)

    def kill_all(self) -> None:
        """Kill every child now, without the event loop (for process exit); idempotent."""
        self._closed = True
        children = list(self._children)
        for child in children:
            child.kill()
        deadline = time.monotonic() + 2.0
        for child in children:
            child.process.join(max(0.0, deadline - time.monotonic()))

    def _checkout(self) -> _Child:
        while self._idle:
            child = self._idle.pop()  # the most recent: the others may go idle and stop
            child.cancel_idle_timer()
            if not child.exit_code.done():
                return child
        child = _Child(self._context, f"{self._name}-{next(self._numbers)}")
        self._children.add(child)
        child.exit_code.add_done_callback(lambda _: self._children.discard(child))
        return child

    def _park(self, child: _Child) -> None:
        if self._closed or child.exit_code.done():
            return
        if math.isfinite(self._idle_s):
            child.idle_timer = asyncio.get_running_loop().call_later(
                self._idle_s, self._retire, child
            )
        self._idle.append(child)

    def _retire(self, child: _Child) -> None:
        if child in self._idle:
            self._idle.remove(child)
            child.kill()

    async def _exchange(
        self,
        child: _Child,
        call: ChildCall,
        timeout_s: float | None,
        on_start: Callable[[], None] | None,
        progress: _ProgressRelay,
    ) -> ChildOutcome:
        job = _Job(
            module=call.module,
            qualname=call.qualname,
            payload=call.payload,
            context=call.context,
            serializer=call.serializer,
            retry_on=call.retry_on,
        )
        try:
            await child.send(_ENCODER.encode(job))
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
                case _Started():
                    started = True
                    if timeout_s is not None:
                        deadline = asyncio.get_running_loop().time() + timeout_s
                    _call_quietly(on_start)
                case _Progress(value=value):
                    progress.push(value)
                case _:
                    return _answered(reply)


class _Child:
    """One spawned child: its connection, its replies, and the future of its exit code."""

    def __init__(self, context: SpawnContext, name: str) -> None:
        self._loop = asyncio.get_running_loop()
        ours, theirs = context.Pipe(duplex=True)
        try:
            self.process: SpawnProcess = context.Process(
                target=_child_main, args=(theirs, os.getpid()), name=name
            )
            self.process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the child holds its end now; its death then reads as EOF here
        self.conn: Connection = ours
        self.replies: asyncio.Queue[_Reply | None] = asyncio.Queue()
        self.exit_code: asyncio.Future[int | None] = self._loop.create_future()
        self.idle_timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Future[None] | None = None
        self._reading = True
        self._exit_fd, self._own_exit_fd = _exit_fd(self.process)
        self._loop.add_reader(self.conn.fileno(), self._read)
        self._loop.add_reader(self._exit_fd, self._exited)

    async def send(self, data: bytes) -> None:
        """Write one message; a large one from a thread, so the loop never blocks on it."""
        if len(data) <= _INLINE_SEND_BYTES:
            self.conn.send_bytes(data)
            return
        self._sending = self._loop.run_in_executor(None, self.conn.send_bytes, data)
        await self._sending

    def kill(self) -> None:
        """SIGKILL the child; `_exited` reaps it when the kernel reports the exit."""
        if not self.exit_code.done():
            self.cancel_idle_timer()
            self.process.kill()

    def cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def _read(self) -> None:
        try:
            while self._reading and self.conn.poll():
                self.replies.put_nowait(_REPLY_DECODER.decode(self.conn.recv_bytes()))
        except (EOFError, OSError, msgspec.DecodeError):
            # The child closed its end or wrote garbage: it cannot answer any more.
            self._stop_reading()
            self.kill()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self.conn.fileno())

    def _exited(self) -> None:
        self._loop.remove_reader(self._exit_fd)
        if self._own_exit_fd:
            os.close(self._exit_fd)
        self._read()  # a reply written just before the exit still counts
        self._stop_reading()
        self.cancel_idle_timer()
        self.process.join(_REAP_WAIT_S)  # returns at once: the kernel reported the exit
        self._close_conn()
        self.exit_code.set_result(self.process.exitcode)
        self.replies.put_nowait(None)

    def _close_conn(self) -> None:
        # A thread may still be writing to it (until EPIPE): closing now could let the fd
        # number be reused under that write.
        if self._sending is not None and not self._sending.done():
            self._sending.add_done_callback(lambda _: self.conn.close())
        else:
            self.conn.close()


def _exit_fd(process: SpawnProcess) -> tuple[int, bool]:
    """An fd readable once the child exits, and whether it is ours to close.

    A pidfd (Linux) reports the exit even when a grandchild inherited the child's end of
    the connection; elsewhere the process sentinel serves.
    """
    pid = process.pid
    if pid is not None and hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):
            return os.pidfd_open(pid), True
    return process.sentinel, False


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


class _ProgressRelay:
    """Forwards a child's progress to `report`, one call at a time, latest value first.

    A child may report far faster than the broker writes; values that arrive while a write
    is in flight collapse into the newest. Progress is telemetry: a failing `report` is
    logged and never affects the job.
    """

    def __init__(self, report: Callable[[float], Awaitable[bool]] | None) -> None:
        self._report = report
        self._latest: float | None = None
        self._task: asyncio.Task[None] | None = None

    def push(self, value: float) -> None:
        if self._report is None:
            return
        self._latest = value
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._forward(self._report))
            _RELAYS.add(self._task)
            self._task.add_done_callback(_RELAYS.discard)

    def detach(self) -> None:
        """The job ended: a write in flight may finish (it is fenced), nothing new starts."""
        self._report = None

    def cancel(self) -> None:
        self._report = None
        if self._task is not None:
            self._task.cancel()

    async def _forward(self, report: Callable[[float], Awaitable[bool]]) -> None:
        while self._latest is not None:
            value, self._latest = self._latest, None
            try:
                await report(value)
            except Exception:  # telemetry must never fail a job
                log.warning("progress report failed", exc_info=True)


#: Relay tasks in flight (the loop keeps only weak references to tasks).
_RELAYS: set[asyncio.Task[None]] = set()


def _call_quietly(callback: Callable[[], None] | None) -> None:
    if callback is None:
        return
    try:
        callback()
    except Exception:  # the caller's bug must not be taken for the job's outcome
        log.exception("on_start callback failed")


def _answered(reply: _Ok | _Raised | _Unavailable) -> ChildOutcome:
    if isinstance(reply, _Ok):
        return ChildOutcome(kind=ChildOutcomeKind.OK, started=True, result=reply.result)
    if isinstance(reply, _Unavailable):
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


async def _timed_out(child: _Child, timeout_s: float | None) -> ChildOutcome:
    child.kill()
    # Wait for the reap so a slot never holds two processes (bounded: a child stuck in
    # the kernel must not hold the job's outcome).
    await asyncio.wait([child.exit_code], timeout=_REAP_WAIT_S)
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
def _child_main(conn: Connection, parent_pid: int) -> None:
    """A child's life: run jobs one at a time until the parent closes the connection or dies.

    SIGINT and SIGTERM are ignored: the parent decides when children stop, so a Ctrl-C or a
    SIGTERM to the process group is never taken for a job's crash.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="corq-parent-watch", daemon=True
    ).start()
    _JobServer(conn).serve()
    # Exit at once: threads a task left behind must not keep an unwanted child alive.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent is gone: an orphan must not keep running a job."""
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_S)
    os._exit(_EXIT_ORPHANED)


class _JobServer:
    """The child's end of the connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()
        self._functions: dict[
            tuple[str, str], tuple[Callable[..., Any], Task[Any, Any] | None]
        ] = {}
        # set_progress_sync needs a running loop to hand its report to; this one serves it.
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="corq-progress", daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):  # the parent closed its end or is gone
                return
            self._send(self._run(_JOB_DECODER.decode(data)))

    def _send(self, message: msgspec.Struct) -> None:
        data = _ENCODER.encode(message)
        try:
            with self._send_lock:
                self._conn.send_bytes(data)
        except OSError:  # the parent is gone: nobody wants this job's outcome
            os._exit(_EXIT_ORPHANED)

    async def _report(self, job: JobTuple, value: float) -> bool:
        self._send(_Progress(value=value))
        # The parent is not asked: if the claim is lost, it kills this child.
        return True

    def _run(self, job: _Job) -> _Ok | _Raised | _Unavailable:
        try:
            fn, task = self._function(job.module, job.qualname)
            serializer = get_serializer(job.serializer)
        except BaseException as exc:  # whatever importing the module raised
            return _Unavailable(error=f"cannot import the task in a child: {error_line(exc)}")
        try:
            args, kwargs = _arguments(task, serializer.loads(job.payload))
        except BaseException as exc:
            return _Unavailable(error=f"cannot decode the payload in a child: {error_line(exc)}")
        bind_job(job.context, self._report, self._loop)
        self._send(_Started())
        try:
            value = _call(fn, args, kwargs)
        except BaseException as exc:  # a task's error is data, SystemExit included
            return _raised(job.retry_on, exc, with_traceback=True)
        try:
            return _Ok(result=serializer.dumps(value))
        except BaseException as exc:
            return _raised(
                job.retry_on, exc, with_traceback=False, prefix="cannot encode the result: "
            )

    def _function(
        self, module: str, qualname: str
    ) -> tuple[Callable[..., Any], Task[Any, Any] | None]:
        found = self._functions.get((module, qualname))
        if found is None:
            found = self._functions[module, qualname] = _find_function(module, qualname)
        return found


def _find_function(
    module_name: str, qualname: str
) -> tuple[Callable[..., Any], Task[Any, Any] | None]:
    """The function at `module_name`.`qualname`, and the module's Task wrapping it, if any
    (whose signature and hints then check the arguments, as in the worker)."""
    if "<" in qualname:
        raise LookupError(f"{qualname} is not reachable from its module")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    if isinstance(target, Task):
        return target.fn, target
    if not callable(target):
        raise LookupError(f"{module_name}.{qualname} is not a function")
    for value in vars(module).values():
        if isinstance(value, Task) and value.fn is target:
            return target, value
    return target, None


def _arguments(task: Task[Any, Any] | None, data: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if task is not None:
        return task.decode_payload(data)
    if not (isinstance(data, dict) and isinstance(data.get("args", []), list)):
        raise ValueError("payload is not {'args': [...], 'kwargs': {...}}")
    kwargs = data.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise ValueError("payload is not {'args': [...], 'kwargs': {...}}")
    return tuple(data.get("args", [])), kwargs


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(*args, **kwargs))
    return fn(*args, **kwargs)


def _raised(
    retry_on: tuple[str, ...], exc: BaseException, *, with_traceback: bool, prefix: str = ""
) -> _Raised:
    """The ERROR reply, built whatever the exception does: a child must answer, not die."""
    try:
        return _describe_raised(retry_on, exc, with_traceback=with_traceback, prefix=prefix)
    except BaseException:  # a __str__ or __instancecheck__ that raises even SystemExit
        return _Raised(
            error=safe_text(prefix + type(exc).__name__, MAX_ERROR_CHARS),
            traceback=None,
            exception_type=type(exc).__name__,
            retry_requested=False,
            retry_delay_s=None,
            retry_on_matched=False,
        )


def _describe_raised(
    retry_on: tuple[str, ...], exc: BaseException, *, with_traceback: bool, prefix: str
) -> _Raised:
    retry = isinstance(exc, Retry)
    matched = not retry_on or any(_class_name(c) in retry_on for c in type(exc).__mro__)
    error = error_line(exc) if not prefix else safe_text(prefix + safe_str(exc), MAX_ERROR_CHARS)
    return _Raised(
        error=error,
        traceback=_traceback(exc) if with_traceback and not retry else None,
        exception_type=safe_text(_type_name(exc), MAX_ERROR_CHARS),
        retry_requested=retry,
        retry_delay_s=_retry_delay(exc) if retry else None,
        retry_on_matched=retry or matched,
    )


def _traceback(exc: BaseException) -> str:
    """The traceback from the task's own first frame (corq's and asyncio's are noise there)."""
    tb = exc.__traceback__
    while (
        tb is not None and tb.tb_next is not None and _is_plumbing(tb.tb_frame.f_code.co_filename)
    ):
        tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException as failure:  # formatting runs user __str__ and reads source files
        text = f"<traceback unavailable: {type(failure).__name__}>"
    return safe_text(text, MAX_TRACEBACK_CHARS)


def _is_plumbing(filename: str) -> bool:
    return filename == __file__ or filename.startswith(_ASYNCIO_DIR)


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _retry_delay(exc: BaseException) -> float | None:
    delay = getattr(exc, "delay", None)
    if isinstance(delay, int | float) and not isinstance(delay, bool):
        return clamp_delay_s(float(delay))
    return None
