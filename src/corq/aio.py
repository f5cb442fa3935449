"""Small asyncio helpers shared by the runtime."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

log = logging.getLogger("corq.worker")
T = TypeVar("T")


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


class OutageLog:
    """Logs a loop's broker failures once per outage: a warning at the first, debug after,
    and a note when a call succeeds again (a loop that beats every second must not print a
    line per beat while the broker is down)."""

    def __init__(self, what: str, logger: logging.Logger = log) -> None:
        self.what = what
        self.logger = logger
        self.failing = False

    def failed(self, exc: Exception) -> None:
        """Note a failed call."""
        if self.failing:
            self.logger.debug("%s still failing: %s", self.what, exc)
            return
        self.failing = True
        self.logger.warning("%s failed (%s); retrying quietly until it works", self.what, exc)

    def ok(self) -> None:
        """Note a call that worked."""
        if self.failing:
            self.failing = False
            self.logger.info("%s works again", self.what)


async def gather_bounded(calls: Sequence[Awaitable[T]], limit: int) -> list[T]:
    """Await `calls` with at most `limit` in flight; results in order (the first error is
    raised, as with gather)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))
