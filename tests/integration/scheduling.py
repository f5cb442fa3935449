"""What the scheduler tests share: an app on a fake clock with a long scheduler lease (a
test jumps the clock by minutes without the lease passing), tick times on a grid anchored
at the clock's start, and reads of what a schedule fired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import corq
from corq.job import Job
from corq.schedule import tick_job_id
from corq.scheduler import Scheduler
from tests.waiting import until

#: The fake clock's start, and the anchor of every interval schedule in these tests.
START_MS = corq.FakeClock().start_ms
START = datetime.fromtimestamp(START_MS / 1000, UTC)
MIN_MS = 60_000
#: A lease no jump of the clock in a test outlasts by accident.
LEASE_S = 600.0


def tick(k: int, every_ms: int = MIN_MS) -> int:
    """The k-th tick after the start of a schedule every `every_ms` anchored at START."""
    return START_MS + k * every_ms


def fake_app(url: str, prefix: str, **settings: Any) -> tuple[corq.App, corq.FakeClock]:
    clock = corq.FakeClock()
    app = corq.App(
        url,
        prefix=prefix,
        clock=clock,
        scheduler_lease_s=LEASE_S,
        scheduler_poll_s=0.5,
        **settings,
    )
    return app, clock


@asynccontextmanager
async def leading(app: corq.App, holder: str = "only") -> AsyncIterator[Scheduler]:
    """A scheduler that leads for the duration of the block."""
    async with Scheduler(app, holder=holder) as scheduler:
        await until(lambda: scheduler.is_leader, what="the scheduler to lead")
        yield scheduler


async def fired(app: corq.App, schedule: str, tick_ms: int, queue: str = "default") -> Job | None:
    """The job of a schedule's tick, if it was fired."""
    return await app.client().get_job(tick_job_id(schedule, tick_ms), queue)


async def wait_fired(app: corq.App, schedule: str, tick_ms: int, queue: str = "default") -> Job:
    async def job() -> Job | None:
        try:
            return await fired(app, schedule, tick_ms, queue)
        except corq.BrokerError:  # a test that restarts the broker: not yet
            return None

    await until(job, what=f"{schedule} to fire tick {tick_ms}")
    found = await job()
    assert found is not None
    return found


async def run_ticks(app: corq.App, schedule: str) -> list[int]:
    """The ticks of a schedule's regular runs in its history, oldest first."""
    runs, _ = await app.schedules.history(schedule, limit=1000)
    return sorted(
        round(r.tick.timestamp() * 1000)
        for r in runs
        if r.kind in (corq.RunKind.TICK, corq.RunKind.BUFFERED)
    )
