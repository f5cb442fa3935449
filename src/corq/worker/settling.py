"""Settling workflows: applying ended jobs to their workflows, so their children run.

A job of a workflow (or one a workflow watches) notes its end in its queue's outbox in the
same broker step that records it; ``settle_workflows`` then applies the end and releases
the children it decides. The writer tells this part which queues just had such an end
(`note`, never blocking the writer), and it settles them at once: that is what makes the
next link of a chain start a round trip or two after the previous one ended.

Every `interval_s` it also settles each served queue's ends older than `replay_ms` (a
worker that died between an end and its settle left them) and tends the workflows (half
written ones, releases a crashed settle decided but did not make). Outages are retried
quietly (logged once); a queue noted during one is settled when the broker is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from corq.aio import OutageLog, reraise_if_cancelling
from corq.backends.base import Workflows
from corq.errors import BrokerDataError, BrokerError
from corq.types import Clock, QueueName

log = logging.getLogger(__name__)

#: How often every served queue's old outbox entries are replayed and workflows tended.
SETTLE_EVERY_S = 1.0
#: Ends older than this are replayed by any worker (younger ones are still being settled
#: by the worker that recorded them).
REPLAY_AFTER_MS = 2_000
#: Pause after a failed settle before the noted queues are tried again.
_RETRY_S = 0.2


class Settler:
    """Settles the workflows of ended jobs: at once when told, and periodically."""

    def __init__(
        self,
        backend: Workflows,
        clock: Clock,
        queues: Sequence[QueueName],
        *,
        interval_s: float = SETTLE_EVERY_S,
        replay_ms: int = REPLAY_AFTER_MS,
        pending: Callable[[int], None] | None = None,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.queues = tuple(queues)
        #: Told +1 when a queue is noted and -1 once it is settled (burst mode must not
        #: stop while a settle may still release jobs).
        self._pending = pending
        self.interval_s = interval_s
        self.replay_ms = replay_ms
        self._noted: set[QueueName] = set()
        self._wake = asyncio.Event()
        self._outage = OutageLog("settling workflows", log)

    def note(self, queue: QueueName) -> None:
        """A workflow job of `queue` just ended: settle that queue soon (never blocks)."""
        if queue not in self._noted:
            self._noted.add(queue)
            if self._pending is not None:
                self._pending(+1)
        self._wake.set()

    async def run(self) -> None:
        """Settle noted queues as they come, and replay old ends every `interval_s`,
        until cancelled."""
        loop = asyncio.get_running_loop()
        next_replay = loop.time() + self.interval_s
        while True:
            timeout = max(0.0, next_replay - loop.time())
            if not self._noted:
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            if not await self.settle_noted():
                await asyncio.sleep(_RETRY_S)
            if loop.time() >= next_replay:
                await self.replay()
                next_replay = loop.time() + self.interval_s

    async def settle_noted(self) -> bool:
        """Settle the queues noted so far; False when the broker failed (those queues stay
        noted)."""
        while self._noted:
            queue = min(self._noted)
            self._noted.discard(queue)
            try:
                settled = await self._call(self.backend.settle_workflows(queue, self._now()))
            except BaseException:  # cancelled mid-call (the worker stopping): keep the note,
                self._noted.add(queue)  # so the stop's own settle does it
                raise
            if not settled:
                self._noted.add(queue)
                return False
            if self._pending is not None:
                self._pending(-1)
        return True

    async def replay(self) -> None:
        """Settle what others left behind in the served queues, then tend workflows."""
        for queue in self.queues:
            settle = self.backend.settle_workflows(queue, self._now(), older_than_ms=self.replay_ms)
            if not await self._call(settle):
                return
        await self._call(self.backend.tend_workflows(self._now()))

    async def _call(self, call: Awaitable[object]) -> bool:
        """Await a broker call; False (logged once per outage) when the broker could not
        be reached. A refusal is logged and not retried here: the outbox keeps the end, and
        the periodic replay tries it again."""
        try:
            await call
        except BrokerError as exc:
            reraise_if_cancelling()
            self._outage.failed(exc)
            return False
        except BrokerDataError as exc:
            log.error("settling workflows refused by the broker: %s", exc)
        self._outage.ok()
        return True

    def _now(self) -> int | None:
        return self.clock.broker_now_ms()
