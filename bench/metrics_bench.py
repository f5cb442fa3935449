"""corq metrics benchmark: the cluster collector's scrape time with 1,000 queues (not a test).

Run: .venv/bin/python bench/metrics_bench.py [--redis URL] [--queues 1000] [--scrapes 30]

For each broker (Redis: a fresh key prefix, its keys deleted at the end; SQLite: a fresh
file, deleted at the end) this fills `--queues` queues with 5 ready jobs and 1 delayed job
each, starts the collector `corq metrics` runs (ClusterMetrics, on its own HTTP port), and
times whole scrapes over HTTP, as Prometheus makes them: with the flow-control reads (one
per queue) and without them (`--no-flow`). Prints p50 / p95 and the scrape's size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import corq  # noqa: E402
from corq.backends.base import NewJob  # noqa: E402
from corq.metrics import ClusterMetrics  # noqa: E402


def jobs_of(queue: str, now_ms: int) -> list[NewJob]:
    ready = [
        NewJob(
            id=f"{queue}-{n}",
            task="bench.noop",
            queue=queue,
            payload=b"[]",
            enqueued_at_ms=now_ms,
            run_at_ms=now_ms,
        )
        for n in range(5)
    ]
    later = NewJob(
        id=f"{queue}-later",
        task="bench.noop",
        queue=queue,
        payload=b"[]",
        enqueued_at_ms=now_ms,
        run_at_ms=now_ms + 3_600_000,
    )
    return [*ready, later]


async def fill(app: corq.App, queues: int) -> None:
    backend = app.client().backend
    now_ms = time.time_ns() // 1_000_000
    for at in range(0, queues, 50):
        names = [f"q{n:04d}" for n in range(at, min(queues, at + 50))]
        await asyncio.gather(*(backend.enqueue_jobs(jobs_of(q, now_ms)) for q in names))
    await app.aclose()


def scrape_times(url: str, scrapes: int) -> tuple[list[float], int]:
    times: list[float] = []
    size = 0
    for _ in range(scrapes):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as reply:
            body = reply.read()
        times.append(time.perf_counter() - started)
        size = len(body)
        assert b"corq_broker_up 1.0" in body, body[:200]
    return times, size


def report(label: str, times: list[float], size: int) -> None:
    times = sorted(times)
    p50 = statistics.median(times) * 1000
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))] * 1000
    print(f"  {label:<22} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   ({size / 1024:.0f} KiB a scrape)")


def bench(url: str, prefix: str, queues: int, scrapes: int) -> None:
    app = corq.App(url, prefix=prefix)
    started = time.perf_counter()
    asyncio.run(fill(app, queues))
    print(f"  filled {queues} queues in {time.perf_counter() - started:.1f} s")
    for flow in (True, False):
        cluster = ClusterMetrics(app, flow=flow, timeout_s=30)
        server = cluster.serve("127.0.0.1", 0)
        try:
            scrape_url = f"http://127.0.0.1:{server.port}/metrics"
            scrape_times(scrape_url, 2)  # warm-up: script loading, connections
            times, size = scrape_times(scrape_url, scrapes)
        finally:
            server.close()
            cluster.close()
        report("scrape" if flow else "scrape --no-flow", times, size)


async def delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    print(f"Redis ({args.redis}), {args.queues} queues, {args.scrapes} scrapes")
    try:
        bench(args.redis, prefix, args.queues, args.scrapes)
    finally:
        asyncio.run(delete_prefix(args.redis, prefix))

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'corq.db'}"
        print(f"SQLite ({url}), {args.queues} queues, {args.scrapes} scrapes")
        bench(url, "corq", args.queues, args.scrapes)


if __name__ == "__main__":
    main()
