"""Redis: a queue's pause is written twice (the configuration in ``{config}``, the flag in
the queue's slot); a crash between the two writes leaves the queue paused, and repeating
the call completes it (docs/design.md, "Runtime configuration, pause and strikes")."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

import corq
from corq.backends.redis.keys import RedisKeys
from corq.testing import run_worker


@pytest.fixture
async def app(redis_url: str, prefix: str) -> AsyncIterator[corq.App]:
    application = corq.App(redis_url, prefix=prefix)
    yield application
    await application.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_pause_whose_flag_was_lost_still_holds_and_repeating_it_repairs(
    app: corq.App, raw: Redis, prefix: str
) -> None:
    started: list[int] = []

    @app.task
    async def work(n: int) -> None:
        started.append(n)

    @app.task(queue="other")
    async def probe() -> str:
        return "ran"

    admin = app.admin("ops")
    flag = RedisKeys(prefix).queue("default").paused
    # Given a pause whose second write (the queue's flag) never happened
    await admin.pause_queue("default")
    await raw.delete(flag)
    jobs = [await work.enqueue(n) for n in range(3)]

    async with run_worker(app, queues=["default", "other"]):
        # Then the worker, which follows the configuration, starts none of them while it
        # runs the jobs of its other queue
        assert await (await probe.enqueue()).result(timeout=10) == "ran"
        assert started == []
        assert [await j.status() for j in jobs] == [corq.JobStatus.QUEUED] * 3

        # And repeating the pause writes the flag again; the resume then lets them run
        await admin.pause_queue("default")
        assert await raw.exists(flag) == 1
        await admin.resume_queue("default")
        for job in jobs:
            await job.result(timeout=10)
    assert sorted(started) == [0, 1, 2]
