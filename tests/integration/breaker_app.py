"""The app the circuit breaker tests name with ``--app`` (test_cli_breakers.py points it at
the test's broker and prefix)."""

from __future__ import annotations

import corq

app = corq.App()


@app.task(retries=0, breaker=corq.Breaker(failures=2, window=60, reset=30))
async def fetch(url: str) -> str:
    raise ConnectionError(f"{url} is down")


@app.task
async def plain() -> None:
    return None
