"""Cancelling running jobs across processes: two `corq worker` processes run an async, a
thread and a process job; the test (a third process) cancels them. Each stops on the
worker that runs it (the coroutine within 100 ms of the call, measured on the task's side),
ends cancelled, and never runs again. A worker whose control connection was cut, or that
never got the message, stops the job at its reconciliation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis

import corq
from tests.e2e import cancel_app
from tests.e2e.conftest import Cli, wait_for

pytestmark = pytest.mark.slow

WORKER_ENV = {"CORQ_RECONCILE_S": "1", "CORQ_CANCEL_GRACE_S": "2"}


@pytest.fixture
async def app(e2e_url: str, prefix: str) -> AsyncIterator[corq.App]:
    cancel_app.app.configure(url=e2e_url, prefix=prefix)
    yield cancel_app.app
    await cancel_app.app.aclose()
    cancel_app.app._clients.clear()


def two_workers(cli: Cli) -> None:
    for n in range(2):
        cli.spawn("worker", "tests.e2e.cancel_app:app", "--concurrency", "10",
                  log_name=f"worker{n}", **WORKER_ENV)  # fmt: skip


async def started(tmp_path: Path, job_id: str) -> int:
    """The pid of the process that runs the job, once it started."""
    path = tmp_path / f"{job_id}.started"
    await wait_for(path.exists, 60, f"job {job_id} started")
    return int(path.read_text())


async def ended_cancelled(app: corq.App, job_id: str) -> corq.Job:
    job = await app.client().get_job(job_id)
    assert job is not None
    assert job.status is corq.JobStatus.CANCELLED
    return job


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def test_running_jobs_are_stopped_on_the_worker_that_runs_them(
    cli: Cli, app: corq.App, tmp_path: Path
) -> None:
    two_workers(cli)
    d = str(tmp_path)
    handles = [
        await cancel_app.forever_async.enqueue(d),
        await cancel_app.forever_thread.enqueue(d),
        await cancel_app.forever_process.enqueue(d),
    ]
    pids = [await started(tmp_path, h.id) for h in handles]
    a, t, p = handles

    # The coroutine stops within 100 ms of the cancel call, seen from the task
    asked = time.time()
    assert await a.cancel() is True
    await wait_for((tmp_path / f"{a.id}.stopped").exists, 10, "the coroutine stopped")
    latency = float((tmp_path / f"{a.id}.stopped").read_text()) - asked
    assert latency < 0.1, f"{latency * 1000:.0f} ms"

    # The thread sees its flag and returns; the process job's child is killed
    assert await t.cancel() is True
    await wait_for((tmp_path / f"{t.id}.stopped").exists, 10, "the thread stopped")
    assert await p.cancel() is True
    await wait_for(lambda: gone(pids[2]), 10, "the process job's child killed")

    # Each ended cancelled after one attempt, and no worker runs it again
    for handle in handles:
        job = await ended_cancelled(app, handle.id)
        assert job.attempt == 1
    await wait_for(lambda: _nothing_left(app), 10, "nothing held, queued or retrying")
    for handle, pid in zip(handles, pids, strict=True):  # each ran once, where it started
        assert (tmp_path / f"{handle.id}.started").read_text() == str(pid)


async def _nothing_left(app: corq.App) -> bool:
    (stats,) = await app.client().queue_stats(["default"])
    return (stats.in_flight, stats.ready, stats.delayed) == (0, 0, 0)


async def test_a_worker_that_missed_the_message_stops_the_job_by_reconciling(
    cli: Cli, app: corq.App, tmp_path: Path, e2e_url: str
) -> None:
    two_workers(cli)
    d = str(tmp_path)
    job = await cancel_app.forever_async.enqueue(d)
    await started(tmp_path, job.id)
    if e2e_url.startswith("redis"):
        await _cut_control_connections(e2e_url)

    # The broker cancels the job, and no message is sent (or it cannot arrive)
    assert await app.client().backend.cancel_job(job.id, "default", None) is True

    await wait_for((tmp_path / f"{job.id}.stopped").exists, 15, "reconciliation stopped it")
    stopped = await ended_cancelled(app, job.id)
    assert stopped.attempt == 1


async def _cut_control_connections(url: str) -> None:
    """CLIENT KILL every subscribed connection: the workers' control listeners."""
    admin = aioredis.Redis.from_url(url)
    try:
        for client in await admin.client_list():
            if int(client.get("sub", 0)) > 0:
                await admin.client_kill_filter(_id=client["id"])
    finally:
        await admin.aclose()
