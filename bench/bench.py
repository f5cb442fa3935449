"""corq benchmarks: prints figures (not a test). Run: .venv/bin/python bench/bench.py

Each figure runs one worker process (`corq worker bench.bench_app:app`) against the broker
in CORQ_URL (default redis://127.0.0.1:6379/0) under a fresh key prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import corq  # noqa: E402
from bench import bench_app  # noqa: E402

#: Key prefixes this run used (dropped from Redis when it ends).
USED_PREFIXES: list[str] = []


def fresh_prefix() -> str:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    USED_PREFIXES.append(prefix)
    return prefix


async def drop_keys(url: str) -> None:
    """Delete the keys of every prefix this run used, so runs do not pile up in Redis."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        for prefix in USED_PREFIXES:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.unlink(*batch)
                    batch.clear()
            if batch:
                await client.unlink(*batch)
    finally:
        await client.aclose()


def configure(url: str) -> str:
    prefix = fresh_prefix()
    bench_app.app._clients.clear()
    bench_app.app.configure(url=url, prefix=prefix)
    return prefix


def start_worker(
    url: str, prefix: str, *args: str, app: str = "bench.bench_app:app"
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CORQ_URL=url, CORQ_PREFIX=prefix)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corq",
            "worker",
            app,
            "--log-level",
            "warning",
            *args,
        ],
        cwd=ROOT,
        env=env,
    )


def wait_rusage(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Exit status and peak RSS (MB) of that one child."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


async def cleanup() -> None:
    await bench_app.app.aclose()


async def bench_enqueue(url: str, n: int) -> float:
    configure(url)
    calls = [() for _ in range(n)]
    await bench_app.noop.enqueue_many(calls[:1000])  # connect and load scripts
    started = time.perf_counter()
    for i in range(0, n, 10_000):
        await bench_app.noop.enqueue_many(calls[i : i + 10_000])
    rate = n / (time.perf_counter() - started)
    await cleanup()
    return rate


async def bench_throughput(
    url: str, n: int, task: corq.Task, concurrency: int, processes: int = 1
) -> float:
    prefix = configure(url)
    for i in range(0, n, 10_000):
        await task.enqueue_many([() for _ in range(min(10_000, n - i))])
    await cleanup()
    started = time.perf_counter()
    proc = start_worker(
        url, prefix, "--burst", "--concurrency", str(concurrency), "--processes", str(processes)
    )
    code, _ = wait_rusage(proc)
    elapsed = time.perf_counter() - started
    assert code == 0, code
    configure(url)
    return n / elapsed


async def bench_latency(url: str, rate: int, seconds: float) -> tuple[float, float, float]:
    prefix = configure(url)
    proc = start_worker(url, prefix, "--concurrency", "100")
    await asyncio.sleep(2.0)  # worker up and idle
    handles = []
    interval = 1 / rate
    next_at = time.perf_counter()
    for _ in range(int(rate * seconds)):
        next_at += interval
        handles.append(await bench_app.stamp.enqueue(time.perf_counter_ns()))
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    lat_ms = [(await h.result(timeout=10)) / 1e6 for h in handles]
    proc.terminate()
    proc.wait(30)
    await cleanup()
    lat_ms = lat_ms[rate // 2 :]  # drop the first half second (connection warm-up)
    q = statistics.quantiles(lat_ms, n=100)
    return q[49], q[98], max(lat_ms)


async def bench_delayed(url: str, count: int) -> tuple[float, float, float]:
    """How late delayed jobs start after their due time, on an idle worker (ms)."""
    prefix = configure(url)
    proc = start_worker(url, prefix, "--concurrency", "100")
    await asyncio.sleep(2.0)
    handles = []
    for _ in range(count):
        delay_s = 0.3
        due_ns = time.perf_counter_ns() + int(delay_s * 1e9)
        handles.append(await bench_app.stamp.with_options(delay=delay_s).enqueue(due_ns))
        await asyncio.sleep(0.05)
    late_ms = [(await h.result(timeout=10)) / 1e6 for h in handles]
    proc.terminate()
    proc.wait(30)
    await cleanup()
    q = statistics.quantiles(late_ms, n=100)
    return q[49], q[98], max(late_ms)


async def bench_concurrent(url: str, n: int, seconds: float) -> tuple[float, float]:
    prefix = configure(url)
    for i in range(0, n, 10_000):
        await bench_app.sleeper.enqueue_many([(seconds,) for _ in range(min(10_000, n - i))])
    await cleanup()
    started = time.perf_counter()
    proc = start_worker(url, prefix, "--burst", "--concurrency", str(n))
    code, rss = wait_rusage(proc)
    assert code == 0, code
    return time.perf_counter() - started, rss


async def bench_probe_under_load(url: str, n: int) -> tuple[float, float]:
    """p50/p99 start latency of new jobs while n sleep jobs are in flight on the worker."""
    prefix = configure(url)
    for i in range(0, n, 10_000):
        await bench_app.sleeper.enqueue_many([(15.0,) for _ in range(min(10_000, n - i))])
    proc = start_worker(url, prefix, "--concurrency", str(n + 1000))
    client = bench_app.app.client()
    while (await client.queue_stats(["default"]))[0].in_flight < n:  # noqa: ASYNC110  # polls a remote count
        await asyncio.sleep(0.1)
    handles = []
    for _ in range(300):
        handles.append(await bench_app.stamp.enqueue(time.perf_counter_ns()))
        await asyncio.sleep(0.01)
    lat_ms = [(await h.result(timeout=30)) / 1e6 for h in handles]
    proc.kill()
    proc.wait()
    await client.backend.purge_dead("default", None)
    await cleanup()
    q = statistics.quantiles(lat_ms, n=100)
    return q[49], q[98]


async def bench_idle_cpu(url: str, seconds: float) -> float:
    """CPU use (% of one core) of an idle worker process."""
    import psutil

    prefix = configure(url)
    proc = start_worker(url, prefix, "--concurrency", "100")
    await asyncio.sleep(3.0)  # started and idle
    ps = psutil.Process(proc.pid)
    before = ps.cpu_times()
    await asyncio.sleep(seconds)
    after = ps.cpu_times()
    proc.terminate()
    proc.wait(30)
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / seconds


def fresh_sqlite(url: str) -> str:
    """A SQLite URL for a new empty file next to the one given."""
    if not url.startswith("sqlite:///"):
        return url
    path = Path(url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return url


async def main_sqlite(url: str, quick: bool) -> None:
    n = 20_000 if quick else 100_000
    rate = await bench_enqueue(fresh_sqlite(url), n)
    print(f"bulk enqueue ({n:,} jobs, batches of 10,000): {rate:,.0f} jobs/s")
    n = 10_000 if quick else 50_000
    for processes in (1, 4):
        rate = await bench_throughput(fresh_sqlite(url), n, bench_app.noop, 500, processes)
        print(
            f"end-to-end throughput, no-op ({n:,} jobs, {processes} worker process(es), "
            f"concurrency 500, incl. process start): {rate:,.0f} jobs/s"
        )
    p50, p99, worst = await bench_latency(fresh_sqlite(url), rate=200, seconds=5 if quick else 10)
    print(
        f"enqueue-to-start latency at 200 jobs/s (producer in another process): "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms"
    )
    cpu = await bench_idle_cpu(fresh_sqlite(url), 5 if quick else 10)
    print(f"idle worker CPU: {cpu:.2f}% of one core")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("CORQ_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument(
        "--sqlite", action="store_true", help="the SQLite figures (with --url sqlite:///bench.db)"
    )
    parser.add_argument(
        "--only", default="", help="comma list: enqueue,throughput,latency,concurrent,probe"
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop of the bench and its workers [default: uvloop when installed]",
    )
    opts = parser.parse_args()
    url, quick = opts.url, opts.quick
    only = set(filter(None, opts.only.split(",")))

    def want(name: str) -> bool:
        return not only or name in only

    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"corq {corq.__version__} bench on {url} (python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cpus, {loop} event loop)"
    )
    if opts.sqlite:
        await main_sqlite(url, quick)
        return
    try:
        await main_redis(url, quick, want)
    finally:
        await drop_keys(url)


async def main_redis(url: str, quick: bool, want: Callable[[str], bool]) -> None:
    if want("enqueue"):
        n = 20_000 if quick else 200_000
        print(
            f"bulk enqueue ({n:,} jobs, batches of 10,000): "
            f"{await bench_enqueue(url, n):,.0f} jobs/s"
        )
    if want("throughput"):
        n = 10_000 if quick else 100_000
        for task, label in ((bench_app.noop, "no-op"), (bench_app.incr, "INCR body")):
            rate = await bench_throughput(url, n, task, concurrency=500)
            print(
                f"end-to-end throughput, {label} ({n:,} jobs, 1 worker process, "
                f"concurrency 500, incl. process start): {rate:,.0f} jobs/s"
            )
    if want("latency"):
        p50, p99, worst = await bench_latency(url, rate=200, seconds=5 if quick else 20)
        print(
            f"enqueue-to-start latency at 200 jobs/s: p50 {p50:.3f} ms, p99 {p99:.3f} ms, "
            f"max {worst:.3f} ms"
        )
    if want("delayed"):
        p50, p99, worst = await bench_delayed(url, 40 if quick else 200)
        print(
            f"delayed job start after its due time, idle worker: p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms, max {worst:.2f} ms"
        )
    if want("concurrent"):
        for n in (10_000,) if quick else (10_000, 100_000):
            wall, rss = await bench_concurrent(url, n, 1.0)
            print(
                f"{n:,} concurrent sleep(1) jobs, 1 worker process: all done {wall:.2f} s "
                f"after the worker started, peak RSS {rss:,.0f} MB"
            )
    if want("idle"):
        print(f"idle worker CPU: {await bench_idle_cpu(url, 5 if quick else 10):.2f}% of one core")
    if want("probe"):
        n = 10_000 if quick else 100_000
        p50, p99 = await bench_probe_under_load(url, n)
        print(
            f"start latency of new jobs while {n:,} jobs are in flight on the same worker: "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )


def run_on_chosen_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `main` on the loop `--loop asyncio|uvloop|auto` names (uvloop when installed by
    default), and make every worker it starts use the same one (CORQ_EVENT_LOOP)."""
    choice = sys.argv[sys.argv.index("--loop") + 1] if "--loop" in sys.argv else "auto"
    os.environ["CORQ_EVENT_LOOP"] = choice
    try:
        import uvloop
    except ImportError:
        uvloop = None  # type: ignore[assignment]  # optional dependency
    if uvloop is None or choice == "asyncio":
        asyncio.run(main())
    else:
        uvloop.run(main())  # the producer on the same loop the worker uses


if __name__ == "__main__":
    run_on_chosen_loop(main)
