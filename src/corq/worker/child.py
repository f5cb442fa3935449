"""The child's side of `ProcessSlots`: what runs in a spawned child, and the messages.

Messages are msgpack envelopes sent with `multiprocessing.connection` ``send_bytes``, never
pickle (spawn's own bootstrap pickles only the connection and the parent's pid)::

    parent → child   JobMessage(module, qualname, payload, context, serializer, retry_on,
                                parents)
    child → parent   StartedMessage, any number of ProgressMessage(value), then one of
                     OkMessage(result) · RaisedMessage(...) · UnavailableMessage(error)

The child finds the task by its own module path and decodes the payload with the task's
serializer, so no bytes from the broker are ever unpickled. Whatever a task does, the child
answers (or dies, and the parent says so): it never reports the job's error as its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from corq.context import JobTuple, ParentsReader, bind_job
from corq.errors import CorqError, Retry, Snooze
from corq.limits import (
    MAX_ERROR_CHARS,
    clamp_delay_s,
    error_line,
    format_traceback,
    safe_str,
    safe_text,
    snooze_of,
)
from corq.serializers import Serializer, get_serializer
from corq.task import Task
from corq.worker.inputs import ParentTuple, decode_parents, from_tuples
from corq.workflow import ParentOutcome

#: How often a child checks that its parent is alive (an orphan must not keep running a job).
_PARENT_POLL_S = 0.2
#: Exit code of a child whose parent went away.
EXIT_ORPHANED = 70


# -- messages ----------------------------------------------------------------------------
class JobMessage(msgspec.Struct, tag="job", array_like=True):
    module: str
    qualname: str
    payload: bytes
    context: JobTuple
    serializer: str
    retry_on: tuple[str, ...]
    parents: tuple[ParentTuple, ...] | None = ()


class StartedMessage(msgspec.Struct, tag="started", array_like=True):
    pass


class ProgressMessage(msgspec.Struct, tag="progress", array_like=True):
    value: float


class OkMessage(msgspec.Struct, tag="ok", array_like=True):
    result: bytes


class RaisedMessage(msgspec.Struct, tag="raised", array_like=True):
    error: str
    traceback: str | None
    exception_type: str
    retry_requested: bool
    retry_delay_s: float | None
    retry_on_matched: bool
    snooze_s: float | None = None


class UnavailableMessage(msgspec.Struct, tag="unavailable", array_like=True):
    error: str


Reply = StartedMessage | ProgressMessage | OkMessage | RaisedMessage | UnavailableMessage
ENCODER = msgspec.msgpack.Encoder()
JOB_DECODER = msgspec.msgpack.Decoder(JobMessage)
REPLY_DECODER = msgspec.msgpack.Decoder(Reply)


# -- the child ----------------------------------------------------------------------------
def child_main(conn: Connection, parent_pid: int) -> None:
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
    os._exit(EXIT_ORPHANED)


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
            self._send(self._run(JOB_DECODER.decode(data)))

    def _send(self, message: msgspec.Struct) -> None:
        data = ENCODER.encode(message)
        try:
            with self._send_lock:
                self._conn.send_bytes(data)
        except OSError:  # the parent is gone: nobody wants this job's outcome
            os._exit(EXIT_ORPHANED)

    async def _report(self, job: JobTuple, value: float) -> bool:
        self._send(ProgressMessage(value=value))
        # The parent is not asked: if the claim is lost, it kills this child.
        return True

    def _run(self, job: JobMessage) -> OkMessage | RaisedMessage | UnavailableMessage:
        try:
            fn, task = self._function(job.module, job.qualname)
            serializer = get_serializer(job.serializer)
        except BaseException as exc:  # whatever importing the module raised
            return UnavailableMessage(error=f"cannot import the task in a child: {error_line(exc)}")
        try:
            args, kwargs = _arguments(task, serializer.loads(job.payload))
        except BaseException as exc:
            return UnavailableMessage(
                error=f"cannot decode the payload in a child: {error_line(exc)}"
            )
        bind_job(job.context, self._report, self._loop, _parents_reader(job, serializer))
        self._send(StartedMessage())
        try:
            value = _call(fn, args, kwargs)
        except BaseException as exc:  # a task's error is data, SystemExit included
            return _raised(job.retry_on, exc, with_traceback=True)
        try:
            return OkMessage(result=serializer.dumps(value))
        except BaseException as exc:
            return _raised(
                job.retry_on, exc, with_traceback=False, prefix="cannot encode the result: "
            )

    def _function(
        self, module: str, qualname: str
    ) -> tuple[Callable[..., Any], Task[Any, Any] | None]:
        found = self._functions.get((module, qualname))
        if found is None:
            found = self._functions[module, qualname] = find_function(module, qualname)
        return found


def _parents_reader(job: JobMessage, serializer: Serializer) -> ParentsReader:
    """``current_job().parents()`` in a child: the parents the worker read and sent."""
    parents = job.parents

    async def read(_: JobTuple) -> list[ParentOutcome]:
        if parents is None:
            raise CorqError(
                "parents() in a child process (process=True, or a sandbox): its parents' "
                "results were too big to hand over (over settings.max_payload_bytes); "
                "give the task inputs, or read them in a coroutine or thread task"
            )
        return decode_parents(from_tuples(parents), serializer)

    return read


def find_function(
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
) -> RaisedMessage:
    """The ERROR reply, built whatever the exception does: a child must answer, not die."""
    try:
        return _describe_raised(retry_on, exc, with_traceback=with_traceback, prefix=prefix)
    except BaseException:  # a __str__ or __instancecheck__ that raises even SystemExit
        return RaisedMessage(
            error=safe_text(prefix + type(exc).__name__, MAX_ERROR_CHARS),
            traceback=None,
            exception_type=type(exc).__name__,
            retry_requested=False,
            retry_delay_s=None,
            retry_on_matched=False,
        )


def _describe_raised(
    retry_on: tuple[str, ...], exc: BaseException, *, with_traceback: bool, prefix: str
) -> RaisedMessage:
    if isinstance(exc, Snooze):
        return _snoozed(exc, with_traceback=with_traceback)
    retry = isinstance(exc, Retry)
    matched = not retry_on or any(class_name(c) in retry_on for c in type(exc).__mro__)
    error = error_line(exc) if not prefix else safe_text(prefix + safe_str(exc), MAX_ERROR_CHARS)
    return RaisedMessage(
        error=error,
        traceback=_traceback(exc) if with_traceback and not retry else None,
        exception_type=safe_text(_type_name(exc), MAX_ERROR_CHARS),
        retry_requested=retry,
        retry_delay_s=_retry_delay(exc) if retry else None,
        retry_on_matched=retry or matched,
    )


def _snoozed(exc: Snooze, *, with_traceback: bool) -> RaisedMessage:
    """A valid snooze (its reason as the error), or the SnoozeError of a bad delay."""
    delay_s, text = snooze_of(exc)
    return RaisedMessage(
        error=text,
        traceback=_traceback(exc) if with_traceback and delay_s is None else None,
        exception_type=_type_name(exc),
        retry_requested=False,
        retry_delay_s=None,
        retry_on_matched=True,
        snooze_s=delay_s,
    )


def _traceback(exc: BaseException) -> str:
    """The traceback from the task's own first frame (corq's and asyncio's are noise there)."""
    tb = exc.__traceback__
    while (
        tb is not None and tb.tb_next is not None and _is_plumbing(tb.tb_frame.f_code.co_filename)
    ):
        tb = tb.tb_next
    return format_traceback(exc, tb)


def _is_plumbing(filename: str) -> bool:
    return filename == __file__ or filename.startswith(_ASYNCIO_DIR)


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _retry_delay(exc: BaseException) -> float | None:
    delay = getattr(exc, "delay", None)
    if isinstance(delay, int | float) and not isinstance(delay, bool):
        return clamp_delay_s(float(delay))
    return None
