"""corq scheduler benchmarks: prints figures (not a test).

Run: .venv/bin/python bench/schedule_bench.py [--url URL] [--loop asyncio|uvloop] [--only ...]

Each figure starts `corq scheduler bench.bench_app:app` as real subprocesses (default
settings) against the broker in --url (Redis: a fresh key prefix, its keys deleted at the
end; SQLite: a fresh file, deleted at the end), adds stored schedules of the no-op task
from this process, and reads what happened from the broker. No worker runs: a tick's job
is measured when it is enqueued. Lateness is given twice: by the job record's
``enqueued_at_ms`` (the scheduler's clock as it sends the step) and by the run log's
``fired_at_ms`` (the broker's clock as it begins the write).

- lateness: one scheduler, a cron every second, 60 ticks; and the leader's CPU meanwhile.
- failover: three schedulers, the leader SIGKILLed at a random point (7 times); the time
  until the lease names another live scheduler, and until the next tick's job.
- many: 10,000 stored schedules, ``S * * * * *`` (S = i mod 60: spread over the minute)
  for a minute, then ``* * * * *`` (all due in one second) for two minutes: add time,
  broker memory, a new leader's load time, the leader's CPU and the ticks' lateness; and
  the memory of one schedule whose logs are full (``--only full``: SCHEDULE_FIRED_KEEP
  fired ticks, 100 runs).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import corq  # noqa: E402
from bench import bench_app  # noqa: E402
from corq.backends.base import (  # noqa: E402
    SCHEDULE_FIRED_KEEP,
    SCHEDULE_LOG_KEEP,
    Backend,
    ScheduleRun,
)
from corq.scheduler.state import Table  # noqa: E402

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
        broker = cls(url, prefix)
        OPENED.append(broker)
        return broker

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


#: Every store this run made, dropped again when it ends (also after a failure).
OPENED: list[Broker] = []


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


@dataclass
class Lateness:
    """How late each tick's job was: by its record's ``enqueued_at_ms`` (the scheduler's
    clock as it sent the step: the figure the issue asks for), and by the run log's
    ``fired_at_ms`` (the broker's clock as it wrote the job)."""

    enqueued_ms: list[float]
    written_ms: list[float]


async def lateness(broker: Broker, runs: Sequence[ScheduleRun]) -> Lateness:
    """Read each run's job record (its id is ``<name>@<tick>``)."""
    client = bench_app.app.client()
    jobs = await gather_chunked(
        [lambda r=r: client.get_job(r.job_id, r.queue) for r in runs]  # type: ignore[misc]  # the default binds the loop variable
    )
    missing = [r.job_id for r, j in zip(runs, jobs, strict=True) if j is None]
    if missing:
        raise RuntimeError(f"{len(missing)} job(s) of fired ticks not found, e.g. {missing[:3]}")
    return Lateness(
        enqueued_ms=[j.enqueued_at_ms - r.tick_ms for r, j in zip(runs, jobs, strict=True) if j],
        written_ms=[r.fired_at_ms - r.tick_ms for r in runs],
    )


async def runs_of(broker: Broker, name: str, ticks: Sequence[int]) -> list[ScheduleRun]:
    """The runs of `ticks` in the schedule's run log (each must be there once)."""
    runs, _ = await broker.backend.schedule_history(name, 1000)
    by_tick = {r.tick_ms: r for r in runs if r.tick_ms in set(ticks)}
    if len(by_tick) != len(ticks) or len(runs) != len({r.tick_ms for r in runs}):
        raise RuntimeError(f"{name}: {len(by_tick)} of {len(ticks)} ticks fired (or twice)")
    return [by_tick[t] for t in ticks]


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


# -- (a) lateness of one-second ticks --------------------------------------------------------
async def bench_lateness(url: str, count: int) -> tuple[Lateness, float]:
    """Lateness of `count` one-second ticks, and the leader's CPU % while they fire."""
    broker = Broker.fresh(url)
    await bench_app.app.schedules.add("tick", bench_app.noop, cron="* * * * * *")
    proc = broker.scheduler()
    try:
        await live_leader(broker, [proc], 30)
        # Two ticks of warm-up after it leads, then `count` ticks
        first = (int(time.time()) + 3) * 1000
        ticks = [first + 1000 * i for i in range(count)]
        await asyncio.sleep(max(0.0, first / 1000 - time.time() - 0.5))
        ps = psutil.Process(proc.pid)
        used, began = cpu_s(ps), time.monotonic()
        await asyncio.sleep(max(0.0, ticks[-1] / 1000 - time.time() + 0.5))
        cpu = 100 * (cpu_s(ps) - used) / (time.monotonic() - began)
        late = await lateness(broker, await runs_of(broker, "tick", ticks))
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
    #: Broker bytes of the schedules as added (the job records are not counted).
    memory_bytes: int
    #: And after they ticked (each fire adds a run log entry and a fired tick, up to 100
    #: runs and 1,000 fired ticks per schedule).
    memory_fired_bytes: int
    minutes: int
    #: Seconds to read every record and build the leader's table, as a new leader does.
    load_s: float
    #: Per minute of ticking: the leader's CPU (% of one core), and the ticks' lateness.
    cpu_pct: list[float]
    late: list[Lateness]


async def bench_many(url: str, n: int, *, burst: bool, minutes: int) -> ManyFigures:
    """`n` stored schedules of one job a minute, ticking for `minutes`: ``S * * * * *``
    with S = i mod 60 (spread over the minute), or ``* * * * *`` (all due in one second)."""
    broker = Broker.fresh(url)
    before = await schedule_memory(broker)
    add_s = await add_many(n, burst)
    memory = await schedule_memory(broker) - before
    load_s = await load_s_of(broker)
    proc = broker.scheduler()
    cpu: list[float] = []
    try:
        await live_leader(broker, [proc], 60)
        # From the next whole minute at least 5 s away (the leader has loaded by then)
        window_ms = (int(time.time() + 5) // 60 + 1) * 60_000
        ps = psutil.Process(proc.pid)
        for minute in range(minutes):
            start_s = window_ms / 1000 + 60 * minute
            await asyncio.sleep(max(0.0, start_s - 0.5 - time.time()))
            used, began = cpu_s(ps), time.monotonic()
            await asyncio.sleep(max(0.0, start_s + 59.5 - time.time()))
            cpu.append(100 * (cpu_s(ps) - used) / (time.monotonic() - began))
    finally:
        stop([proc])
    late = [
        await lateness(broker, runs) for runs in await runs_by_minute(broker, n, window_ms, minutes)
    ]
    fired_memory = await schedule_memory(broker) - before
    await broker.close()
    return ManyFigures(
        add_s=add_s,
        memory_bytes=memory,
        memory_fired_bytes=fired_memory,
        minutes=minutes,
        load_s=load_s,
        cpu_pct=cpu,
        late=late,
    )


async def add_many(n: int, burst: bool) -> float:
    """Add schedules s0..s<n-1> (50 calls at a time); seconds taken."""
    add = bench_app.app.schedules.add

    def cron(i: int) -> str:
        return "* * * * *" if burst else f"{i % 60} * * * * *"

    started = time.perf_counter()
    await gather_chunked(
        [lambda i=i: add(f"s{i}", bench_app.noop, cron=cron(i)) for i in range(n)],  # type: ignore[misc]  # the default binds the loop variable
        width=50,
    )
    return time.perf_counter() - started


async def runs_by_minute(
    broker: Broker, n: int, window_ms: int, minutes: int
) -> list[list[ScheduleRun]]:
    """Each minute's runs: every schedule must have fired once in each, and never twice."""
    history = broker.backend.schedule_history
    logs = await gather_chunked(
        [lambda i=i: history(f"s{i}", minutes + 1) for i in range(n)]  # type: ignore[misc]  # the default binds the loop variable
    )
    out = []
    for minute in range(minutes):
        start = window_ms + 60_000 * minute
        runs = [r for runs, _ in logs for r in runs if start <= r.tick_ms < start + 60_000]
        if len(runs) != n or len({(r.job_id) for r in runs}) != n:
            raise RuntimeError(f"minute {minute}: {len(runs)} runs of {n} schedules")
        out.append(runs)
    return out


async def full_logs_bytes(url: str, count: int) -> float:
    """Broker bytes per schedule once its logs are at their bounds (SCHEDULE_FIRED_KEEP
    fired ticks and SCHEDULE_LOG_KEEP runs kept): `count` schedules each backfilled with
    1,100 past one-second ticks."""
    broker = Broker.fresh(url)
    before = await schedule_memory(broker)
    schedules = bench_app.app.schedules
    for i in range(count):
        await schedules.add(f"full{i}", bench_app.noop, cron="* * * * * *")
    end = datetime.fromtimestamp(int(time.time()) - 1, UTC)
    await asyncio.sleep(max(0.0, end.timestamp() + 1.001 - time.time()))  # end <= now
    for i in range(count):
        result = await schedules.backfill(f"full{i}", end - timedelta(seconds=1099), end)
        if result.fired != 1100:
            raise RuntimeError(f"backfill fired {result.fired} of 1,100 ticks")
    used = await schedule_memory(broker) - before
    await broker.close()
    return used / count


async def load_s_of(broker: Broker) -> float:
    """Seconds a new leader spends loading: read every schedule (``changed_schedules(0)``)
    and put it in the table of due ticks, on a connection of its own."""
    client = corq.App(broker.url, prefix=broker.prefix).new_client()
    try:
        await client.backend.schedules_version()  # connected
        started = time.perf_counter()
        table = Table(bench_app.app.registry, bench_app.app.periodic_schedules)
        for record in (await client.backend.changed_schedules(0)).changed:
            table.put(record)
        return time.perf_counter() - started
    finally:
        await client.close()


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
    parser.add_argument("--only", default="", help="comma list: lateness,failover,many,full")
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
    try:
        if not only or "lateness" in only:
            count = 10 if opts.quick else 60
            late, cpu = await bench_lateness(opts.url, count)
            print(
                f"tick lateness, {count} one-second ticks, one idle scheduler: job enqueued "
                f"{fmt_ms(late.enqueued_ms)}; written by the broker {fmt_ms(late.written_ms)}; "
                f"leader CPU {cpu:.2f}% of one core"
            )
        if not only or "failover" in only:
            repeats = 2 if opts.quick else 7
            takeovers, gaps = await bench_failover(opts.url, repeats)
            print(
                f"failover after SIGKILL of the leader ({repeats} times, 3 schedulers, lease "
                f"{LEASE_S:g} s, poll {POLL_S:g} s): lease taken over after "
                f"{_spread(takeovers)}; next tick's job after {_spread(gaps)}"
            )
        if not only or "many" in only:
            n = 1000 if opts.quick else 10_000
            for burst in (False, True):
                figures = await bench_many(opts.url, n, burst=burst, minutes=2 if burst else 1)
                print_many(n, burst, figures)
        if not only or "full" in only:
            n = 1000 if opts.quick else 10_000
            full = await full_logs_bytes(opts.url, 20)
            print(
                f"a schedule with its logs full ({SCHEDULE_FIRED_KEEP:,} fired ticks, "
                f"{SCHEDULE_LOG_KEEP} runs): {full:,.0f} B; {n:,} of them: "
                f"{full * n / 2**20:,.0f} MiB"
            )
    finally:
        for broker in OPENED:
            await broker.close()


def print_many(n: int, burst: bool, f: ManyFigures) -> None:
    how = "'* * * * *': all due in one second" if burst else "'S * * * * *', S = i mod 60"
    print(
        f"{n:,} stored schedules ({how}): added in {f.add_s:.1f} s; broker memory "
        f"{f.memory_bytes / 2**20:.1f} MiB ({f.memory_bytes / n:,.0f} B each), "
        f"{f.memory_fired_bytes / 2**20:.1f} MiB after {f.minutes} fire(s) each; loaded by a "
        "leader in "
        f"{f.load_s * 1000:,.0f} ms"
    )
    for minute, (cpu, late) in enumerate(zip(f.cpu_pct, f.late, strict=True), 1):
        print(
            f"  minute {minute}: leader CPU {cpu:.1f}% of one core; lateness: job enqueued "
            f"{fmt_ms(late.enqueued_ms)}; written by the broker {fmt_ms(late.written_ms)}"
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
