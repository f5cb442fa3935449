"""Lease renewal from a dedicated thread, and a watch on the worker's event loop.

The thread has its own event loop and broker connection, so a task that blocks the worker's
loop (CPU-bound code in an async task) does not make the worker look dead. Instead the
thread notices the loop has stopped ticking and logs which task holds it, and for how long.

The thread learns which job holds the loop from the worker's registry: it asks the loop
which asyncio task it is stepping, and the registry which job that task runs.

A loop blocked for good (a deadlocked or spinning task) must not keep its jobs for ever:
once it has been stalled for ``max_stall_s``, the thread stops renewing the lease and says
why, so the jobs run elsewhere; when the loop comes back, the worker learns it lost them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable

from corq.aio import OutageLog
from corq.backends.base import Backend, WorkerLease
from corq.errors import BrokerDataError, BrokerError
from corq.types import Clock
from corq.worker.leases import LostHolders
from corq.worker.registry import Registry

log = logging.getLogger(__name__)

#: How often the thread wakes to check the loop and whether it must stop.
_TICK_S = 0.05
#: How often the worker's loop ticks (a gap between ticks is a stall).
TICK_EVERY_S = 0.02


class Heartbeat:
    """Renews one worker's lease every `interval_s`; reports lost queues to the worker.

    Its thread talks to the broker over a connection of its own, cloned from `backend` when
    it starts.
    """

    def __init__(
        self,
        backend: Backend,
        lease: Callable[[], WorkerLease],
        clock: Clock,
        *,
        interval_s: float,
        lag_warn_s: float,
        max_stall_s: float,
        on_lost: Callable[[LostHolders], None],
        registry: Registry,
    ) -> None:
        self.backend = backend
        #: The worker's current lease (holders change when a queue is lost and re-joined).
        self.lease = lease
        self.clock = clock
        self.interval_s = interval_s
        self.lag_warn_s = lag_warn_s
        self.max_stall_s = max_stall_s
        self.on_lost = on_lost
        self.registry = registry
        self.main_thread_id = threading.get_ident()
        self._loop = asyncio.get_running_loop()
        self.last_tick = time.monotonic()
        #: Longest stall seen, in seconds (for tests and metrics).
        self.max_lag_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="corq-heartbeat", daemon=True)
        self._stalled_since: float | None = None
        self._stall_where = ""
        self._quiet = False
        self._gave_up = False
        self._outage = OutageLog("heartbeat", log)

    def start(self) -> None:
        self.backend = self.backend.clone()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(10)

    def tick(self) -> None:
        """Called by the worker's loop every few ms; a gap between ticks is a stall."""
        self.last_tick = time.monotonic()

    async def ticker(self) -> None:
        """The worker's loop runs this: its ticks show the thread the loop is alive."""
        while True:
            self.tick()
            await asyncio.sleep(TICK_EVERY_S)

    def quiet(self) -> None:
        """Stop watching the loop (the worker is shutting down; its ticker stops too)."""
        self._quiet = True

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        next_beat = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                self._watch_loop(now)
                if now >= next_beat:
                    await self._beat()
                    next_beat = time.monotonic() + self.interval_s
                await asyncio.sleep(_TICK_S)
        finally:
            self._watch_loop(time.monotonic())  # report a stall that ended just before stop
            await self.backend.close()

    async def _beat(self) -> None:
        if self._stalled_too_long():
            return
        lease = self.lease()
        try:
            lost = await asyncio.wait_for(
                self.backend.heartbeat(lease, self.clock.broker_now_ms()), self.interval_s * 2
            )
        except (BrokerError, BrokerDataError, TimeoutError) as exc:
            self._outage.failed(exc)
            return
        self._outage.ok()
        if lost:
            log.warning("lease lost in queue(s) %s: jobs there were taken back", ", ".join(lost))
            self.on_lost([(queue, lease.holder(queue)) for queue in lost])

    def _stalled_too_long(self) -> bool:
        """True while the loop has been blocked past max_stall_s: the lease must lapse."""
        stalled = not self._quiet and time.monotonic() - self.last_tick >= self.max_stall_s
        if stalled and not self._gave_up:
            log.error(
                "event loop blocked for over %.0fs by %s: no longer renewing the lease, so this "
                "worker's jobs run elsewhere",
                self.max_stall_s,
                self._stall_where or "an unknown task",
            )
        self._gave_up = stalled
        return stalled

    def _watch_loop(self, now: float) -> None:
        lag = now - self.last_tick
        # Once quiet (shutting down, the ticker stopped) no new stall is reported, but one that
        # ended before is.
        if lag >= self.lag_warn_s and not self._quiet:
            if self._stalled_since is None:
                self._stalled_since = self.last_tick
                self._stall_where = self._describe_stall()
                log.warning("event loop blocked for %.2fs so far by %s", lag, self._stall_where)
            self.max_lag_s = max(self.max_lag_s, lag)
        elif self._stalled_since is not None:
            total = self.last_tick - self._stalled_since
            self.max_lag_s = max(self.max_lag_s, total)
            log.warning(
                "event loop was blocked for %.2fs by %s; run blocking code as a plain function "
                "(thread pool) or with process=True",
                total,
                self._stall_where,
            )
            self._stalled_since = None

    def _describe_stall(self) -> str:
        """Name the job (and task) whose coroutine holds the loop, and where it is."""
        running = self.registry.running_in(asyncio.current_task(self._loop))
        where = _location(self.main_thread_id)
        if running is None:
            return f"code outside any task{where}"
        return f"task '{running.job.task}' (job {running.job.id}){where}"


def _location(thread_id: int) -> str:
    """Where a thread is executing now (file and line of its innermost frame)."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return ""
    return f" at {frame.f_code.co_filename}:{frame.f_lineno}"
