"""Helpers for testing your own tasks: an in-process worker and a fake clock.

    async def test_signup(app):
        async with corq.testing.run_worker(app) as worker:
            job = await send_welcome.enqueue("ann@example.org")
            assert await job.result(timeout=5) == "sent"

With ``App(clock=FakeClock())`` delays, retry backoff and lease expiry move only when the
test calls ``clock.advance(seconds)``: no real sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from corq.app import App
from corq.clock import FakeClock
from corq.types import QueueName
from corq.worker import Worker

__all__ = ["FakeClock", "drain", "run_worker"]


@contextlib.asynccontextmanager
async def run_worker(
    app: App,
    *,
    queues: Mapping[QueueName, int] | Sequence[QueueName] | None = None,
    concurrency: int | None = None,
    grace_s: float = 5.0,
    **kwargs: Any,
) -> AsyncIterator[Worker]:
    """Run a worker in this event loop for the duration of the block, then stop it cleanly
    (see `worker.counts` for what its jobs did)."""
    worker = Worker(
        app, queues=queues or _all_queues(app), concurrency=concurrency, grace_s=grace_s, **kwargs
    )
    async with worker:
        yield worker


async def drain(
    app: App,
    *,
    queues: Mapping[QueueName, int] | Sequence[QueueName] | None = None,
    concurrency: int | None = None,
    timeout: float = 30.0,
) -> Worker:
    """Run a burst worker until the queues are empty and nothing runs; returns it (see
    `worker.counts`)."""
    worker = Worker(
        app, queues=queues or _all_queues(app), concurrency=concurrency, burst=True, grace_s=0
    )
    await asyncio.wait_for(worker.run(), timeout)
    return worker


def _all_queues(app: App) -> list[QueueName]:
    return sorted(app.task_queues() or {app.settings.default_queue})
