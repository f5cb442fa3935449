"""Tasks the cancellation end-to-end tests run in `corq worker` processes; they talk to
the test through files in a directory it gives (``<job id>.started`` with the worker's
pid, ``<job id>.stopped`` with the wall time they saw the cancel)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import corq

app = corq.App()


def _note(directory: str, name: str, text: str) -> None:
    path = Path(directory) / name
    path.with_suffix(".tmp").write_text(text)
    path.with_suffix(".tmp").rename(path)  # the test never reads half a file


@app.task(retries=3)
async def forever_async(directory: str) -> None:
    job_id = corq.current_job().job_id
    _note(directory, f"{job_id}.started", str(os.getpid()))
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _note(directory, f"{job_id}.stopped", repr(time.time()))
        raise


@app.task(retries=3)
def forever_thread(directory: str) -> None:
    job_id = corq.current_job().job_id
    _note(directory, f"{job_id}.started", str(os.getpid()))
    try:
        while True:
            corq.current_job().check_cancelled()
            time.sleep(0.005)
    except corq.JobCancelledError:
        _note(directory, f"{job_id}.stopped", repr(time.time()))
        raise


@app.task(retries=3, process=True)
def forever_process(directory: str) -> None:
    job_id = corq.current_job().job_id
    _note(directory, f"{job_id}.started", str(os.getpid()))
    time.sleep(3600)
