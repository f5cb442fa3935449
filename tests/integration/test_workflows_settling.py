"""The worker's settling part on both brokers: ends a dead worker left unsettled are
replayed, an outage is waited out and logged once, and burst mode waits for settles."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

import corq
from corq.backends.base import Completion, WorkerLease
from corq.worker.fetch import Admission
from corq.worker.settling import Settler
from tests.conftest import RedisServer, free_port
from tests.waiting import until


async def _end_first_link_without_settling(app: corq.App) -> corq.WorkflowHandle[Any]:
    """A chain a → b whose a is claimed and completed straight through the broker, as a
    worker that died right after recording it would have left it."""

    @app.task
    async def a() -> int:
        return 1

    @app.task
    async def b(x: int) -> int:
        return x + 1

    wf = await corq.chain(a.s(), b.then()).enqueue()
    backend = app.client().backend
    lease = WorkerLease(worker_id="gone", queues=("default",), lease_ms=60_000)
    await backend.register_worker(lease, None)
    claimed = (await backend.claim_jobs("default", "gone", 1, 60_000, None)).jobs
    assert [job.task for job in claimed] == ["a"]
    done = Completion(
        job_id=claimed[0].id,
        queue="default",
        fence=claimed[0].fence,
        result=app.serializer.dumps(1),
        finished_at_ms=app.clock.now_ms(),
    )
    assert await backend.complete_jobs("gone", [done], 60_000) == [True]
    return wf


async def _second_state(app: corq.App, wf: corq.WorkflowHandle[Any]) -> corq.JobStatus | None:
    return (await wf.status()).jobs[1].state


async def test_an_end_left_unsettled_is_replayed(app: corq.App) -> None:
    # Given an end recorded by a worker that died before settling it,
    wf = await _end_first_link_without_settling(app)
    if app.settings.url.startswith("redis"):  # (SQLite settles in the end's own step)
        assert await _second_state(app, wf) is corq.JobStatus.WAITING
    # When another worker's settler replays the queue (no age threshold here),
    settler = Settler(app.client().backend, app.clock, ["default"], replay_ms=0)
    await settler.replay()
    # Then the child is released (SQLite released it in the end's own step already).
    assert await _second_state(app, wf) is corq.JobStatus.QUEUED


async def test_a_noted_queue_is_settled_through_an_outage_logged_once(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an unsettled end on a private Redis (stopped and started by the test),
    server = RedisServer(tmp_path / "redis", port=free_port())
    server.start()
    app = corq.App(server.url, prefix=prefix, socket_timeout_s=0.3)
    settler = Settler(app.client().backend, app.clock, ["default"], interval_s=3600)
    runs = asyncio.create_task(settler.run())
    caplog.set_level(logging.INFO, logger="corq.worker.settling")
    try:
        wf = await _end_first_link_without_settling(app)
        # When the broker goes away just as the end is noted,
        server.stop()
        settler.note("default")
        await until(lambda: "settling workflows failed" in caplog.text, what="the outage logged")
        # Then the settler keeps trying, and settles once the broker is back,
        server.start()
        await until(
            lambda: _second_state_is(app, wf, corq.JobStatus.QUEUED), what="the child released"
        )
        await until(lambda: "settling workflows works again" in caplog.text, what="the note")
    finally:
        runs.cancel()
        await asyncio.gather(runs, return_exceptions=True)
        await app.aclose()
        server.stop()
    # having said so once.
    assert caplog.text.count("settling workflows failed") == 1


async def _second_state_is(
    app: corq.App, wf: corq.WorkflowHandle[Any], state: corq.JobStatus
) -> bool:
    return await _second_state(app, wf) is state


def test_burst_mode_waits_for_outcomes_and_settles_before_stopping() -> None:
    admission = Admission(["q"], concurrency=2, sandboxes=1, burst=True)
    # A job's outcome is still to be recorded: an empty queue does not end the burst,
    admission.pending(+1)
    assert not admission.queue_empty("q")
    # nor does a settle still to come once it is recorded,
    admission.pending(+1)
    admission.pending(-1)
    assert not admission.queue_empty("q")
    # but once both are done, and the queue is seen empty again, it does.
    admission.pending(-1)
    assert admission.queue_empty("q")
