"""The scheduler: leader election, then the ticks of every schedule, fired once each.

    async with Scheduler(app) as scheduler:   # a standby or the leader from here on
        ...
    # stopped: the lease released, so a standby takes over at once

`start()` / `stop()` do the same by hand, `run()` until `request_stop()` (a signal handler
calls it). Every worker runs one by default (``Worker(scheduler=True)``); ``corq
scheduler APP`` runs one alone.

The parts: `leader` (the lease and its fence), `state` (the schedules in memory and a
heap of when each is due), `decide` (the steps of a schedule at an instant, pure) and
`loop` (a term of leadership: load, poll, prepare, send). This module only times them: it
sleeps until the earliest of the next due tick (minus the time a preparation takes), the
next lease renewal and the next change poll; it never polls for ticks. Broker outages are
logged once each and retried with a capped backoff; nothing a schedule or the broker does
stops the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING

from corq.aio import OutageLog, reraise_if_cancelling
from corq.client import Client
from corq.errors import BrokerDataError, BrokerError, ConfigError
from corq.scheduler.counts import SchedulerCounts
from corq.scheduler.leader import Leadership
from corq.scheduler.loop import Term
from corq.types import Clock

if TYPE_CHECKING:
    from corq.app import App

log = logging.getLogger(__name__)

#: Prepared at least this long before a tick (plus what the last preparation took).
PREPARE_AHEAD_MS = 20
#: Longest preparation lead (a slow round must not hold a tick back for long).
MAX_PREPARE_AHEAD_MS = 1000
#: Renewals per lease.
RENEWALS_PER_LEASE = 4
#: Longest wait between attempts after a failed round.
MAX_BACKOFF_S = 2.0


class Scheduler:
    """Fires the ticks of the broker's schedules while it leads; waits as a standby while
    another scheduler does. A scheduler runs once: start it one time, stop it one time."""

    def __init__(self, app: App, *, holder: str | None = None, clock: Clock | None = None) -> None:
        settings = app.settings
        self.app = app
        self.clock: Clock = clock or app.clock
        #: The id this scheduler leads under (host.pid.random by default).
        self.holder = _check_holder(
            holder or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        )
        #: What this scheduler fired and skipped while it led.
        self.counts = SchedulerCounts()
        #: Schedules it cannot fire, by name, with why (also logged once).
        self.problems: dict[str, str] = {}
        self._lease_ms = round(settings.scheduler_lease_s * 1000)
        self._poll_ms = round(settings.scheduler_poll_s * 1000)
        self._renew_ms = max(1, self._lease_ms // RENEWALS_PER_LEASE)
        self._leadership: Leadership | None = None
        self._term: Term | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._immediate = False
        self._next_acquire_ms = 0
        self._next_renew_ms = 0
        self._next_poll_ms = 0
        self._prepare_ms = 0

    @property
    def is_leader(self) -> bool:
        """True while this scheduler holds the lease and fires ticks."""
        return self._term is not None and self._leadership is not None and self._leadership.leading

    def known_version(self, name: str) -> int | None:
        """The version of schedule `name` this leader holds in memory (None: not leading, or
        not known): lets a caller wait until the leader has seen a change it made."""
        entry = None if self._term is None else self._term.table.get(name)
        return None if entry is None else entry.record.version

    @property
    def stopped(self) -> bool:
        return self._main is not None and self._main.done()

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Begin; returns once the first attempt at the lead is made (leading or not)."""
        if self._main is not None:
            raise RuntimeError("this scheduler was started already (a Scheduler runs once)")
        main = self._main = asyncio.create_task(self._live(), name=f"corq-scheduler-{self.holder}")
        started = asyncio.ensure_future(self._started.wait())
        try:
            await asyncio.wait([main, started], return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if main.done() and not main.cancelled():
            main.result()

    def request_stop(self, *, immediate: bool = False) -> None:
        """Begin stopping (safe from a signal handler); `immediate` keeps the lease, as if
        this scheduler died (a standby takes over once it passes)."""
        self._immediate = self._immediate or immediate
        self._stop.set()

    async def stop(self, *, immediate: bool = False) -> None:
        """Stop and wait: the lease is released (unless `immediate`)."""
        if self._main is None:
            return
        self.request_stop(immediate=immediate)
        await self.wait()

    async def wait(self) -> None:
        """Wait until stopped; cancelling the wait stops it at once."""
        main = self._main
        if main is None:
            raise RuntimeError("scheduler not started")
        try:
            await asyncio.wait([main])
        except asyncio.CancelledError:
            self._immediate = True
            main.cancel()
            await asyncio.wait([main])
            raise
        if not main.cancelled():
            main.result()

    async def run(self) -> None:
        """Start, then run until stopped."""
        await self.start()
        await self.wait()

    # -- its life --------------------------------------------------------------------
    async def _live(self) -> None:
        client = self.app.new_client()
        self._leadership = Leadership(client.backend, self.clock, self.holder, self._lease_ms)
        try:
            await self._rounds(client)
        finally:
            self._term = None
            self._started.set()
            await self._close(client)

    async def _rounds(self, client: Client) -> None:
        outage = OutageLog("scheduler", log)
        backoff_s = 0.0
        while not self._stop.is_set():
            try:
                await self._round(client)
            except BrokerError as exc:
                reraise_if_cancelling()
                outage.failed(exc)
                backoff_s = min(max(backoff_s * 2, 0.05), MAX_BACKOFF_S)
            except Exception as exc:  # a refusal or a bug: logged, never the scheduler's end
                reraise_if_cancelling()
                if backoff_s < MAX_BACKOFF_S or isinstance(exc, BrokerDataError):
                    log.exception("scheduler round failed; starting over")
                self._term = None  # reload everything: the state may be out of step
                backoff_s = min(max(backoff_s * 2, 0.05), MAX_BACKOFF_S)
            else:
                outage.ok()
                backoff_s = 0.0
                continue
            finally:
                self._started.set()
            await self._back_off(backoff_s)

    async def _round(self, client: Client) -> None:
        leadership = self._leadership
        assert leadership is not None
        term = self._term
        now = self.clock.now_ms()
        if term is None or not leadership.leading or leadership.fence != term.fence:
            await self._stand_by(client, now)
            return
        if now >= self._next_renew_ms:
            if not await leadership.acquire() or leadership.fence != term.fence:
                self._term = None
                self._next_acquire_ms = now
                return
            self._next_renew_ms = now + self._renew_ms
        if now >= self._next_poll_ms:
            await term.poll()
            self._next_poll_ms = now + self._poll_ms
        due = term.next_due()
        if due is not None and due - self._lead_ms() <= self.clock.now_ms():
            await self._fire(term, due)
            return
        wake = min(self._next_renew_ms, self._next_poll_ms)
        if due is not None:
            wake = min(wake, due - self._lead_ms())
        await self._sleep_until(wake)

    async def _stand_by(self, client: Client, now: int) -> None:
        """Try for the lead every poll; a new fence is a new term (load everything)."""
        leadership = self._leadership
        assert leadership is not None
        self._term = None
        if now < self._next_acquire_ms:
            self._started.set()
            await self._sleep_until(self._next_acquire_ms)
            return
        self._next_acquire_ms = now + self._poll_ms
        if not await leadership.acquire():
            return
        term = Term(
            self.app,
            client.backend,
            client,
            self.clock,
            leadership,
            self.counts,
            self.problems,
        )
        await term.begin()
        self._term = term
        self._next_renew_ms = now + self._renew_ms
        self._next_poll_ms = now + self._poll_ms

    async def _fire(self, term: Term, due: int) -> None:
        """Prepare the schedules due at `due`, wait for the instant, send their steps."""
        at = max(due, self.clock.now_ms())
        started = time.perf_counter()
        round_ = await term.prepare(at)
        self._prepare_ms = round((time.perf_counter() - started) * 1000)
        if not await self._sleep_until(at):
            term.abandon(round_)
            return
        await term.send(round_)

    def _lead_ms(self) -> int:
        return min(PREPARE_AHEAD_MS + 2 * self._prepare_ms, MAX_PREPARE_AHEAD_MS)

    async def _sleep_until(self, deadline_ms: int) -> bool:
        """Sleep on the clock until `deadline_ms`; False when a stop came first."""
        delay_s = (deadline_ms - self.clock.now_ms()) / 1000
        if delay_s <= 0:
            return not self._stop.is_set()
        return await self._sleep_s(delay_s)

    async def _sleep_s(self, delay_s: float) -> bool:
        sleep = asyncio.ensure_future(self.clock.sleep(delay_s))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([sleep, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            stop.cancel()
        return not self._stop.is_set()

    async def _back_off(self, delay_s: float) -> None:
        """Wait before trying again after a failed round: real time, whatever the clock (an
        outage passes in real time, and a fake clock must not hold the retries back)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay_s)

    async def _close(self, client: Client) -> None:
        leadership = self._leadership
        if leadership is not None and not self._immediate:
            try:
                await leadership.release()
            except (BrokerError, BrokerDataError) as exc:
                log.warning("could not release the scheduler lease (%s); it will pass", exc)
        with contextlib.suppress(BrokerError, BrokerDataError):
            await client.close()


def _check_holder(holder: object) -> str:
    if not isinstance(holder, str) or not 1 <= len(holder) <= 200 or not holder.isprintable():
        raise ConfigError(f"scheduler holder must be 1-200 printable characters, got {holder!r}")
    return holder
