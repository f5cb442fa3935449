"""Redis server time per job (not a test): how much of the broker one plain job costs.

Run: .venv/bin/python bench/broker_cost.py [--jobs 20000] [--batch 1] [--breakdown]
[--events-max 0]

Starts a fresh redis-server of its own (no persistence), runs N plain jobs (no rules)
through the backend port, enqueue -> claim -> complete, and reads ``INFO commandstats``
after each phase (``CONFIG RESETSTAT`` before it). Redis counts the commands a script
runs both under EVALSHA and under their own names, so the time per job is the usec of the
top-level calls only (EVALSHA, EVAL, SCRIPT and the commands the client sends itself),
divided by the jobs; ``--breakdown`` also prints what the scripts ran inside, per job,
which is where to look when cutting a script. `--repeat` runs it several times (a fresh
queue each time) and keeps each phase's best figure: a busy machine only ever adds time.

`--batch` is how many jobs one call carries: 1 is a producer sending one job at a time
and a worker claiming and completing one at a time (the costliest case); a busy worker
claims and completes in bigger batches.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from redis.asyncio import Redis  # noqa: E402

from corq.backends.base import EVENTS_MAX, ClaimedJob, Completion, WorkerLease  # noqa: E402
from corq.backends.record import NewJob  # noqa: E402
from corq.backends.redis.backend import RedisBackend  # noqa: E402
from corq.types import QueueName, WorkerId  # noqa: E402

#: Commands a script runs are counted again under their own names: only these are calls.
TOP_LEVEL = frozenset({"evalsha", "eval", "evalsha_ro", "eval_ro", "script", "blpop", "lpop"})
QUEUE = QueueName("cost")
HOLDER = WorkerId("bench~1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of this run only (no AOF, no snapshots), and its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", ""]
    proc = subprocess.Popen([*args, "--appendonly", "no"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    proc.terminate()
    raise SystemExit("redis-server did not start")


def new_job(i: int, now_ms: int) -> NewJob:
    return NewJob(
        id=f"job-{i}",
        task="noop",
        queue=QUEUE,
        payload=b"[[],{}]",
        enqueued_at_ms=now_ms,
        run_at_ms=now_ms,
    )


async def command_stats(client: Redis) -> dict[str, tuple[int, int]]:
    """command -> (calls, usec) since the last CONFIG RESETSTAT."""
    info = await client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(stat["calls"]), int(stat["usec"]))
        for name, stat in info.items()
    }


async def measured(
    client: Redis, jobs: int, step: Callable[[], Awaitable[None]]
) -> tuple[float, dict[str, tuple[int, int]]]:
    """Server usec per job of what `step` sends, and the raw stats."""
    await client.config_resetstat()
    await step()
    stats = await command_stats(client)
    stats.pop("info", None)
    top = sum(usec for name, (_, usec) in stats.items() if name in TOP_LEVEL)
    return top / jobs, stats


def print_breakdown(title: str, jobs: int, stats: dict[str, tuple[int, int]]) -> None:
    print(f"  {title}: per job, calls and usec (inner commands counted inside evalsha)")
    for name, (calls, usec) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        print(f"    {name:<14} {calls / jobs:7.3f} calls {usec / jobs:8.3f} usec")


async def run(
    url: str, jobs: int, batch: int, breakdown: bool, prefix: str, events_max: int
) -> list[float]:
    backend = RedisBackend(url, prefix=prefix, events_max=events_max)
    client = Redis.from_url(url)
    lease = WorkerLease(worker_id=HOLDER, queues=[QUEUE], lease_ms=60_000)
    now_ms = int(time.time() * 1000)
    new = [new_job(i, now_ms) for i in range(jobs)]
    # Warm up: connect, load every script, register.
    await backend.register_worker(lease, None)
    await backend.enqueue_jobs([new_job(-1, now_ms)])
    warm = await backend.claim_jobs(QUEUE, HOLDER, 1, 60_000, None)
    await backend.complete_jobs(HOLDER, completions(warm.jobs), 60_000)

    async def enqueue() -> None:
        for at in range(0, jobs, batch):
            await backend.enqueue_jobs(new[at : at + batch])

    claimed: list[ClaimedJob] = []

    async def claim() -> None:
        while len(claimed) < jobs:
            got = await backend.claim_jobs(QUEUE, HOLDER, batch, 60_000, None)
            claimed.extend(got.jobs)

    async def complete() -> None:
        for at in range(0, jobs, batch):
            await backend.complete_jobs(HOLDER, completions(claimed[at : at + batch]), 60_000)

    enq, enq_stats = await measured(client, jobs, enqueue)
    clm, clm_stats = await measured(client, jobs, claim)
    cpl, cpl_stats = await measured(client, jobs, complete)
    if breakdown:
        print_breakdown("enqueue", jobs, enq_stats)
        print_breakdown("claim", jobs, clm_stats)
        print_breakdown("complete", jobs, cpl_stats)
    await backend.close()
    await client.aclose()
    return [enq, clm, cpl]


async def run_all(
    url: str, jobs: int, batch: int, breakdown: bool, repeat: int, events_max: int
) -> None:
    best = [float("inf")] * 3
    for i in range(repeat):
        last = breakdown and i == repeat - 1
        figures = await run(url, jobs, batch, last, f"cost{i}", events_max)
        best = [min(b, f) for b, f in zip(best, figures, strict=True)]
    enq, clm, cpl = best
    client = Redis.from_url(url)
    version = await server_version(client)
    await client.aclose()
    events = f"events_max {events_max}" if events_max else "events off"
    print(f"{jobs} plain jobs, {batch} per call, best of {repeat}, {events}, redis {version}")
    print(f"  enqueue            {enq:6.2f} usec/job")
    print(f"  claim              {clm:6.2f} usec/job")
    print(f"  complete           {cpl:6.2f} usec/job")
    print(f"  claim + complete   {clm + cpl:6.2f} usec/job")
    print(f"  end to end         {enq + clm + cpl:6.2f} usec/job")


def completions(jobs: list[ClaimedJob]) -> list[Completion]:
    return [
        Completion(job_id=j.id, queue=QUEUE, fence=j.fence, result=b"null", finished_at_ms=1)
        for j in jobs
    ]


async def server_version(client: Redis) -> str:
    return str((await client.info("server"))["redis_version"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1, help="jobs per enqueue/claim/complete")
    parser.add_argument("--breakdown", action="store_true", help="inner commands per job")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the best figure is kept")
    parser.add_argument(
        "--events-max", type=int, default=EVENTS_MAX, help="the events bound (0: events off)"
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc, url = start_redis(workdir)
        try:
            batch = max(1, opts.batch)
            repeat = max(1, opts.repeat)
            asyncio.run(run_all(url, opts.jobs, batch, opts.breakdown, repeat, opts.events_max))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
