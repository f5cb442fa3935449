"""Small asyncio helpers shared by the runtime."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("corq.worker")


def reraise_if_cancelling() -> None:
    """Raise CancelledError if the current task is being cancelled.

    Some event loops (uvloop) surface a cancelled socket read as a connection error, which
    the broker reports as BrokerError; a loop that retries on BrokerError must not swallow
    its own cancellation.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Backoff:
    """Waits between attempts while the broker is unreachable, logging once per outage."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.delay = 0.0

    async def wait(self, exc: Exception) -> None:
        reraise_if_cancelling()
        if self.delay == 0.0:
            log.warning("broker unreachable (%s: %s); retrying with backoff", self.what, exc)
        self.delay = min(max(self.delay * 2, 0.05), 1.0)
        await asyncio.sleep(self.delay)

    def reset(self) -> None:
        if self.delay:
            log.info("broker reachable again (%s)", self.what)
        self.delay = 0.0
