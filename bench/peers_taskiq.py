"""The taskiq app of bench/peers_latency.py: taskiq-redis's ListQueueBroker with its Redis
result backend, one task that returns how long after `sent_ns` it started. Its Redis URL
and queue name come from PEERS_REDIS / PEERS_NAME."""

from __future__ import annotations

import os
import time

from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

_URL = os.environ.get("PEERS_REDIS", "redis://127.0.0.1:6379/0")
_NAME = os.environ.get("PEERS_NAME", "corq-peers")

broker = ListQueueBroker(_URL, queue_name=_NAME).with_result_backend(
    RedisAsyncResultBackend(_URL, prefix_str=_NAME, result_ex_time=600)
)


@broker.task
async def stamp(sent_ns: int) -> int:
    """Like bench_app.stamp: CLOCK_MONOTONIC is shared by the processes of one machine."""
    return time.perf_counter_ns() - sent_ns
