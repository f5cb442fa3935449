"""Waiting for a state, never for a time: the tests' one polling helper."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "", interval: float = 0.02
) -> None:
    """Return once `predicate()` (a plain or a coroutine function) is true; fail after
    `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(interval)
