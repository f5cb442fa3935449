"""Redis server time per job under flow control (not a test): what lanes and limits cost.

Run: .venv/bin/python bench/flow_cost.py [--jobs 20000] [--keys 1000] [--batch 1]
     [--key-concurrency 1] [--plain] [--breakdown]

Like ``broker_cost.py`` (its own redis-server, ``INFO commandstats`` per phase, usec of
the top-level calls per job), for jobs of one keyed task spread round robin over `--keys`
keys, with a per-key concurrency (the rules are stored first): enqueue them all, then a
worker claims `--batch` at a time and completes what it got before claiming again (a key
at its limit is parked until then). ``--plain`` runs the same jobs with no rules, for the
comparison; wall-clock jobs per second are printed too (noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench.broker_cost import (  # noqa: E402
    HOLDER,
    QUEUE,
    completions,
    measured,
    print_breakdown,
    server_version,
    start_redis,
)
from corq.backends.base import ClaimedJob, WorkerLease  # noqa: E402
from corq.backends.record import NewJob  # noqa: E402
from corq.backends.redis.backend import RedisBackend  # noqa: E402
from corq.flow import TaskRules  # noqa: E402

TASK = "keyed"


def keyed_job(i: int, keys: int, now_ms: int) -> NewJob:
    return NewJob(
        id=f"job-{i}",
        task=TASK,
        queue=QUEUE,
        payload=b"[[],{}]",
        enqueued_at_ms=now_ms,
        run_at_ms=now_ms,
        key=f"key-{i % keys}",
    )


async def run(
    url: str, jobs: int, keys: int, batch: int, limit: int, plain: bool, breakdown: bool
) -> None:
    backend = RedisBackend(url, prefix="flow")
    client = Redis.from_url(url)
    if not plain:
        rules = TaskRules(task=TASK, keyed=True, key_concurrency=limit)
        await backend.set_rules(QUEUE, [rules])
    await backend.register_worker(
        WorkerLease(worker_id=HOLDER, queues=[QUEUE], lease_ms=60_000), None
    )
    now_ms = int(time.time() * 1000)
    new = [keyed_job(i, keys, now_ms) for i in range(jobs)]
    await backend.enqueue_jobs([keyed_job(-1, keys, now_ms)])  # warm up: load the scripts
    warm = await backend.claim_jobs(QUEUE, HOLDER, 1, 60_000, None)
    await backend.complete_jobs(HOLDER, completions(warm.jobs), 60_000)

    async def enqueue() -> None:
        for at in range(0, jobs, batch):
            await backend.enqueue_jobs(new[at : at + batch])

    async def claim_and_complete() -> None:
        done = 0
        while done < jobs:
            got: list[ClaimedJob] = (
                await backend.claim_jobs(QUEUE, HOLDER, batch, 60_000, None)
            ).jobs
            assert got, "nothing to claim"
            await backend.complete_jobs(HOLDER, completions(got), 60_000)
            done += len(got)

    started = time.perf_counter()
    enq, enq_stats = await measured(client, jobs, enqueue)
    enq_wall = time.perf_counter() - started
    started = time.perf_counter()
    run_cost, run_stats = await measured(client, jobs, claim_and_complete)
    run_wall = time.perf_counter() - started
    what = "no rules" if plain else f"key_concurrency={limit}"
    version = await server_version(client)
    print(f"{jobs} jobs over {keys} keys, {what}, {batch} per call, redis {version}")
    print(f"  enqueue            {enq:6.2f} usec/job   {jobs / enq_wall:8.0f} jobs/s")
    print(f"  claim + complete   {run_cost:6.2f} usec/job   {jobs / run_wall:8.0f} jobs/s")
    if breakdown:
        print_breakdown("enqueue", jobs, enq_stats)
        print_breakdown("claim + complete", jobs, run_stats)
    await backend.close()
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=1, help="jobs per enqueue/claim/complete")
    parser.add_argument("--key-concurrency", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="the same jobs without rules")
    parser.add_argument("--breakdown", action="store_true", help="inner commands per job")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc, url = start_redis(workdir)
        try:
            asyncio.run(
                run(
                    url,
                    opts.jobs,
                    opts.keys,
                    max(1, opts.batch),
                    opts.key_concurrency,
                    opts.plain,
                    opts.breakdown,
                )
            )
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
