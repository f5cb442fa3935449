"""Flow control across 4 worker processes, on each broker: every job notes its start and end
(tests/e2e/flow_app.py), and the tests check what ran at once on all workers together."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import corq
from tests.e2e import flow_app
from tests.e2e.conftest import ROOT, Cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WORKERS = 4
APP = "tests.e2e.flow_app:app"


@dataclass(frozen=True)
class Run:
    """One attempt of a job as its process noted it (ns since the epoch)."""

    label: str
    start: int
    end: int | None
    pid: int


@pytest.fixture
async def flow(e2e_url: str, prefix: str) -> AsyncIterator[corq.App]:
    flow_app.app.configure(url=e2e_url, prefix=prefix)
    yield flow_app.app
    await flow_app.app.aclose()
    flow_app.app._clients.clear()


@pytest.fixture
def log_dir(tmp_path: Path) -> str:
    path = tmp_path / "runs"
    path.mkdir()
    return str(path)


def workers(cli: Cli, *args: str, count: int = WORKERS) -> list[subprocess.Popen[bytes]]:
    return [
        cli.spawn("worker", APP, "--no-scheduler", *args, log_name="worker") for _ in range(count)
    ]


async def serving(flow: corq.App, count: int = WORKERS, queue: str = "default") -> None:
    """Until `count` workers are registered on the queue (a loaded machine starts them one
    by one: the first one up would otherwise run every job alone)."""

    async def registered() -> bool:
        [stats] = await flow.client().queue_stats([queue])
        return stats.workers >= count

    await wait_for(registered, 60, f"{count} workers serving {queue}")


def runs(log_dir: str) -> list[Run]:
    """Every attempt noted so far, by start time (an attempt not ended has end None)."""
    starts: dict[tuple[str, int], list[int]] = defaultdict(list)
    ends: dict[tuple[str, int], list[int]] = defaultdict(list)
    for path in Path(log_dir).glob("flow-*.log"):
        for line in path.read_text().splitlines():
            event, name, ns, process = line.split()
            (starts if event == "start" else ends)[(name, int(process))].append(int(ns))
    found = []
    for (label, pid), began in starts.items():
        ended = ends.get((label, pid), [])
        for i, start in enumerate(began):
            found.append(Run(label, start, ended[i] if i < len(ended) else None, pid))
    return sorted(found, key=lambda r: r.start)


def most_at_once(attempts: list[Run]) -> int:
    """The largest number of attempts running at one instant (an end before a start at a
    tie: a freed slot is only taken after the job that held it noted its end)."""
    events = [(r.start, 1) for r in attempts]
    events += [(r.end if r.end is not None else sys.maxsize, -1) for r in attempts]
    running = most = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        most = max(most, running)
    return most


async def all_ran(log_dir: str, count: int, what: str, timeout: float = 60) -> list[Run]:
    await wait_for(lambda: sum(r.end is not None for r in runs(log_dir)) >= count, timeout, what)
    return runs(log_dir)


async def test_a_task_concurrency_holds_on_all_workers_together(
    cli: Cli, flow: corq.App, log_dir: str
) -> None:
    # Given 4 worker processes, then 24 jobs of a task limited to 3 at once
    workers(cli)
    await serving(flow)
    await flow_app.limited.enqueue_many([(log_dir, n, 0.1) for n in range(24)])
    # When they all ran
    done = await all_ran(log_dir, 24, "the 24 limited jobs")
    # Then never more than 3 ran at once, and the limit was used (3 did run together)
    assert len(done) == 24
    assert most_at_once(done) == flow_app.CONCURRENCY


async def test_key_concurrency_holds_for_each_tenant(
    cli: Cli, flow: corq.App, log_dir: str
) -> None:
    # Given 4 tenants with 8 jobs each, at most 2 running per tenant
    tenants = [f"t{i}" for i in range(4)]
    calls = [(log_dir, t, n, 0.08) for n in range(8) for t in tenants]
    workers(cli)
    await serving(flow)
    await flow_app.per_tenant.enqueue_many(calls)
    done = await all_ran(log_dir, len(calls), "every tenant's jobs")
    # Then each tenant had at most 2 at once, while tenants ran side by side
    for tenant in tenants:
        mine = [r for r in done if r.label.startswith(f"{tenant}:")]
        assert len(mine) == 8
        assert most_at_once(mine) <= flow_app.KEY_CONCURRENCY, tenant
    assert most_at_once(done) > flow_app.KEY_CONCURRENCY


async def test_key_concurrency_one_keeps_each_key_in_enqueue_order(
    cli: Cli, flow: corq.App, log_dir: str
) -> None:
    # Given 3 accounts, 15 jobs each enqueued in order (interleaved between accounts)
    accounts = ["a", "b", "c"]
    workers(cli)
    await serving(flow)
    for n in range(15):
        await flow_app.in_order.enqueue_many([(log_dir, a, n) for a in accounts])
    done = await all_ran(log_dir, 45, "every account's jobs")
    # Then each account's jobs started in enqueue order, one at a time
    for account in accounts:
        mine = [r for r in done if r.label.startswith(f"{account}:")]
        assert [int(r.label.split(":")[1]) for r in mine] == list(range(15)), account
        assert most_at_once(mine) == 1


async def test_a_rate_limit_holds_over_every_window(cli: Cli, flow: corq.App, log_dir: str) -> None:
    # Given 60 jobs of a task limited to 20 starts a second, and 4 worker processes
    workers(cli)
    await serving(flow)
    handles = await flow_app.rated.enqueue_many([(log_dir, n) for n in range(60)])
    await all_ran(log_dir, 60, "the 60 rated jobs")
    # (the start times the broker admitted, in ms: a process notes its start a little later,
    # by as much as the machine's scheduling delays)
    starts = sorted([(await h.info()).started_at_ms or 0 for h in handles])
    # Then in any window of T seconds at most 20 + 20*T jobs started (the limit and one bucket)
    rate = flow_app.RATE
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            window_s = (starts[j] - first + 1) / 1000  # the ms rounding
            assert j - i + 1 <= rate + rate * window_s, (j - i + 1, window_s)
    # and the jobs over the first bucket waited for it to refill
    assert (starts[-1] - starts[0]) / 1000 >= (60 - 2 * rate) / rate


async def test_weighted_queues_share_the_starts(cli: Cli, flow: corq.App, log_dir: str) -> None:
    weights = {"high": 5, "default": 2, "low": 1}
    # Given three queues kept full (each holds more jobs than it gets of the counted starts)
    for queue in weights:
        await flow_app.weighted.with_options(queue=queue).enqueue_many(
            [(log_dir, n) for n in range(400)]
        )
    # When 4 workers of 2 slots each serve them by weight
    workers(cli, "--queues", "high=5,default=2,low=1", "-c", "2")
    await serving(flow, queue="low")
    counted = 400
    skipped = 2 * WORKERS  # the first claims of each process
    done = await all_ran(log_dir, skipped + counted, "the counted starts")
    measured = [r.label.split(":")[0] for r in done[skipped : skipped + counted]]
    # Then each queue's share of a fixed number of started jobs is its weight's, within 10%
    for queue, weight in weights.items():
        share = measured.count(queue) / counted
        assert share == pytest.approx(weight / 8, rel=0.10), (queue, share)


async def test_a_small_tenant_starts_before_a_big_backlog(
    cli: Cli, flow: corq.App, log_dir: str
) -> None:
    # Given a big tenant's backlog of 5,000 short jobs being worked off by 4 workers of 10
    # slots (about 2,000 jobs a second: the backlog lasts a few seconds)
    big = 5000
    await flow_app.fair.enqueue_many([(log_dir, "big", n, 0.02) for n in range(big)])
    workers(cli, "-c", "10")
    await wait_for(lambda: len(runs(log_dir)) >= 20, 30, "the backlog being worked off")
    # When a small tenant enqueues 5 jobs after it
    await flow_app.fair.enqueue_many([(log_dir, "small", n, 0.02) for n in range(5)])
    await wait_for(
        lambda: sum(r.label.startswith("small:") for r in runs(log_dir)) == 5,
        30,
        "the small tenant's jobs",
    )
    # Then they all started before the big backlog was even 20% done
    done = runs(log_dir)
    last_small = max(r.start for r in done if r.label.startswith("small:"))
    big_before = sum(1 for r in done if r.label.startswith("big:") and r.start < last_small)
    assert big_before < big // 5, big_before


ENQUEUER = """
import asyncio, os, sys, time
from tests.e2e import flow_app

async def main() -> None:
    gate = sys.argv[1]
    print("ready", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.001)
    for _ in range(50):
        h = await flow_app.welcome.with_options(unique_key="welcome-ann").enqueue("ann")
        print(h.id, h.outcome.value, flush=True)
    await flow_app.app.aclose()

flow_app.app.configure(url=os.environ["CORQ_URL"], prefix=os.environ["CORQ_PREFIX"])
asyncio.run(main())
"""


async def test_a_unique_key_makes_one_job_under_concurrent_enqueues(
    cli: Cli, flow: corq.App, tmp_path: Path
) -> None:
    # Given 4 processes each enqueueing the same unique key 50 times, let go at once
    # (no worker runs: the job stays queued, so its key stays taken)
    gate = tmp_path / "go"
    procs = [
        subprocess.Popen(  # noqa: ASYNC220  # started at once, waited for below
            [sys.executable, "-c", ENQUEUER, str(gate)],
            cwd=ROOT,
            env=cli.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:  # each one imported and connected, waiting for the gate
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    gate.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    lines = [line.split() for out, _ in outputs for line in out.splitlines()]
    # Then exactly one job was created, and all 200 handles name it
    assert len(lines) == 200
    assert [outcome for _, outcome in lines].count("created") == 1
    assert {outcome for _, outcome in lines} == {"created", "existing"}
    assert len({job_id for job_id, _ in lines}) == 1
    [stats] = await flow.client().queue_stats(["default"])
    assert stats.ready == 1


async def test_a_job_not_started_by_its_deadline_expires(
    cli: Cli, flow: corq.App, tmp_path: Path
) -> None:
    # Given a task run one at a time, its only slot held by a first job
    gate = tmp_path / "open"
    first = await flow_app.single.enqueue(str(gate))
    workers(cli, count=1)
    await _wait_status(first, corq.JobStatus.RUNNING)
    # When a second one must start within 0.5 s and cannot
    late = await flow_app.single.with_options(expires=0.5).enqueue(str(gate))
    # Then it ends expired, and its result says so
    await _wait_status(late, corq.JobStatus.EXPIRED, timeout=20)
    with pytest.raises(corq.JobExpiredError):
        await late.result(timeout=5)
    gate.touch()
    assert await first.result(timeout=20) == "ran"
    assert (await late.info()).attempt == 0
    assert (await flow.client().flow_stats("default")).expired >= 1


async def _wait_status(
    handle: corq.JobHandle[object], status: corq.JobStatus, timeout: float = 20
) -> None:
    async def reached() -> bool:
        return await handle.status() is status

    await wait_for(reached, timeout, f"job {handle.id} {status}")


async def test_a_killed_workers_slots_come_back_only_when_its_jobs_are_reclaimed(
    cli: Cli, flow: corq.App, log_dir: str, tmp_path: Path
) -> None:
    # Given 6 jobs of a task limited to 3 at once, the first 3 held by a worker
    gate = tmp_path / "open"
    await flow_app.held.enqueue_many([(log_dir, n, str(gate)) for n in range(6)])
    [first] = workers(cli, count=1)
    await wait_for(lambda: len(runs(log_dir)) == 3, 30, "the first worker holding 3 jobs")
    # When that worker is killed holding them, and other workers start
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_ns = time.time_ns()
    gate.touch()
    workers(cli, count=WORKERS - 1)
    # Then all 6 jobs end, the 3 killed attempts run again
    done = await all_ran(log_dir, 6, "the 6 held jobs elsewhere")
    await wait_for(lambda: len(runs(log_dir)) == 9, 30, "every attempt noted")
    done = runs(log_dir)
    later = [r for r in done if r.pid != first.pid]
    assert sorted(r.label for r in later) == sorted(f"held:{n}" for n in range(6))
    # and nothing started before the dead worker's jobs could be reclaimed (its lease of
    # 1.5 s, renewed every 0.3 s, ran out at least 1.2 s after the kill)
    assert min(r.start for r in later) >= killed_ns + 1_000_000_000, "a slot came back early"
    # and the killed attempts (running until their reclaim) and the rest never exceeded 3
    assert most_at_once(later) <= flow_app.CONCURRENCY
