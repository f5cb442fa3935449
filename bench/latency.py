"""Enqueue-to-start latency on Redis at a steady rate (not a test): p50/p99/max in ms.

Run: .venv/bin/python bench/latency.py [--rate 200] [--seconds 10] [--only handoff,wake,worker]

Starts a fresh redis-server of its own. A producer in this process enqueues one job at a
time at `--rate` jobs/s, each carrying its send time (``time.perf_counter_ns``, one clock
for every process of the machine); a consumer in another process notes when each job is in
its hands. Each figure is measured with the consumer on asyncio's loop and on uvloop:

- handoff: the broker path alone, as an idle fetcher runs it: ``claim_jobs(idle=True)``,
  then ``await_jobs`` (the job arrives claimed: one round trip), complete, repeat;
- wake: the same loop the older way: ``wait_for_jobs`` (BLPOP on the wake list), then
  ``claim_jobs``: two round trips;
- worker: a real ``corq worker`` (bench.bench_app's ``stamp`` task), whatever its fetcher
  does (idle claims and await_jobs once the worker uses them).

The first half second of each run is dropped (connections warming up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.broker_cost import start_redis  # noqa: E402
from corq.backends.base import ClaimedJob, Completion, WorkerLease  # noqa: E402
from corq.backends.record import NewJob  # noqa: E402
from corq.backends.redis.backend import RedisBackend  # noqa: E402
from corq.types import QueueName, WorkerId  # noqa: E402

QUEUE = QueueName("latency")
HOLDER = WorkerId("latency~1")
LEASE_MS = 30_000
WAIT_S = 1.0


def new_job(i: int) -> NewJob:
    now_ms = int(time.time() * 1000)
    return NewJob(
        id=f"j{i}",
        task="stamp",
        queue=QUEUE,
        payload=json.dumps([[time.perf_counter_ns()], {}]).encode(),
        enqueued_at_ms=now_ms,
        run_at_ms=now_ms,
    )


def started_ms(job: ClaimedJob) -> float:
    sent_ns: int = json.loads(job.payload)[0][0]
    return (time.perf_counter_ns() - sent_ns) / 1e6


async def consume(url: str, mode: str, prefix: str, count: int, out: str) -> None:
    """The consumer process: take `count` jobs the `mode` way, note each start latency."""
    backend = RedisBackend(url, prefix=prefix)
    lease = WorkerLease(worker_id=HOLDER, queues=[QUEUE], lease_ms=LEASE_MS)
    await backend.register_worker(lease, None)
    await asyncio.to_thread(Path(out + ".ready").write_text, "1")
    latencies: list[float] = []
    while len(latencies) < count:
        jobs = await take(backend, mode)
        latencies += [started_ms(job) for job in jobs]
        done = [
            Completion(job_id=j.id, queue=QUEUE, fence=j.fence, result=b"null", finished_at_ms=1)
            for j in jobs
        ]
        if done:
            await backend.complete_jobs(HOLDER, done, 60_000)
    await asyncio.to_thread(Path(out).write_text, json.dumps(latencies))
    await backend.close()


async def take(backend: RedisBackend, mode: str) -> list[ClaimedJob]:
    if mode == "handoff":
        batch = await backend.claim_jobs(QUEUE, HOLDER, 100, LEASE_MS, None, idle=True)
        if batch.jobs or not batch.idle:
            return batch.jobs
        return await backend.await_jobs(QUEUE, HOLDER, WAIT_S) or []
    batch = await backend.claim_jobs(QUEUE, HOLDER, 100, LEASE_MS, None)
    if not batch.jobs:
        await backend.wait_for_jobs(QUEUE, WAIT_S)
    return batch.jobs


async def produce(url: str, prefix: str, rate: int, seconds: float) -> int:
    backend = RedisBackend(url, prefix=prefix)
    await backend.enqueue_jobs([])  # connect
    interval = 1 / rate
    count = int(rate * seconds)
    next_at = time.perf_counter()
    for i in range(count):
        await backend.enqueue_jobs([new_job(i)])
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await backend.close()
    return count


def consumer(
    url: str, mode: str, loop: str, prefix: str, count: int, out: str
) -> subprocess.Popen[bytes]:
    args = [__file__, "--consume", mode, "--url", url, "--prefix", prefix, "--loop", loop]
    return subprocess.Popen([sys.executable, *args, "--count", str(count), "--out", out])


def measure(url: str, mode: str, loop: str, rate: int, seconds: float) -> tuple[float, ...]:
    """p50, p99 and max (ms) of one mode on one event loop."""
    if mode == "worker":
        os.environ["CORQ_EVENT_LOOP"] = loop
        from bench.bench import bench_latency, drop_keys

        figures = asyncio.run(bench_latency(url, rate, seconds))
        asyncio.run(drop_keys(url))
        return figures
    prefix = f"lat{mode}{loop}{int(time.time())}"
    count = int(rate * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "latencies.json")
        proc = consumer(url, mode, loop, prefix, count, out)
        deadline = time.monotonic() + 20
        while not Path(out + ".ready").exists():
            if time.monotonic() > deadline:
                raise SystemExit("the consumer did not start")
            time.sleep(0.05)
        asyncio.run(produce(url, prefix, rate, seconds))
        proc.wait(60)
        latencies = json.loads(Path(out).read_text())[rate // 2 :]
    q = statistics.quantiles(latencies, n=100)
    return q[49], q[98], max(latencies)


def report(mode: str, loop: str, figures: tuple[float, ...]) -> None:
    p50, p99, worst = figures
    print(f"  {mode:<8} {loop:<8} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  max {worst:7.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", default="handoff,wake,worker")
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--consume", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.consume:
        run = consume(opts.url, opts.consume, opts.prefix, opts.count, opts.out)
        if opts.loop == "uvloop":
            import uvloop

            uvloop.run(run)
        else:
            asyncio.run(run)
        return
    with tempfile.TemporaryDirectory() as workdir:
        proc, url = start_redis(workdir)
        try:
            print(f"enqueue-to-start at {opts.rate} jobs/s for {opts.seconds:g} s, redis {url}")
            for mode in opts.only.split(","):
                for loop in opts.loops.split(","):
                    report(mode, loop, measure(url, mode, loop, opts.rate, opts.seconds))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
