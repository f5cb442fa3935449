"""Live inspection through the broker: a running worker answers with every asyncio task's
coroutine chain (naming the job it runs) and every thread's stack, and keeps running."""

from __future__ import annotations

import asyncio
import threading

import pytest

import corq
from corq.errors import WorkerNotAnsweringError
from corq.testing import run_worker


async def test_a_worker_answers_with_its_tasks_and_threads(app: corq.App) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    in_thread, thread_go = threading.Event(), threading.Event()

    async def deep_wait() -> None:
        await release.wait()

    @app.task
    async def waits_deep() -> str:
        started.set()
        await deep_wait()
        return "done"

    @app.task
    def blocks_in_a_thread() -> bool:
        in_thread.set()
        return thread_go.wait(30)

    async with run_worker(app) as worker:
        job = await waits_deep.enqueue()
        sync_job = await blocks_in_a_thread.enqueue()
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.to_thread(in_thread.wait, 10)

        stacks = await app.admin().inspect_stacks(worker.worker_id, timeout=5)

        assert stacks.worker_id == worker.worker_id
        (running,) = [t for t in stacks.tasks if t.job_id == job.id]
        assert running.queue == job.queue
        functions = [f.function for f in running.frames]
        assert functions.index("waits_deep") < functions.index("deep_wait")
        threads = {t.name: t for t in stacks.threads}
        assert "MainThread" in threads
        assert any("blocks_in_a_thread" in [f.function for f in t.frames] for t in stacks.threads)
        # and the worker went on: both jobs finish
        release.set()
        thread_go.set()
        assert await job.result(timeout=10) == "done"
        assert await sync_job.result(timeout=10) is True


async def test_a_worker_that_does_not_answer_is_a_clear_error(app: corq.App) -> None:
    with pytest.raises(WorkerNotAnsweringError, match=r"'nobody' did not answer within 0\.3s"):
        await app.admin().inspect_stacks("nobody", timeout=0.3)
    with pytest.raises(corq.ArgumentError):
        await app.admin().inspect_stacks("*")
