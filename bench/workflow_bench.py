"""corq workflow benchmarks: prints figures (not a test).

Run: .venv/bin/python bench/workflow_bench.py [--url URL] [--loop asyncio|uvloop] [--only ...]

Each figure starts one `corq worker bench.workflow_app:app --concurrency 500` (or
``--concurrency N``) as a real subprocess against the broker in --url (Redis: a fresh key
prefix, its keys deleted at the end; SQLite: a fresh file, deleted at the end), waits until
it is registered and has run a small chord (connections open, scripts loaded), then sends
one workflow from this process and reads what happened from the broker and from the
callbacks' own stamps (``perf_counter_ns``, CLOCK_MONOTONIC, shared by the processes of one
machine). ``--profile DIR`` samples the worker with py-spy meanwhile (collapsed stacks).

- chord: a chord of 10,000 no-op members and one fan-in callback (given the list of their
  results): the time from just before the enqueue call to the callback's body starting
  (the worker has by then read the 10,000 results to build its argument), split into the
  enqueue call, the members' run, and the fan-in; and a check that the callback ran
  exactly once, with every result.
- chain: a chain of 1,000 links, each given the previous one's result: the time per step,
  from the first link's start to the last one's, over the 999 hand-offs between them
  (end, release of the next link, claim, its input read); and the whole from the enqueue.
- plain (references, the same session): 10,000 no-op jobs by enqueue_many on the same
  worker (the chord's members without the workflow), and 1,000 jobs each enqueuing the
  next one from its body (a chain's hand-off without the workflow).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import corq  # noqa: E402
from bench import workflow_app  # noqa: E402
from bench.workflow_app import (  # noqa: E402
    chain_end,
    chain_start,
    chain_step,
    fan_in,
    member,
    relay,
)

APP = "bench.workflow_app:app"
#: The worker's --concurrency (``--concurrency`` changes it).
CONCURRENCY = [500]
#: Goals of the issue: the figure each section is held to (printed beside it).
CHORD_GOAL_S = 3.0
STEP_GOAL_MS = 2.0


# -- set-up ------------------------------------------------------------------------------
@dataclass
class Broker:
    """One bench run's store: a Redis prefix or a SQLite file, made fresh, and the file the
    callbacks note their runs in."""

    url: str
    prefix: str
    runs: Path

    @classmethod
    def fresh(cls, url: str) -> Broker:
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        if url.startswith("sqlite:///"):
            _remove_sqlite(_sqlite_path(url))
        workflow_app.app._clients.clear()
        workflow_app.app.configure(url=url, prefix=prefix)
        runs = Path(tempfile.gettempdir()) / f"corq-workflow-bench-{prefix}.runs"
        runs.unlink(missing_ok=True)
        broker = cls(url, prefix, runs)
        OPENED.append(broker)
        return broker

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite:///")

    def worker(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable, "-m", "corq", "worker", APP, "--concurrency", str(CONCURRENCY[0]),
                "--log-level", "warning",
            ],
            cwd=ROOT,
            env=dict(
                os.environ, CORQ_URL=self.url, CORQ_PREFIX=self.prefix, BENCH_RUNS=str(self.runs)
            ),
        )  # fmt: skip

    def runs_of(self, what: str) -> int:
        """How many times a callback's body ran."""
        if not self.runs.exists():
            return 0
        return sum(1 for line in self.runs.read_text().splitlines() if line.split()[0] == what)

    async def close(self) -> None:
        """Drop the bench's data: the Redis keys of its prefix, or the SQLite file."""
        await workflow_app.app.aclose()
        workflow_app.app._clients.clear()
        self.runs.unlink(missing_ok=True)
        if self.is_sqlite:
            _remove_sqlite(_sqlite_path(self.url))
            return
        async with aioredis.from_url(self.url) as r:
            batch: list[bytes] = []
            async for key in r.scan_iter(match=f"{self.prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await r.unlink(*batch)
                    batch = []
            if batch:
                await r.unlink(*batch)


#: Every store this run made, dropped again when it ends (also after a failure).
OPENED: list[Broker] = []


def _sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///path[?synchronous=...]`` URL."""
    return Path(url.removeprefix("sqlite:///").partition("?")[0])


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
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


async def ready_worker(broker: Broker) -> subprocess.Popen[bytes]:
    """A worker registered on the queue, warmed up by a small chord it has run."""
    proc = broker.worker()
    client = workflow_app.app.client()

    async def registered() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        stats = await client.queue_stats(["default"])
        return bool(stats) and stats[0].workers > 0

    await wait_until(registered, 60, "the worker to register")
    warm = await corq.chord([member.s(i) for i in range(10)], fan_in.then()).enqueue()
    await warm.result(timeout=60)
    return proc


#: Where `--profile DIR` writes py-spy's samples of the worker (collapsed stacks), or None.
PROFILE_DIR: list[Path] = []


def profile(proc: subprocess.Popen[bytes], name: str) -> subprocess.Popen[bytes] | None:
    """Sample the worker with py-spy during the measured part, when asked (--profile)."""
    if not PROFILE_DIR:
        return None
    out = PROFILE_DIR[0] / f"{name}-{os.getpid()}.txt"
    spy = subprocess.Popen(
        ["py-spy", "record", "-p", str(proc.pid), "-r", "250", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached
    return spy


def stop_profile(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def seconds(ns: int) -> float:
    return ns / 1e9


# -- (a) a chord of 10,000 -------------------------------------------------------------------
@dataclass
class ChordFigures:
    members: int
    #: From just before the enqueue call: the call returned, the last member ended (the
    #: workflow's end count), the callback's body started.
    enqueued_s: float
    members_done_s: float
    callback_started_s: float
    #: Runs of the callback's body (must be 1).
    callback_runs: int


async def bench_chord(url: str, n: int) -> ChordFigures:
    broker = Broker.fresh(url)
    proc = await ready_worker(broker)
    warm_runs = broker.runs_of("fan_in")
    spy = profile(proc, "chord")
    try:
        flow = corq.chord((member.s(i) for i in range(n)), fan_in.then())
        started_ns = time.perf_counter_ns()
        wf = await flow.enqueue()
        enqueued_ns = time.perf_counter_ns()
        members_done_ns = await _members_done_ns(wf, n)
        result: dict[str, Any] = await wf.result(timeout=300)
        if (result["count"], result["sum"]) != (n, n * (n - 1) // 2):
            raise RuntimeError(f"the callback got {result['count']} results, sum {result['sum']}")
        status = await wf.wait(timeout=60)
        if status.state is not corq.WorkflowState.SUCCEEDED or status.ended != n + 1:
            raise RuntimeError(f"the chord ended {status.state}, {status.ended} of {n + 1}")
        runs = broker.runs_of("fan_in") - warm_runs
    finally:
        stop_profile(spy)
        stop(proc)
        await broker.close()
    return ChordFigures(
        members=n,
        enqueued_s=seconds(enqueued_ns - started_ns),
        members_done_s=seconds(members_done_ns - started_ns),
        callback_started_s=seconds(result["started_ns"] - started_ns),
        callback_runs=runs,
    )


async def _members_done_ns(wf: corq.WorkflowHandle[Any], n: int) -> int:
    """When the workflow counted its n members' ends (polled every 2 ms: one cheap read)."""
    while True:
        status = await wf.status(jobs=False)
        if status.ended >= n:
            return time.perf_counter_ns()
        await asyncio.sleep(0.002)


# -- (b) a chain of 1,000 ----------------------------------------------------------------
@dataclass
class ChainFigures:
    steps: int
    #: From the enqueue call to the last link's start, and per hand-off between the first
    #: link's start and the last one's.
    total_s: float
    per_step_ms: float
    #: Runs of the last link's body (must be 1).
    end_runs: int
    #: CPU the worker process used meanwhile, per step (user + system).
    worker_cpu_ms: float


async def bench_chain(url: str, steps: int) -> ChainFigures:
    broker = Broker.fresh(url)
    proc = await ready_worker(broker)
    spy = profile(proc, "chain")
    worker = psutil.Process(proc.pid)
    try:
        links = [chain_start.s(), *[chain_step.then() for _ in range(steps - 2)], chain_end.then()]
        cpu_before = cpu_s(worker)
        started_ns = time.perf_counter_ns()
        wf = await corq.chain(*links).enqueue()
        result: dict[str, int] = await wf.result(timeout=600)
        cpu_used = cpu_s(worker) - cpu_before
        status = await wf.wait(timeout=60)
        if status.state is not corq.WorkflowState.SUCCEEDED or status.ended != steps:
            raise RuntimeError(f"the chain ended {status.state}, {status.ended} of {steps}")
        runs = broker.runs_of("chain_end")
    finally:
        stop_profile(spy)
        stop(proc)
        await broker.close()
    return ChainFigures(
        steps=steps,
        total_s=seconds(result["last_ns"] - started_ns),
        per_step_ms=(result["last_ns"] - result["first_ns"]) / 1e6 / (steps - 1),
        end_runs=runs,
        worker_cpu_ms=cpu_used * 1000 / steps,
    )


# -- references: the same work without a workflow -----------------------------------------
async def bench_plain_jobs(url: str, n: int) -> tuple[float, float]:
    """`n` no-op jobs sent with enqueue_many (batches of 10,000): seconds for the call, and
    until the queue was empty and nothing ran (polled every 2 ms)."""
    broker = Broker.fresh(url)
    proc = await ready_worker(broker)
    client = workflow_app.app.client()
    try:
        started = time.perf_counter()
        for i in range(0, n, 10_000):
            await member.enqueue_many([(j,) for j in range(i, min(n, i + 10_000))])
        enqueued = time.perf_counter() - started
        while True:
            stats = (await client.queue_stats(["default"]))[0]
            if stats.ready == 0 and stats.in_flight == 0:
                break
            await asyncio.sleep(0.002)
        done = time.perf_counter() - started
    finally:
        stop(proc)
        await broker.close()
    return enqueued, done


async def bench_relay(url: str, steps: int) -> float:
    """Ms per hand-off when each job enqueues the next one itself (no workflow)."""
    broker = Broker.fresh(url)
    proc = await ready_worker(broker)
    try:
        end_id = f"relay-end-{uuid.uuid4().hex[:8]}"
        await relay.enqueue(0, steps - 1, end_id)
        client = workflow_app.app.client()

        async def last_sent() -> bool:
            return await client.get_job(end_id, "default") is not None

        await wait_until(last_sent, 600, "the last relay job")
        result = await workflow_app.app.job(end_id).result(timeout=60)
    finally:
        stop(proc)
        await broker.close()
    assert result is not None
    return float(result["last_ns"] - result["first_ns"]) / 1e6 / (steps - 1)


# -- main --------------------------------------------------------------------------------
async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("CORQ_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--only", default="", help="comma list: chord,chain,plain (the references)")
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each figure")
    parser.add_argument("--concurrency", type=int, default=500, help="the worker's [500]")
    parser.add_argument(
        "--profile", metavar="DIR", help="sample the worker with py-spy, collapsed stacks to DIR"
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop of the bench and its worker [default: uvloop when installed]",
    )
    opts = parser.parse_args()
    only = set(filter(None, opts.only.split(",")))
    CONCURRENCY[0] = opts.concurrency
    if opts.profile:
        PROFILE_DIR.append(Path(opts.profile))
        PROFILE_DIR[0].mkdir(parents=True, exist_ok=True)
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"corq {corq.__version__} workflow bench on {opts.url} (python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cpus, {loop} event loop, one worker "
        f"process, concurrency {CONCURRENCY[0]})"
    )
    try:
        for _ in range(opts.repeat):
            if not only or "chord" in only:
                print_chord(await bench_chord(opts.url, 1000 if opts.quick else 10_000))
            if not only or "chain" in only:
                print_chain(await bench_chain(opts.url, 100 if opts.quick else 1000))
            if not only or "plain" in only:
                await print_references(opts.url, opts.quick)
    finally:
        for broker in OPENED:
            await broker.close()


async def print_references(url: str, quick: bool) -> None:
    n, steps = (1000, 100) if quick else (10_000, 1000)
    enqueued, done = await bench_plain_jobs(url, n)
    per_step = await bench_relay(url, steps)
    print(
        f"references without a workflow: {n:,} no-op jobs by enqueue_many: call {enqueued:.2f} "
        f"s, all ended at {done:.2f} s; {steps:,} jobs each enqueuing the next: "
        f"{per_step:.2f} ms per hand-off"
    )


def print_chord(f: ChordFigures) -> None:
    verdict = "met" if f.callback_started_s < CHORD_GOAL_S else "MISSED"
    print(
        f"chord of {f.members:,} members and one fan-in callback: callback started "
        f"{f.callback_started_s:.2f} s after the first enqueue (goal < {CHORD_GOAL_S:g} s: "
        f"{verdict}); enqueue call {f.enqueued_s:.2f} s, members all ended at "
        f"{f.members_done_s:.2f} s, fan-in (release, {f.members:,} results read, start) "
        f"{f.callback_started_s - f.members_done_s:.2f} s; callback ran {f.callback_runs} "
        f"time(s)" + ("" if f.callback_runs == 1 else " (EXPECTED ONCE)")
    )


def print_chain(f: ChainFigures) -> None:
    verdict = "met" if f.per_step_ms < STEP_GOAL_MS else "MISSED"
    print(
        f"chain of {f.steps:,} links: {f.per_step_ms:.2f} ms per step (goal < "
        f"{STEP_GOAL_MS:g} ms: {verdict}); last link started {f.total_s:.2f} s after the "
        f"enqueue; worker CPU {f.worker_cpu_ms:.2f} ms per step; last link ran {f.end_runs} "
        "time(s)" + ("" if f.end_runs == 1 else " (EXPECTED ONCE)")
    )


if __name__ == "__main__":
    # --loop asyncio|uvloop: the event loop of the bench and of the worker it starts.
    choice = sys.argv[sys.argv.index("--loop") + 1] if "--loop" in sys.argv else "auto"
    os.environ["CORQ_EVENT_LOOP"] = choice
    if choice == "asyncio" or importlib.util.find_spec("uvloop") is None:
        asyncio.run(main())
    else:
        import uvloop

        uvloop.run(main())
