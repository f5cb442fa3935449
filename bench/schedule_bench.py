"""corq scheduler benchmarks: prints figures (not a test).

Run: .venv/bin/python bench/schedule_bench.py [--url URL] [--loop asyncio|uvloop] [--only ...]

Each figure starts `corq scheduler bench.bench_app:app` as real subprocesses (default
settings) against the broker in --url (Redis: a fresh key prefix, removed afterwards;
SQLite: a fresh file), adds stored schedules of the no-op task from this process, and reads
the results from the broker. No worker runs: a tick's job is measured when it is enqueued.

- lateness: one scheduler, a cron every second; lateness = job.enqueued_at_ms - tick.
- failover: three schedulers, the leader SIGKILLed; the time until the lease names another
  live scheduler, and until the next tick's job is enqueued.
- many: 10,000 stored schedules: broker memory, the leader's load time and CPU while they
  tick, and the lateness of their ticks (spread over a minute, then all in one second).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import corq  # noqa: E402
from bench import bench_app  # noqa: E402
from corq.backends.base import Backend  # noqa: E402
from corq.schedule import ScheduleDef  # noqa: E402

T = TypeVar("T")
APP = "bench.bench_app:app"
#: Default scheduler settings, as the runtime defines them (docs/design.md, "Schedules").
LEASE_S = 4.0
POLL_S = 0.5


# -- set-up ------------------------------------------------------------------------------
@dataclass
class Broker:
    """One bench run's store: a Redis prefix or a SQLite file, made fresh."""

    url: str
    prefix: str

    @classmethod
    def fresh(cls, url: str) -> Broker:
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        if url.startswith("sqlite:///"):
            _remove_sqlite(Path(url.removeprefix("sqlite:///")))
        bench_app.app._clients.clear()
        bench_app.app.configure(url=url, prefix=prefix)
        return cls(url, prefix)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite:///")

    @property
    def backend(self) -> Backend:
        return bench_app.app.client().backend

    def scheduler(self, **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "corq", "scheduler", APP, "--log-level", "warning"],
            cwd=ROOT,
            env=dict(os.environ, CORQ_URL=self.url, CORQ_PREFIX=self.prefix, **env),
        )

    async def close(self) -> None:
        """Drop the bench's data: the Redis keys of its prefix, or the SQLite file."""
        await bench_app.app.aclose()
        bench_app.app._clients.clear()
        if self.is_sqlite:
            _remove_sqlite(Path(self.url.removeprefix("sqlite:///")))
            return
        async with aioredis.from_url(self.url) as r:
            async for keys in _scan_batches(r, f"{self.prefix}:*"):
                await r.unlink(*keys)


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _scan_batches(r: aioredis.Redis, pattern: str) -> Any:
    batch: list[bytes] = []
    async for key in r.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            yield batch
            batch = []
    if batch:
        yield batch


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def gather_chunked(calls: Sequence[Callable[[], Awaitable[T]]], width: int = 200) -> list[T]:
    out: list[T] = []
    for i in range(0, len(calls), width):
        out += await asyncio.gather(*(call() for call in calls[i : i + width]))
    return out


def holder_pid(holder: str) -> int | None:
    """The pid a scheduler's holder id names (``host.pid.random...``)."""
    for part in holder.replace("~", ".").split("."):
        if part.isdigit():
            return int(part)
    return None


async def live_leader(
    broker: Broker, procs: Sequence[subprocess.Popen[bytes]], timeout: float
) -> subprocess.Popen[bytes]:
    """Wait until the lease names one of `procs` that is alive; return it."""
    found: list[subprocess.Popen[bytes]] = []

    async def leads() -> bool:
        lease = await broker.backend.scheduler_lease()
        pid = None if lease is None else holder_pid(lease.holder)
        found[:] = [p for p in procs if p.pid == pid and p.poll() is None]
        return bool(found)

    await wait_until(leads, timeout, "a live scheduler to lead")
    return found[0]


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99 and max."""
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98], max(values)


def fmt_ms(values: Sequence[float]) -> str:
    p50, p99, worst = quantiles(values)
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms"


async def tick_lateness_ms(broker: Broker, fired: Sequence[tuple[str, int]]) -> list[float]:
    """enqueued_at_ms - tick of each (schedule, tick)'s job (its id is ``<name>@<tick>``)."""
    client = bench_app.app.client()
    jobs = await gather_chunked(
        [lambda n=n, t=t: client.get_job(f"{n}@{t}", "default") for n, t in fired]  # type: ignore[misc]  # defaults bind the loop variables
    )
    missing = [f for f, j in zip(fired, jobs, strict=True) if j is None]
    if missing:
        raise RuntimeError(f"{len(missing)} tick(s) not fired, e.g. {missing[:3]}")
    return [j.enqueued_at_ms - t for (_, t), j in zip(fired, jobs, strict=True) if j is not None]


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


# -- (a) lateness of one-second ticks --------------------------------------------------------
async def bench_lateness(url: str, count: int) -> tuple[list[float], float]:
    """Lateness of `count` one-second ticks, and the leader's CPU % while they fire."""
    broker = Broker.fresh(url)
    await bench_app.app.schedules.add("tick", bench_app.noop, cron="* * * * * *")
    proc = broker.scheduler()
    try:
        await live_leader(broker, [proc], 30)
        # Two ticks of warm-up after it leads, then `count` ticks
        first = (int(time.time()) + 3) * 1000
        ticks = [first + 1000 * i for i in range(count)]
        await asyncio.sleep(max(0.0, first / 1000 - time.time()))
        ps = psutil.Process(proc.pid)
        used, began = cpu_s(ps), time.monotonic()
        await asyncio.sleep(max(0.0, ticks[-1] / 1000 - time.time() + 0.5))
        cpu = 100 * (cpu_s(ps) - used) / (time.monotonic() - began)
        late = await tick_lateness_ms(broker, [("tick", t) for t in ticks])
    finally:
        stop([proc])
        await broker.close()
    return late, cpu


# -- (b) failover gap ----------------------------------------------------------------------
async def bench_failover(url: str, repeats: int) -> tuple[list[float], list[float]]:
    """Per SIGKILL of the leader: seconds until another live scheduler holds the lease, and
    until the next tick's job is enqueued."""
    broker = Broker.fresh(url)
    await bench_app.app.schedules.add("tick", bench_app.noop, cron="* * * * * *")
    procs = [broker.scheduler() for _ in range(3)]
    takeovers: list[float] = []
    gaps: list[float] = []
    try:
        for _ in range(repeats):
            leader = await live_leader(broker, procs, 30)
            # Let it lead a moment, killed at a random point of a second and of its lease
            await asyncio.sleep(random.uniform(1.0, 1.0 + LEASE_S / 2))
            leader.send_signal(signal.SIGKILL)
            killed_ms = time.time() * 1000
            leader.wait()
            procs.remove(leader)
            procs.append(broker.scheduler())
            await live_leader(broker, procs, 30)
            takeovers.append((time.time() * 1000 - killed_ms) / 1000)
            gaps.append(await _next_fired_s(broker, killed_ms))
    finally:
        stop(procs)
        await broker.close()
    return takeovers, gaps


async def _next_fired_s(broker: Broker, killed_ms: float) -> float:
    """Seconds from `killed_ms` to the first job of "tick" enqueued after it."""
    client = bench_app.app.client()

    async def fired_after() -> bool:
        record = await broker.backend.get_schedule("tick")
        return (
            record is not None
            and record.last_run is not None
            and (record.last_run.fired_at_ms > killed_ms)
        )

    await wait_until(fired_after, 30, "a tick fired by the new leader")
    ticks = range(int(killed_ms // 1000 - 10) * 1000, int(time.time() + 1) * 1000, 1000)
    jobs = await asyncio.gather(*(client.get_job(f"tick@{t}", "default") for t in ticks))
    after = [j.enqueued_at_ms for j in jobs if j is not None and j.enqueued_at_ms > killed_ms]
    return (min(after) - killed_ms) / 1000


# -- (c) 10,000 stored schedules -------------------------------------------------------------
@dataclass
class ManyFigures:
    """What `n` stored schedules cost."""

    #: Seconds to add them (app.schedules.add, 50 at a time).
    add_s: float
    #: Broker bytes for the schedules as added, and after each fired once (+ a fired tick
    #: and a run log entry each; the job records are not counted).
    memory_bytes: int
    memory_fired_bytes: int
    #: Seconds for a process to read and decode every schedule (what a new leader does).
    load_s: float
    #: The leader's CPU (% of one core) over the minute in which each fires once.
    cpu_pct: float
    late_ms: list[float]


async def bench_many(url: str, n: int, *, burst: bool) -> ManyFigures:
    """`n` stored schedules of one job a minute: with ``S * * * * *`` for S = i mod 60
    (spread over the minute), or with ``* * * * *`` (all due in the same second)."""
    broker = Broker.fresh(url)
    before = await schedule_memory(broker)
    add = bench_app.app.schedules.add

    def cron(i: int) -> str:
        return "* * * * *" if burst else f"{i % 60} * * * * *"

    started = time.perf_counter()
    await gather_chunked(
        [lambda i=i: add(f"s{i}", bench_app.noop, cron=cron(i)) for i in range(n)],  # type: ignore[misc]  # default binds the loop variable
        width=50,
    )
    add_s = time.perf_counter() - started
    memory = await schedule_memory(broker) - before
    load_s = await read_all_s(broker)
    proc = broker.scheduler()
    try:
        await live_leader(broker, [proc], 60)
        # The next whole minute at least 5 s away (the leader has loaded by then)
        window_ms = (int(time.time() + 5) // 60 + 1) * 60_000
        await asyncio.sleep(max(0.0, window_ms / 1000 - time.time()))
        ps = psutil.Process(proc.pid)
        used, began = cpu_s(ps), time.monotonic()
        await asyncio.sleep(max(0.0, window_ms / 1000 + 60 - time.time()))
        cpu = 100 * (cpu_s(ps) - used) / (time.monotonic() - began)
        fired = [(f"s{i}", window_ms + (0 if burst else (i % 60) * 1000)) for i in range(n)]
        late = await tick_lateness_ms(broker, fired)
    finally:
        stop([proc])
    fired_memory = await schedule_memory(broker) - before
    await broker.close()
    return ManyFigures(
        add_s=add_s,
        memory_bytes=memory,
        memory_fired_bytes=fired_memory,
        load_s=load_s,
        cpu_pct=cpu,
        late_ms=late,
    )


async def read_all_s(broker: Broker) -> float:
    """Seconds to read every schedule from a new connection and decode its definition, as
    a new leader does before it fires anything."""
    app = corq.App(broker.url, prefix=broker.prefix)
    try:
        backend = app.new_client().backend
        await backend.schedules_version()  # connected
        started = time.perf_counter()
        changes = await backend.changed_schedules(0)
        for record in changes.changed:
            ScheduleDef.decode(record.definition)
        return time.perf_counter() - started
    finally:
        await app.aclose()


async def schedule_memory(broker: Broker) -> int:
    """Bytes the broker holds for schedules: Redis MEMORY USAGE of the prefix's schedule
    keys; SQLite pages of the schedule tables (dbstat), after a checkpoint."""
    if broker.is_sqlite:
        path = broker.url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE '%schedule%'"
            ).fetchone()
        return int(rows[0])
    total = 0
    async with aioredis.from_url(broker.url) as r:
        async for keys in _scan_batches(r, f"{broker.prefix}:*"):
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    if b"schedule" in key:
                        pipe.memory_usage(key, samples=0)
                total += sum(int(v or 0) for v in await pipe.execute())
    return total


# -- main --------------------------------------------------------------------------------
async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("CORQ_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--only", default="", help="comma list: lateness,failover,many")
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop of the bench and its schedulers [default: uvloop when installed]",
    )
    opts = parser.parse_args()
    only = set(filter(None, opts.only.split(",")))
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"corq {corq.__version__} scheduler bench on {opts.url} (python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cpus, {loop} event loop)"
    )
    if not only or "lateness" in only:
        count = 10 if opts.quick else 60
        late, cpu = await bench_lateness(opts.url, count)
        print(
            f"tick lateness, {count} one-second ticks, one idle scheduler: {fmt_ms(late)}; "
            f"leader CPU {cpu:.2f}% of one core"
        )
    if not only or "failover" in only:
        repeats = 2 if opts.quick else 7
        takeovers, gaps = await bench_failover(opts.url, repeats)
        print(
            f"failover after SIGKILL of the leader ({repeats} times, 3 schedulers, lease "
            f"{LEASE_S:g} s, poll {POLL_S:g} s): lease taken over after "
            f"{_spread(takeovers)}; next tick fired after {_spread(gaps)}"
        )
    if not only or "many" in only:
        n = 1000 if opts.quick else 10_000
        for burst in (False, True):
            print_many(n, burst, await bench_many(opts.url, n, burst=burst))


def print_many(n: int, burst: bool, f: ManyFigures) -> None:
    how = "cron '* * * * *', all due in one second" if burst else "cron 'S * * * * *', S = i mod 60"
    print(
        f"{n:,} stored schedules ({how}): added in {f.add_s:.1f} s; broker memory "
        f"{f.memory_bytes / 2**20:.1f} MiB ({f.memory_bytes / n:,.0f} B each), "
        f"{f.memory_fired_bytes / 2**20:.1f} MiB after one fire each; all read and decoded in "
        f"{f.load_s * 1000:,.0f} ms; leader CPU {f.cpu_pct:.1f}% of one core over the minute "
        f"they fire in; tick lateness {fmt_ms(f.late_ms)}"
    )


def _spread(seconds: Sequence[float]) -> str:
    return (
        f"min {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s, "
        f"max {max(seconds):.2f} s"
    )


if __name__ == "__main__":
    # --loop asyncio|uvloop: the event loop of the bench and of every scheduler it starts.
    choice = sys.argv[sys.argv.index("--loop") + 1] if "--loop" in sys.argv else "auto"
    os.environ["CORQ_EVENT_LOOP"] = choice
    if choice == "asyncio" or importlib.util.find_spec("uvloop") is None:
        asyncio.run(main())
    else:
        import uvloop

        uvloop.run(main())  # the bench's reads on the loop the schedulers use
