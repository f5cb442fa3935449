"""Flow-control benchmarks: prints figures (not a test).

    .venv/bin/python bench/flow_bench.py [--url URL] [--quick] [--loop asyncio|uvloop]

- throughput of no-op jobs: plain, with a per-key concurrency limit over 1,000 keys, and
  with a (non-binding) task-wide rate limit: what the rules cost on the claim path;
- the small tenant: 10 jobs of one key enqueued behind a 100,000-job backlog of another
  key, with and without a fairness key: how long after their enqueue they start.

Each figure runs `corq worker bench.flow_app:app` as a subprocess under a fresh key prefix
(Redis) or a fresh file (SQLite, `--url sqlite:////tmp/corq-flow.db`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import corq  # noqa: E402
from bench import flow_app  # noqa: E402
from bench.bench import (  # noqa: E402
    drop_keys,
    fresh_prefix,
    fresh_sqlite,
    run_on_chosen_loop,
    start_worker,
    wait_rusage,
)

APP = "bench.flow_app:app"


def configure(url: str) -> str:
    prefix = fresh_prefix()
    flow_app.app._clients.clear()
    flow_app.app.configure(url=fresh_sqlite(url), prefix=prefix)
    return prefix


async def enqueue_all(task: corq.Task, calls: list[tuple[object, ...]]) -> None:
    for i in range(0, len(calls), 10_000):
        await task.enqueue_many(calls[i : i + 10_000])


async def throughput(url: str, task: corq.Task, n: int, keys: int) -> float:
    """Jobs per second of a --burst worker (concurrency 500) over `n` queued jobs."""
    prefix = configure(url)
    await enqueue_all(task, [(f"t{i % keys}",) for i in range(n)])
    await flow_app.app.aclose()
    started = time.perf_counter()
    proc = start_worker(url, prefix, "--burst", "--concurrency", "500", app=APP)
    code, _ = wait_rusage(proc)
    assert code == 0, code
    return n / (time.perf_counter() - started)


async def small_tenant(url: str, task: corq.Task, backlog: int) -> tuple[float, float, float]:
    """p50 / max start latency (ms) of 10 small-tenant jobs sent behind `backlog` jobs of
    a big tenant, and the seconds the whole backlog took."""
    prefix = configure(url)
    await enqueue_all(task, [("big", 0) for _ in range(backlog)])
    proc = start_worker(url, prefix, "--concurrency", "100", app=APP)
    client = flow_app.app.client()
    started = time.perf_counter()
    while (await client.queue_stats(["default"]))[0].ready > backlog - 1_000:  # noqa: ASYNC110  # polls a remote count
        await asyncio.sleep(0.01)
    small = [await task.enqueue("small", time.perf_counter_ns()) for _ in range(10)]
    lat_ms = [(await h.result(timeout=600)) / 1e6 for h in small]
    while (await client.queue_stats(["default"]))[0].ready > 0:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    drained = time.perf_counter() - started
    proc.terminate()
    proc.wait(30)
    await flow_app.app.aclose()
    return statistics.median(lat_ms), max(lat_ms), drained


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("CORQ_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    opts = parser.parse_args()
    url = opts.url
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"corq {corq.__version__} flow bench on {url} ({os.cpu_count()} cpus, {loop} loop)")
    n = 20_000 if opts.quick else 100_000
    try:
        for task, label in (
            (flow_app.plain, "plain"),
            (flow_app.keyed, "key_concurrency=10 over 1,000 keys"),
            (flow_app.rated, "rate_limit 1,000,000/s (not binding)"),
        ):
            rate = await throughput(url, task, n, 1_000)
            print(f"throughput, no-op, {label} ({n:,} jobs, 1 worker): {rate:,.0f} jobs/s")
        backlog = 20_000 if opts.quick else 100_000
        for task, label in (
            (flow_app.plain_stamp, "no key (FIFO)"),
            (flow_app.fair_stamp, "key=tenant (round robin)"),
        ):
            p50, worst, drained = await small_tenant(url, task, backlog)
            print(
                f"small tenant behind a {backlog:,}-job backlog, {label}: start after "
                f"p50 {p50:.1f} ms, max {worst:.1f} ms (backlog drained in {drained:.1f} s)"
            )
    finally:
        if url.startswith("redis"):
            await drop_keys(url)


if __name__ == "__main__":
    run_on_chosen_loop(main)
