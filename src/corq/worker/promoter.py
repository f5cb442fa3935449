"""Promotion of delayed jobs: sleep until the next one is due, then move due jobs to ready.

The fetchers tell the promoter each queue's next due time (every claim returns it), so an
idle worker wakes exactly when a delayed job or a retry becomes due, without polling.
"""

from __future__ import annotations

import asyncio

from corq.aio import Backoff
from corq.backends.base import Backend
from corq.errors import BrokerError
from corq.types import Clock, QueueName


class Promoter:
    """Moves due delayed jobs of the worker's queues to their ready queues."""

    def __init__(self, backend: Backend, clock: Clock) -> None:
        self.backend = backend
        self.clock = clock
        self._next_due: dict[QueueName, int | None] = {}
        self._due_changed = asyncio.Event()

    def note_due(self, queue: QueueName, due_ms: int | None) -> None:
        """The earliest delayed job of `queue` is due at `due_ms` (None: there is none)."""
        if self._next_due.get(queue) != due_ms:
            self._next_due[queue] = due_ms
            self._due_changed.set()

    async def run(self) -> None:
        """Promote until cancelled."""
        backoff = Backoff("promote")
        while True:
            self._due_changed.clear()
            dues = [d for d in self._next_due.values() if d is not None]
            if not dues:
                await self._due_changed.wait()
                continue
            delay_s = (min(dues) - self.clock.now_ms()) / 1000
            if delay_s > 0:
                await self._sleep_or_change(delay_s)
                continue
            try:
                await self._promote_due()
                backoff.reset()
            except BrokerError as exc:
                await backoff.wait(exc)

    async def _promote_due(self) -> None:
        now = self.clock.now_ms()
        behind = False
        for queue, due in list(self._next_due.items()):
            if due is not None and due <= now:
                self._next_due[queue] = nxt = await self.backend.promote_due_jobs(
                    queue, self.clock.broker_now_ms()
                )
                behind = behind or (nxt is not None and nxt <= due)
        if behind:
            # The broker's clock is a little behind ours: nothing was due for it yet.
            await asyncio.sleep(0.01)

    async def _sleep_or_change(self, delay_s: float) -> None:
        sleep = asyncio.ensure_future(self.clock.sleep(delay_s))
        changed = asyncio.ensure_future(self._due_changed.wait())
        try:
            await asyncio.wait([sleep, changed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            changed.cancel()
