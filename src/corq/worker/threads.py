"""Threads for plain (sync) task functions, with deadlines that start when the body starts.

Why not ThreadPoolExecutor: a thread cannot be killed, so a call that timed out keeps its
pool thread, and `asyncio.wait_for` around `run_in_executor` times a call from when it was
submitted. Behind a few stuck calls, later jobs then "time out" while still waiting for a
thread, and are failed without having run. And a StopIteration raised by the function
cannot cross a Future, which leaves the awaiting job running for ever.

`ThreadSlots` keeps `size` threads taking calls in arrival order. A call's deadline starts
when a thread begins it. A call that times out, or whose caller is cancelled while it runs,
is *abandoned*: its thread finishes the call in the background and then exits, and a
replacement thread starts at once, so `size` threads stay available. At most
`max_abandoned` (default: `size`) abandoned threads get a replacement; beyond that, new
calls wait until a stuck thread ends, and one warning says how many are stuck. A call whose
caller is cancelled before it started is withdrawn and never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corq.limits import format_traceback

log = logging.getLogger(__name__)


class ThreadOutcomeKind(enum.Enum):
    """How a call on a thread ended."""

    #: The function returned `value`.
    OK = "ok"
    #: The function raised `exception` (any BaseException, StopIteration included).
    ERROR = "error"
    #: The body ran past `timeout_s`, counted from its start; its thread was abandoned.
    TIMEOUT = "timeout"


@dataclass(frozen=True, kw_only=True, slots=True)
class ThreadOutcome:
    """What happened to one call."""

    #: How it ended.
    kind: ThreadOutcomeKind
    #: OK: what the function returned.
    value: Any = None
    #: ERROR: what it raised.
    exception: BaseException | None = None
    #: ERROR: the formatted traceback, cut with `corq.limits.safe_text`.
    traceback: str | None = None


class _State(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    WITHDRAWN = "withdrawn"


class _Lane:
    """One thread; `abandoned` once its call timed out or lost its caller."""

    __slots__ = ("abandoned",)

    def __init__(self) -> None:
        self.abandoned = False


class _Call:
    """One call and its way back to the event loop; `state` is guarded by the slots' lock."""

    __slots__ = ("context", "done", "fn", "lane", "loop", "outcome", "started", "state")

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        # corq binds the current job in a ContextVar: the function must see the caller's.
        self.context = contextvars.copy_context()
        self.loop = loop
        self.started: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.state = _State.WAITING
        self.lane: _Lane | None = None
        self.outcome: ThreadOutcome | None = None


class ThreadSlots:
    """`size` threads for plain functions; see the module docstring for abandoned threads."""

    def __init__(self, size: int, *, name: str, max_abandoned: int | None = None) -> None:
        if size < 1:
            raise ValueError(f"ThreadSlots needs at least one thread, got {size}")
        if max_abandoned is not None and max_abandoned < 0:
            raise ValueError(f"max_abandoned must not be negative, got {max_abandoned}")
        self._size = size
        self._name = name
        self._max_abandoned = size if max_abandoned is None else max_abandoned
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        #: Threads taking calls from the queue; abandoned ones are not counted.
        self._lanes = 0
        self._abandoned = 0
        self._busy = 0
        self._waiting = 0
        self._closed = False
        self._warned = False

    def free_threads(self) -> int:
        """Calls that would start at once."""
        with self._lock:
            return max(0, self._capacity() - self._busy - self._waiting)

    def running_abandoned(self) -> int:
        """Threads still running an abandoned call (a worker exiting with some must exit hard:
        they would run on after their jobs were released)."""
        with self._lock:
            return self._abandoned

    async def run(
        self,
        fn: Callable[[], Any],
        *,
        timeout_s: float | None,
        on_start: Callable[[], None] | None = None,
    ) -> ThreadOutcome:
        """Call `fn` on a thread, in a copy of the caller's context.

        Waits for a thread in arrival order; `on_start` runs on the event loop when the body
        begins, and `timeout_s` counts from then. Cancelled before the body began, the call
        is withdrawn (it never runs); after, its thread is abandoned. Both re-raise.
        Raises RuntimeError after `close`.
        """
        call = _Call(fn, asyncio.get_running_loop())
        self._submit(call)
        deadline: asyncio.Timeout | None = None
        try:
            await call.started
            if on_start is not None:
                on_start()
            deadline = asyncio.timeout(timeout_s)
            async with deadline:
                await call.done
        except TimeoutError:
            if deadline is None or not deadline.expired():
                self._withdraw_or_abandon(call)
                raise
            return self._timed_out(call)
        except BaseException:  # cancelled, or on_start raised: the call must not run unowned
            self._withdraw_or_abandon(call)
            raise
        return self._outcome_of(call)

    def close(self) -> None:
        """Let the threads exit once the calls already submitted are done; idempotent.

        Threads are daemons: one stuck in a call does not hold up interpreter exit.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in range(self._lanes):
                self._queue.put(None)

    # -- event loop side ----------------------------------------------------------------
    def _submit(self, call: _Call) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: the thread slots are closed")
            self._waiting += 1
            self._fill()
        self._queue.put(call)

    def _timed_out(self, call: _Call) -> ThreadOutcome:
        with self._lock:
            if call.state is not _State.FINISHED:
                self._abandon(call)
                return ThreadOutcome(kind=ThreadOutcomeKind.TIMEOUT)
        # It finished as the deadline passed: its result is real, so it is the outcome.
        return self._outcome_of(call)

    def _withdraw_or_abandon(self, call: _Call) -> None:
        with self._lock:
            if call.state is _State.WAITING:
                call.state = _State.WITHDRAWN
                self._waiting -= 1
            elif call.state is _State.RUNNING:
                self._abandon(call)

    @staticmethod
    def _outcome_of(call: _Call) -> ThreadOutcome:
        if call.outcome is None:  # done is only set after the outcome
            raise RuntimeError("a thread call reported done without an outcome")
        return call.outcome

    # -- shared (under the lock) ----------------------------------------------------------
    def _capacity(self) -> int:
        """How many threads may take calls: `size`, less the stuck ones beyond the cap."""
        return min(self._size, self._size + self._max_abandoned - self._abandoned)

    def _abandon(self, call: _Call) -> None:
        lane = call.lane
        if lane is None or lane.abandoned:
            return
        lane.abandoned = True
        self._lanes -= 1
        self._busy -= 1
        self._abandoned += 1
        self._fill()

    def _fill(self) -> None:
        """Start threads up to the capacity; warn once when stuck threads hold it down.

        After `close`, a thread is still replaced while calls wait (they were accepted), and
        each such thread gets its own stop marker behind them.
        """
        while self._lanes < self._capacity() and (not self._closed or self._waiting > 0):
            self._lanes += 1
            threading.Thread(
                target=self._serve,
                args=(_Lane(),),
                name=f"{self._name}-{next(self._numbers)}",
                daemon=True,
            ).start()
            if self._closed:
                self._queue.put(None)
        if self._lanes >= self._size or self._closed:
            self._warned = False
        elif not self._warned:
            self._warned = True
            log.warning(
                "%s: %d threads are stuck in calls that timed out or lost their job; "
                "new calls wait until one of them ends",
                self._name,
                self._abandoned,
            )

    # -- thread side ------------------------------------------------------------------------
    def _serve(self, lane: _Lane) -> None:
        while True:
            call = self._queue.get()
            if call is None:  # closed, and every call queued before the marker is done
                with self._lock:
                    self._lanes -= 1
                return
            if not self._begin(call, lane):
                continue
            outcome = _invoke(call)
            if self._finish(call, lane, outcome):
                return

    def _begin(self, call: _Call, lane: _Lane) -> bool:
        with self._lock:
            if call.state is _State.WITHDRAWN:
                return False
            call.state = _State.RUNNING
            call.lane = lane
            self._waiting -= 1
            self._busy += 1
        _wake(call.loop, call.started)
        return True

    def _finish(self, call: _Call, lane: _Lane, outcome: ThreadOutcome) -> bool:
        """Record the outcome; True when this thread was abandoned and must exit now."""
        with self._lock:
            call.outcome = outcome
            call.state = _State.FINISHED
            if lane.abandoned:
                self._abandoned -= 1
                self._fill()
            else:
                self._busy -= 1
        _wake(call.loop, call.done)
        return lane.abandoned


def _invoke(call: _Call) -> ThreadOutcome:
    try:
        value = call.context.run(call.fn)
    except BaseException as exc:  # everything a task raises is its outcome
        return ThreadOutcome(kind=ThreadOutcomeKind.ERROR, exception=exc, traceback=_format(exc))
    return ThreadOutcome(kind=ThreadOutcomeKind.OK, value=value)


def _format(exc: BaseException) -> str:
    """The traceback from the function's own first frame (this module's is noise there)."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return format_traceback(exc, tb)


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    # A closed loop raises RuntimeError: nobody waits for this call any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # the caller may have given up (timeout, cancellation)
        future.set_result(None)
