"""The huey app of bench/peers_latency.py: Redis storage (blocking pops), one task that
returns how long after `sent_ns` it started. Its Redis URL and name come from
PEERS_REDIS / PEERS_NAME."""

from __future__ import annotations

import os
import time

from huey import RedisHuey

huey = RedisHuey(
    os.environ.get("PEERS_NAME", "corq-peers"),
    url=os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379/0"),
    results=True,
)


@huey.task()
def stamp(sent_ns: int) -> int:
    """Like bench_app.stamp: CLOCK_MONOTONIC is shared by the processes of one machine."""
    return time.perf_counter_ns() - sent_ns
