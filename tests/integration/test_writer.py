"""The outcome writer: an outcome the broker refuses costs only itself."""

from __future__ import annotations

import asyncio

import corq
from corq.backends.base import Failure, WorkerLease
from corq.job import JobStatus
from corq.worker.outcomes import Outcome
from corq.worker.writer import OutcomeWriter, Pending


async def test_a_refused_outcome_is_split_out_and_the_rest_are_recorded(app: corq.App) -> None:
    @app.task
    async def echo(x: int) -> int:
        return x

    handles = await echo.enqueue_many([(n,) for n in range(3)])
    backend = app.client().backend
    lease = WorkerLease(worker_id="w", queues=["default"], lease_ms=30_000)
    await backend.register_worker(lease, None)
    claimed = (await backend.claim_jobs("default", "w", 3, 30_000, None)).jobs
    assert len(claimed) == 3
    settled: list[tuple[str, bool]] = []

    def on_settled(holder: str, outcome: Outcome, ok: bool) -> None:
        settled.append((outcome.job_id, ok))

    def failure(job_id: str, fence: int, error: str) -> Failure:
        return Failure(
            job_id=job_id,
            queue="default",
            fence=fence,
            error=error,
            traceback=None,
            retry_at_ms=None,
            finished_at_ms=app.clock.now_ms(),
        )

    # Given three failures in one batch, the middle one holding text no broker can store
    # (a lone surrogate: the runner never builds such an error, a bug could)
    outcomes: asyncio.Queue[Pending | None] = asyncio.Queue()
    for n, job in enumerate(claimed):
        error = "ValueError: caf\udce9" if n == 1 else f"ValueError: {n}"
        outcomes.put_nowait(("w", failure(job.id, job.fence, error)))
    outcomes.put_nowait(None)
    # When the writer writes them
    await OutcomeWriter(backend, 60, on_settled).run(outcomes)
    # Then the two others are recorded as they were, and the refused one as a dead letter
    # with a safe error: nothing stays running
    records = {j.id: await backend.get_job(j.id, "default") for j in claimed}
    for n, job in enumerate(claimed):
        record = records[job.id]
        assert record is not None
        assert record.status == JobStatus.DEAD
        if n == 1:
            assert record.error is not None
            assert record.error.startswith("OutcomeNotStoredError: the broker refused")
        else:
            assert record.error == f"ValueError: {n}"
    assert sorted(settled) == sorted((j.id, True) for j in claimed)
    assert {h.id for h in handles} == {j.id for j in claimed}
