"""`Admin.follow` waits out a broker outage and resumes from its cursor: every event once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import corq
from corq.events import Event, EventKind
from tests.conftest import RedisServer, free_port
from tests.waiting import until

pytestmark = pytest.mark.slow  # restarts a redis-server


async def test_follow_survives_a_broker_restart_and_shows_each_event_once(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "redis", port=free_port())
    server.start()
    app = corq.App(server.url, prefix=prefix, socket_timeout_s=0.3)

    @app.task
    async def echo(x: int) -> int:
        return x

    seen: list[Event] = []
    caplog.set_level(logging.WARNING, logger="corq.admin.events")

    async def follow() -> None:
        cursor = await app.admin().events_cursor()
        ready.set()
        async for event in app.admin().follow(cursor, queue="default"):
            seen.append(event)

    ready = asyncio.Event()
    follower = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        first = await echo.enqueue(1)
        await until(lambda: [e.job_id for e in seen] == [first.id], what="the first event")

        # When the broker goes away for a while and comes back
        server.stop()
        await until(
            lambda: "broker unavailable" in caplog.text, what="the follower to meet the outage"
        )
        assert not follower.done()
        server.start()
        second = await echo.enqueue(2)

        # Then the follower resumes from where it was: each event once, in order
        await until(lambda: len(seen) >= 2, timeout=20, what="the event after the restart")
        assert [(e.job_id, e.kind) for e in seen] == [
            (first.id, EventKind.ENQUEUED),
            (second.id, EventKind.ENQUEUED),
        ]
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await app.aclose()
        server.stop()
