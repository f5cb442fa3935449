"""What lifecycle events cost a job (not a test): the broker port's enqueue -> claim ->
complete, per job, with events on (events_max 100,000) and off (0), on one broker.

Run: .venv/bin/python bench/events_cost.py [--url sqlite:///bench-events.db] [--jobs 5000]
[--batch 100] [--repeat 5]

Each round runs the same N plain jobs once with events on and once off (a fresh queue each
time, in alternating order), and each setting keeps its best round: a busy machine only
ever adds time, so the best figures are the ones to compare. The attempt history is kept
either way (it is part of the job record); the difference is the events log alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from corq.backends import open_backend  # noqa: E402
from corq.backends.base import Completion, NewJob, WorkerLease  # noqa: E402

HOLDER = "bench-worker"


async def one_round(url: str, jobs: int, batch: int, events_max: int) -> tuple[float, float]:
    """Seconds per job of enqueue + claim + complete, in batches of `batch`: wall time, and
    this process's CPU time (all its threads: SQLite's work, not Redis's)."""
    prefix = f"evcost{uuid.uuid4().hex[:8]}"
    queue = f"q{uuid.uuid4().hex[:8]}"
    backend = open_backend(url, prefix=prefix, events_max=events_max)
    now = int(time.time() * 1000)
    new = [
        NewJob(
            id=f"{queue}-{i}",
            task="bench.noop",
            queue=queue,
            payload=b"[]",
            enqueued_at_ms=now,
            run_at_ms=now,
        )
        for i in range(jobs)
    ]
    await backend.register_worker(
        WorkerLease(worker_id=HOLDER, queues=[queue], lease_ms=60_000), None
    )
    start, cpu = time.perf_counter(), time.process_time()
    for at in range(0, jobs, batch):
        await backend.enqueue_jobs(new[at : at + batch])
    done = 0
    while done < jobs:
        claimed = (await backend.claim_jobs(queue, HOLDER, batch, 60_000, None)).jobs
        ends = [
            Completion(job_id=j.id, queue=queue, fence=j.fence, result=b"null", finished_at_ms=now)
            for j in claimed
        ]
        await backend.complete_jobs(HOLDER, ends, 60_000)
        done += len(claimed)
    took, cpu_took = time.perf_counter() - start, time.process_time() - cpu
    await backend.close()
    return took / jobs, cpu_took / jobs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    best = {"on": float("inf"), "off": float("inf")}
    best_cpu = dict(best)
    for i in range(max(1, opts.repeat)):
        order = [("on", 100_000), ("off", 0)]
        for name, events_max in order if i % 2 == 0 else order[::-1]:
            took, cpu = await one_round(opts.url, opts.jobs, max(1, opts.batch), events_max)
            best[name] = min(best[name], took)
            best_cpu[name] = min(best_cpu[name], cpu)
    print(f"{opts.url}: {opts.jobs} jobs, {opts.batch} per call, best of {opts.repeat}:")
    for label, figures in (("wall", best), ("cpu here", best_cpu)):
        on, off = figures["on"] * 1e6, figures["off"] * 1e6
        cost = 100 * (on - off) / off
        print(f"  {label:<9} events on {on:6.1f} usec/job, off {off:6.1f}, {cost:+.1f}%")


if __name__ == "__main__":
    asyncio.run(main())
