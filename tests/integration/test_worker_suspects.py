"""Suspects run in sandboxes: a crash there is the job's own, a worker's death is not."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

import corq
from corq.backends import open_backend
from corq.backends.base import WorkerLease
from corq.testing import run_worker

LEASE_MS = 10_000


def pid_of_runner() -> int:
    """Module level, so a sandbox child finds it by its module path."""
    return os.getpid()


def dies() -> None:
    os._exit(5)


async def _make_suspect(
    url: str, prefix: str, clock: corq.FakeClock, handle: corq.JobHandle[Any]
) -> None:
    """Two workers die holding the job (by the broker's books): it becomes a suspect."""
    other = open_backend(url, prefix=prefix)
    try:
        for n in range(2):
            lease = WorkerLease(worker_id=f"gone{n}", queues=[handle.queue], lease_ms=LEASE_MS)
            await other.register_worker(lease, clock.now_ms())
            batch = await other.claim_jobs(handle.queue, f"gone{n}", 100, LEASE_MS, clock.now_ms())
            assert handle.id in [j.id for j in batch.jobs]
            clock.advance(LEASE_MS / 1000 + 1)
            await other.reclaim_stalled_jobs(handle.queue, clock.now_ms(), 3)
    finally:
        await other.close()
    record = await handle.info()
    assert (record.status, record.deaths) == (corq.JobStatus.QUEUED, 2)


async def test_a_suspect_runs_in_a_sandbox_beside_ordinary_jobs(
    fake_app: tuple[corq.App, corq.FakeClock], broker_url: str, prefix: str
) -> None:
    app, clock = fake_app
    where = app.task(name="where")(pid_of_runner)
    gate = asyncio.Event()

    @app.task(queue="other")
    async def blocks() -> str:
        await gate.wait()
        return "done"

    # Given a suspect, and a worker on two queues already running an ordinary job
    suspect = await where.enqueue()
    await _make_suspect(broker_url, prefix, clock, suspect)
    async with run_worker(app, queues=["other", "default"]) as worker:
        ordinary = await blocks.enqueue()
        while worker.running_count == 0:  # noqa: ASYNC110  # no event for "a job started"
            await asyncio.sleep(0.01)
        # Then the suspect runs meanwhile, in a child process, not alone and not in the worker
        ran_in = await suspect.result(timeout=30)
        assert ran_in != os.getpid()
        gate.set()
        assert await ordinary.result(timeout=10) == "done"
    record = await suspect.info()
    assert (record.status, record.deaths) == (corq.JobStatus.SUCCEEDED, 2)


async def test_a_suspect_that_kills_its_sandbox_is_a_poison_job(
    fake_app: tuple[corq.App, corq.FakeClock], broker_url: str, prefix: str
) -> None:
    app, clock = fake_app
    crasher = app.task(name="dies")(dies)
    bystander = app.task(name="where")(pid_of_runner)

    # Given two suspects that shared two dead workers: one is poison, one innocent
    poison = await crasher.enqueue()
    innocent = await bystander.enqueue()
    await _make_suspect(broker_url, prefix, clock, poison)
    async with run_worker(app):
        # Then the innocent one succeeds and the poison one is dead, caught in its sandbox
        assert await innocent.result(timeout=30) != os.getpid()
        with pytest.raises(corq.JobFailedError, match="poison job: its worker died 3 times"):
            await poison.result(timeout=30)
    record = await poison.info()
    assert (record.status, record.deaths, record.failures) == (corq.JobStatus.DEAD, 3, 0)
    assert (await innocent.info()).status == corq.JobStatus.SUCCEEDED
