"""An App per test, on each broker: the session's redis-server (own key prefix) and a
SQLite file of its own. Worker behaviour must not depend on the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

import corq


@pytest.fixture(params=["redis", "sqlite"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'corq.db'}"


@pytest.fixture
async def app(broker_url: str, prefix: str) -> AsyncIterator[corq.App]:
    application = corq.App(broker_url, prefix=prefix, heartbeat_s=0.2, reclaim_s=0.2, lease_s=2)
    yield application
    await application.aclose()


@pytest.fixture
async def fake_app(broker_url: str, prefix: str) -> AsyncIterator[tuple[corq.App, corq.FakeClock]]:
    clock = corq.FakeClock()
    application = corq.App(broker_url, prefix=prefix, clock=clock)
    yield application, clock
    await application.aclose()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A plain redis-py client, to read or damage keys the way another program would."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()
