"""The parent's end of one spawned child: its process, its connection, its replies.

A child is watched from the event loop: its connection's fd for replies, and an fd that
becomes readable when it exits (a pidfd on Linux), so a death is noticed at once, without
polling, and a reply written just before it still counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess

import msgspec

from corq.worker.child import REPLY_DECODER, Reply, child_main

log = logging.getLogger(__name__)

#: Job messages up to this size are written from the event loop. A child still starting up
#: does not read its socket yet, so a larger write could block the loop: it goes to a thread.
_INLINE_SEND_BYTES = 32 * 1024
#: Longest wait for a killed child to be reaped before the parent moves on.
REAP_WAIT_S = 5.0


class SpawnedChild:
    """One spawned child: its connection, its replies, and the future of its exit code."""

    def __init__(self, context: SpawnContext, name: str) -> None:
        self._loop = asyncio.get_running_loop()
        ours, theirs = context.Pipe(duplex=True)
        try:
            self.process: SpawnProcess = context.Process(
                target=child_main, args=(theirs, os.getpid()), name=name
            )
            self.process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the child holds its end now; its death then reads as EOF here
        self.conn: Connection = ours
        self.replies: asyncio.Queue[Reply | None] = asyncio.Queue()
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
                self.replies.put_nowait(REPLY_DECODER.decode(self.conn.recv_bytes()))
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
        self.process.join(REAP_WAIT_S)  # returns at once: the kernel reported the exit
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


class ProgressRelay:
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
