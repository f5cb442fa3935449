"""What a worker's published facts cost (not a test): the snapshot on its event loop, the
encoded size, and one publish, for a registry of N running jobs.

Run: .venv/bin/python bench/facts_cost.py [--redis redis://127.0.0.1:6379/0]

The jobs are registry entries only (nothing runs); the publish goes to the Redis given and
to a temporary SQLite file, under a prefix of its own, and is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from corq.backends import open_backend  # noqa: E402
from corq.backends.base import ClaimedJob  # noqa: E402
from corq.backends.worker_facts import encode_worker_info  # noqa: E402
from corq.clock import SystemClock  # noqa: E402
from corq.worker.facts import Facts  # noqa: E402
from corq.worker.observer import JobCounts  # noqa: E402
from corq.worker.registry import Registry, Running  # noqa: E402
from corq.worker_info import WorkerInfo  # noqa: E402

SIZES = (0, 1_000, 100_000)


def facts_with(n: int) -> Facts:
    registry = Registry()
    facts = Facts(
        worker_id="bench",
        weights={"q": 1},
        concurrency=max(1, n),
        registry=registry,
        counts=JobCounts(),
        tasks={},
        clock=SystemClock(),
    )
    for i in range(n):
        job = ClaimedJob(
            id=f"job-{i:028d}",
            task="some.task",
            queue="q",
            payload=b"",
            attempt=1,
            failures=0,
            deaths=0,
            fence=i,
            enqueued_at_ms=0,
            run_at_ms=0,
        )
        registry.add(Running(job, "bench~1"))
        facts.job_started(job)
    return facts


async def publish_ms(url: str, info: WorkerInfo, rounds: int = 20) -> float:
    backend = open_backend(url, prefix=f"bench{uuid.uuid4().hex[:8]}")
    try:
        await backend.publish_worker_info(info, 60_000)
        began = time.perf_counter()
        for _ in range(rounds):
            await backend.publish_worker_info(info, 60_000)
        return (time.perf_counter() - began) / rounds * 1000
    finally:
        await backend.forget_worker_info(info.worker_id)
        await backend.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'facts.db'}"
        for n in SIZES:
            facts = facts_with(n)
            began = time.perf_counter()
            for _ in range(10):
                info = facts.snapshot()
            snapshot = (time.perf_counter() - began) / 10 * 1000
            size = len(encode_worker_info(info))
            redis_ms = await publish_ms(args.redis, info)
            sqlite_ms = await publish_ms(sqlite_url, info)
            print(
                f"running={n:>7,}  snapshot {snapshot:6.2f} ms  {size:>6,} bytes  "
                f"publish: redis {redis_ms:.2f} ms, sqlite {sqlite_ms:.2f} ms"
            )


if __name__ == "__main__":
    asyncio.run(main())
