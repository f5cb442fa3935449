"""An App per test on the session's redis-server, with its own key prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import corq


@pytest.fixture
async def app(redis_url: str, prefix: str) -> AsyncIterator[corq.App]:
    application = corq.App(redis_url, prefix=prefix, heartbeat_s=0.2, reclaim_s=0.2, lease_s=2)
    yield application
    await application.aclose()


@pytest.fixture
async def fake_app(redis_url: str, prefix: str) -> AsyncIterator[tuple[corq.App, corq.FakeClock]]:
    clock = corq.FakeClock()
    application = corq.App(redis_url, prefix=prefix, clock=clock)
    yield application, clock
    await application.aclose()
