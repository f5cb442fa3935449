"""Small shared aliases and protocols; imports nothing from corq."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

JobId = str
QueueName = str
TaskName = str
WorkerId = str
Payload = bytes

TaskFn = Callable[..., Any] | Callable[..., Awaitable[Any]]


class Clock(Protocol):
    """Where every part of corq reads the time, so tests can fast-forward it."""

    def now_ms(self) -> int: ...

    def broker_now_ms(self) -> int | None:
        """The time to hand the broker for leases: None lets the broker use its own clock
        (real clocks); a fake clock hands its own so tests can move leases."""
        ...

    async def sleep(self, seconds: float) -> None: ...
