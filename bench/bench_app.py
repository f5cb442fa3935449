"""Tasks the benchmarks run. Broker and prefix come from CORQ_URL / CORQ_PREFIX."""

from __future__ import annotations

import asyncio
import os
import time

import redis.asyncio as aioredis

import corq

app = corq.App()
_redis: aioredis.Redis | None = None


@app.task
async def noop() -> None:
    return None


@app.task
async def incr() -> None:
    """One real Redis round trip through the task's own client."""
    global _redis
    if _redis is None:
        url = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
        # A bounded pool that waits for a free connection (500 jobs share 50 sockets).
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=50, timeout=10)
        _redis = aioredis.Redis.from_pool(pool)
    await _redis.incr(f"{app.settings.prefix}:bench:counter")


@app.task
async def sleeper(seconds: float) -> None:
    await asyncio.sleep(seconds)


@app.task
async def stamp(sent_ns: int) -> int:
    """Returns how long after `sent_ns` (CLOCK_MONOTONIC, shared by processes) it started."""
    return time.perf_counter_ns() - sent_ns
