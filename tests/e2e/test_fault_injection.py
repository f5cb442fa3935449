"""Fault injection: worker process trees SIGKILLed at random while they run jobs.

4 worker processes x 8 concurrent jobs under one supervisor, 2,000 jobs of 0.1-1.5 s, 30
SIGKILLs of whole worker process trees (the worker and every child it has: sandboxes and
process pools) aimed at workers running jobs, the supervisor restarting each. With default
settings: every job completes, none is dead-lettered (no innocent job is declared poison),
no two attempts of one job overlap, and the queue drains soon after the last kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pytest

import corq
from tests.e2e.conftest import Cli, wait_for
from tests.e2e.sample_app import logged_nap

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JOBS = 2_000
KILLS = 30
#: Default lease, heartbeat and reclaim (the Cli fixture shortens them for other tests).
DEFAULTS = {"CORQ_LEASE_S": "10", "CORQ_HEARTBEAT_S": "2", "CORQ_RECLAIM_S": "2"}


def _worker_children(supervisor: psutil.Process) -> list[psutil.Process]:
    try:
        return [c for c in supervisor.children() if c.is_running()]
    except psutil.NoSuchProcess:
        return []


def _kill_tree(worker: psutil.Process) -> list[int]:
    """SIGKILL a worker and all its descendants (sandboxes, process pool) at once; returns
    their pids (a job in a sandbox logs the sandbox's pid)."""
    try:
        tree = [worker, *worker.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [worker.pid]
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    return [proc.pid for proc in tree]


def _lines(log_dir: Path) -> list[list[str]]:
    """Every complete attempt line (a line being written right now is skipped)."""
    out = []
    for path in log_dir.glob("attempts-*.log"):
        out += [ln.split() for ln in path.read_text().splitlines() if len(ln.split()) == 5]
    return out


def _busy_pids(log_dir: Path) -> set[int]:
    """Pids with an attempt started and not ended (workers running jobs now)."""
    open_attempts: dict[tuple[str, str], int] = {}
    for job_id, attempt, what, _, pid in _lines(log_dir):
        if what == "start":
            open_attempts[(job_id, attempt)] = int(pid)
        else:
            open_attempts.pop((job_id, attempt), None)
    return set(open_attempts.values())


def _overlaps(log_dir: Path, killed_at: dict[int, float]) -> list[str]:
    """Attempts of one job whose runs overlapped; a killed attempt ran until its kill."""
    runs: dict[str, dict[str, list[float]]] = defaultdict(dict)  # job -> attempt -> span
    pids: dict[tuple[str, str], int] = {}
    for job_id, attempt, what, at, pid in _lines(log_dir):
        span = runs[job_id].setdefault(attempt, [float(at), float("nan")])
        pids[(job_id, attempt)] = int(pid)
        if what == "start":
            span[0] = float(at)
        else:
            span[1] = float(at)
    bad = []
    for job_id, attempts in runs.items():
        spans = []
        for attempt, (start, end) in attempts.items():
            if end != end:  # no end line: it ran until its process was killed
                end = killed_at.get(pids[(job_id, attempt)], float("inf"))
            spans.append((start, end, attempt))
        spans.sort()
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            if start < end:
                detail = sorted((k, v, pids[(job_id, k)]) for k, v in attempts.items())
                bad.append(f"job {job_id}: attempt {b} started before attempt {a} ended: {detail}")
    return bad


async def test_random_sigkills_lose_nothing_and_blame_no_one(
    cli: Cli, client_app: corq.App, tmp_path: Path
) -> None:
    log_dir = tmp_path / "attempts"
    log_dir.mkdir()
    rng = random.Random(6)
    # Given 2,000 jobs of 0.1-1.5 s and 4 supervised worker processes x 8
    handles = await logged_nap.enqueue_many(
        [(round(rng.uniform(0.1, 1.5), 3), str(log_dir)) for _ in range(JOBS)]
    )
    supervisor = psutil.Process(
        cli.worker("--processes", "4", "--concurrency", "8", **DEFAULTS).pid
    )
    await wait_for(lambda: len(_worker_children(supervisor)) == 4, 30, "four workers")

    async def done_count() -> int:
        [stats] = await client_app.client().queue_stats(["default"])
        return JOBS - stats.ready - stats.delayed - stats.in_flight

    # When 30 worker trees are killed at random moments spread over the run (the last one
    # with a tenth of the work left), each aimed at a worker running jobs
    killed_at: dict[int, float] = {}
    kills: list[float] = []
    for n in range(KILLS):
        due = JOBS * (0.05 + 0.85 * n / (KILLS - 1))
        while await done_count() < due:  # noqa: ASYNC110  # progress lives in the broker
            await asyncio.sleep(rng.uniform(0.05, 0.3))
        while True:
            busy = _busy_pids(log_dir)
            targets = [c for c in _worker_children(supervisor) if c.pid in busy]
            if targets:
                break
            await asyncio.sleep(0.05)
        pids = _kill_tree(rng.choice(targets))
        kills.append(time.time())
        killed_at.update(dict.fromkeys(pids, kills[-1]))
        assert JOBS - await done_count() > 0, "the jobs ran out before the kills did"
    last_kill = kills[-1]

    # Then every job completes, none dead, no attempts of one job overlapping
    async def all_done() -> bool:
        [stats] = await client_app.client().queue_stats(["default"])
        return stats.ready + stats.delayed + stats.in_flight == 0

    await wait_for(all_done, 180, "every job to finish")
    drain_s = time.time() - last_kill
    jobs = await asyncio.gather(*(h.info() for h in handles))
    statuses = {j.status for j in jobs}
    deaths = sum(j.deaths for j in jobs)
    print(
        f"\nfault injection on {cli.url.split(':')[0]}: {len(kills)} kills, {deaths} deaths over "
        f"{JOBS} jobs, drained {drain_s:.1f} s after the last kill (goal <= 12 s)"
    )
    assert statuses == {corq.JobStatus.SUCCEEDED}, [j for j in jobs if j.status != "succeeded"]
    [stats] = await client_app.client().queue_stats(["default"])
    assert stats.dead == 0
    overlaps = _overlaps(log_dir, killed_at)
    assert overlaps == [], "\n".join(overlaps)
    assert drain_s < 30, f"drained {drain_s:.1f} s after the last kill"
