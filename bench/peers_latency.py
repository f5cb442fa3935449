"""Enqueue-to-start latency side by side: huey, taskiq and corq on one Redis, in one run.

    .venv/bin/pip install -e .[bench]        # huey, taskiq, taskiq-redis, gevent
    .venv/bin/python bench/peers_latency.py [--url redis://127.0.0.1:6379/0] [--rate 200]
        [--seconds 5] [--loop asyncio|uvloop]

Each system gets one worker process, started first; once it has run a first job (so a
slow start on a loaded machine is not counted) it is left idle for 2 s, then sent jobs at
a steady `--rate` a second for `--seconds`: each job returns `perf_counter_ns() - sent_ns`
(CLOCK_MONOTONIC, shared by the processes of one machine), the first half second is
dropped (connections warming up) and p50 / p99 / max are printed: the method of
`bench_latency` in bench/bench.py, with the first job added. The peers run as their docs advise for
I/O-bound latency: `huey_consumer` with greenlet workers (gevent, monkey-patched) on Redis
storage, which pops with a blocking BRPOP; `taskiq worker` with one process on
taskiq-redis's ListQueueBroker (BRPOP too). `--loop` is corq's event loop (of this process
and its worker); the peers keep their own.
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
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import bench, bench_app  # noqa: E402

#: Greenlet workers of the huey consumer (each one pops with BRPOP).
HUEY_WORKERS = 50
#: The huey consumer's entry point, monkey-patched first as huey's docs ask for greenlets.
HUEY_CONSUMER = (
    "from gevent import monkey; monkey.patch_all()\n"
    "import sys\n"
    "from huey.bin.huey_consumer import consumer_main\n"
    "sys.argv = ['huey_consumer', 'bench.peers_huey.huey', '-k', 'greenlet', '-w', "
    f"'{HUEY_WORKERS}', '-q']\n"
    "consumer_main()\n"
)
#: A worker must have run its first job within this long.
STARTUP_S = 60.0
#: How long a worker is left idle before the first job (up and waiting, as bench_latency).
IDLE_S = 2.0

Figures = tuple[float, float, float]


def quantiles(latencies_ns: Sequence[int], rate: int) -> Figures:
    """p50, p99 and max in ms, the first half second dropped."""
    lat_ms = [ns / 1e6 for ns in latencies_ns][rate // 2 :]
    q = statistics.quantiles(lat_ms, n=100)
    return q[49], q[98], max(lat_ms)


def paced(rate: int, seconds: float, send: Callable[[int], object]) -> list[object]:
    """Call send(perf_counter_ns()) `rate` times a second (blocking; for the sync client)."""
    sent = []
    interval = 1 / rate
    next_at = time.perf_counter()
    for _ in range(int(rate * seconds)):
        next_at += interval
        sent.append(send(time.perf_counter_ns()))
        time.sleep(max(0.0, next_at - time.perf_counter()))
    return sent


def spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def peer_env(url: str, name: str) -> dict[str, str]:
    return dict(os.environ, PEERS_REDIS=url, PEERS_NAME=name, PYTHONPATH=str(ROOT))


async def bench_huey(url: str, rate: int, seconds: float) -> Figures:
    name = f"peers-huey-{uuid.uuid4().hex[:8]}"
    env = peer_env(url, name)
    proc = spawn([sys.executable, "-c", HUEY_CONSUMER], env)
    os.environ.update(PEERS_REDIS=url, PEERS_NAME=name)
    from bench import peers_huey

    try:
        await asyncio.to_thread(peers_huey.stamp(0).get, blocking=True, timeout=STARTUP_S)
        await asyncio.sleep(IDLE_S)
        results = await asyncio.to_thread(paced, rate, seconds, peers_huey.stamp)
        latencies = [r.get(blocking=True, timeout=10) for r in results]  # type: ignore[attr-defined]
    finally:
        stop(proc)
        peers_huey.huey.flush()
    return quantiles(latencies, rate)


async def bench_taskiq(url: str, rate: int, seconds: float) -> Figures:
    name = f"peers-taskiq-{uuid.uuid4().hex[:8]}"
    env = peer_env(url, name)
    taskiq = str(Path(sys.executable).with_name("taskiq"))
    proc = spawn(
        [taskiq, "worker", "bench.peers_taskiq:broker", "--workers", "1", "--log-level", "WARNING"],
        env,
    )
    os.environ.update(PEERS_REDIS=url, PEERS_NAME=name)
    from bench import peers_taskiq

    await peers_taskiq.broker.startup()
    try:
        await (await peers_taskiq.stamp.kiq(0)).wait_result(timeout=STARTUP_S)
        await asyncio.sleep(IDLE_S)
        sent = []
        interval = 1 / rate
        next_at = time.perf_counter()
        for _ in range(int(rate * seconds)):
            next_at += interval
            sent.append(await peers_taskiq.stamp.kiq(time.perf_counter_ns()))
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        latencies = [(await t.wait_result(timeout=10)).return_value for t in sent]
    finally:
        stop(proc)
        await peers_taskiq.broker.shutdown()
    return quantiles(latencies, rate)


async def bench_corq(url: str, rate: int, seconds: float) -> Figures:
    """bench.bench_latency, with the first job run before the idle time."""
    prefix = bench.configure(url)
    proc = bench.start_worker(url, prefix, "--concurrency", "100")
    stamp = bench_app.stamp
    try:
        await (await stamp.enqueue(0)).result(timeout=STARTUP_S)
        await asyncio.sleep(IDLE_S)
        handles = []
        interval = 1 / rate
        next_at = time.perf_counter()
        for _ in range(int(rate * seconds)):
            next_at += interval
            handles.append(await stamp.enqueue(time.perf_counter_ns()))
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        latencies = [await h.result(timeout=10) for h in handles]
    finally:
        stop(proc)
        await bench.cleanup()
        await bench.drop_keys(url)
    return quantiles(latencies, rate)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("CORQ_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--rate", type=int, default=200, help="jobs a second [200]")
    parser.add_argument("--seconds", type=float, default=5.0, help="of sending, per system [5]")
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    parser.add_argument(
        "--only", default="huey,taskiq,corq", help="systems to run, comma separated"
    )
    args = parser.parse_args()
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"enqueue-to-start latency at {args.rate} jobs/s for {args.seconds:g}s each on "
        f"{args.url} ({os.cpu_count()} cpus; corq on the {loop} event loop)"
    )
    runs = {"huey": bench_huey, "taskiq": bench_taskiq, "corq": bench_corq}
    rows = []
    for name in args.only.split(","):
        p50, p99, most = await runs[name](args.url, args.rate, args.seconds)
        rows.append((name, p50, p99, most))
    print(f"{'system':<8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, p50, p99, most in rows:
        print(f"{name:<8} {p50:>8.2f} {p99:>8.2f} {most:>8.2f}")


if __name__ == "__main__":
    bench.run_on_chosen_loop(main)
