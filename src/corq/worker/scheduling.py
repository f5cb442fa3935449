"""The worker's scheduler: one more part, so every worker can lead the schedules.

It starts with the worker's loops and stops first at shutdown, releasing the lease, so a
standby takes the lead while this worker is still giving its jobs their grace period.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from corq.scheduler import Scheduler

if TYPE_CHECKING:
    from corq.app import App

log = logging.getLogger(__name__)

#: Longest a stopping worker waits for its scheduler to release the lease.
RELEASE_TIMEOUT_S = 5.0


class SchedulerPart:
    """Runs a `Scheduler` beside the worker's loops."""

    def __init__(self, app: App, worker_id: str) -> None:
        # A holder of its own per process: a restarted worker that reuses a fixed worker id
        # must not take over its dead predecessor's lease as if it were its own.
        self.scheduler = Scheduler(app, holder=f"{worker_id}.{uuid.uuid4().hex[:6]}")

    async def run(self) -> None:
        """Run the scheduler until `stop` (the worker's loop task)."""
        await self.scheduler.run()

    async def stop(self, task: asyncio.Task[None], *, immediate: bool) -> None:
        """Stop the scheduler (releasing the lease unless `immediate`), bounded."""
        self.scheduler.request_stop(immediate=immediate)
        await asyncio.wait([task], timeout=RELEASE_TIMEOUT_S)
        if not task.done():
            log.warning("scheduler did not stop in %.0fs; its lease will pass", RELEASE_TIMEOUT_S)
            task.cancel()
            await asyncio.wait([task])
