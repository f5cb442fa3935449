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

    async def sleep(self, seconds: float) -> None: ...
