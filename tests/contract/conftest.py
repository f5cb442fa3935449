"""The `backend` fixture: every contract test runs against every broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corq.backends import Backend, open_backend

BROKERS = ["redis", "sqlite"]


@pytest.fixture(params=BROKERS)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> AsyncIterator[Backend]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = f"sqlite:///{tmp_path / 'corq.db'}"
    b = open_backend(url, prefix=prefix)
    yield b
    await b.close()
