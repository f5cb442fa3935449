"""Cancel-to-stopped latency of a running async job on another worker process (not a test).

Run: .venv/bin/python bench/cancel_bench.py [--url redis://... | sqlite:///f.db] [-n 200]
     [--loop uvloop|asyncio]

One `corq worker` process runs bench.cancel_app's ``hold`` task; this process enqueues a
job, waits until it runs, then calls ``JobHandle.cancel()`` and measures, on the task's
side, when the CancelledError reached the coroutine (``perf_counter_ns``, one clock for
every process of the machine). Also shown: how long the cancel call itself took (the
broker step, reading the record, publishing the message). The first 5 are dropped.
"""

from __future__ import annotations

import argparse
import asyncio
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

import corq  # noqa: E402
from bench import cancel_app  # noqa: E402
from bench.bench import drop_keys, fresh_prefix, fresh_sqlite, run_on_chosen_loop  # noqa: E402

WARMUP = 5


async def wait_file(path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():  # noqa: ASYNC240  # a stat, polled: another process writes it
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear")
        await asyncio.sleep(0.001)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(url: str, n: int) -> tuple[list[float], list[float]]:
    """(cancel-to-stopped ms, cancel call ms) for `n` jobs."""
    prefix = fresh_prefix()
    app = cancel_app.app
    app.configure(url=url, prefix=prefix)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, CORQ_URL=url, CORQ_PREFIX=prefix, PYTHONPATH=str(ROOT))
        worker = subprocess.Popen(  # noqa: ASYNC220  # started once, before measuring
            [sys.executable, "-m", "corq", "worker", "bench.cancel_app:app"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stopped_ms, call_ms = [], []
        try:
            for i in range(n + WARMUP):
                handle = await cancel_app.hold.enqueue(tmp)
                await wait_file(Path(tmp) / f"{handle.id}.started", 60 if i == 0 else 10)
                asked = time.perf_counter_ns()
                assert await handle.cancel()
                returned = time.perf_counter_ns()
                stopped = Path(tmp) / f"{handle.id}.stopped"
                await wait_file(stopped)
                if i >= WARMUP:
                    stopped_ms.append((int(stopped.read_text()) - asked) / 1e6)
                    call_ms.append((returned - asked) / 1e6)
        finally:
            worker.terminate()
            worker.wait(30)
            await app.aclose()
    return stopped_ms, call_ms


def line(name: str, values: list[float]) -> str:
    return (
        f"{name}: p50 {statistics.median(values):.2f} ms, p99 {percentile(values, 0.99):.2f} ms,"
        f" max {max(values):.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("CORQ_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("-n", type=int, default=200, help="jobs cancelled (after 5 warm-up)")
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    opts = parser.parse_args()
    url = opts.url
    if url.startswith("sqlite:///"):
        fresh_sqlite(url)
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"corq {corq.__version__} cancel bench on {url} ({loop} loop, {os.cpu_count()} cpus)")
    try:
        stopped, call = await measure(url, opts.n)
    finally:
        if url.startswith("redis"):
            await drop_keys(url)
    print(line(f"cancel call to the coroutine stopped ({len(stopped)} jobs)", stopped))
    print(line("the cancel call itself", call))


if __name__ == "__main__":
    run_on_chosen_loop(main)
