"""The task the cancellation bench runs in a `corq worker` process. Broker and prefix come
from CORQ_URL / CORQ_PREFIX; it tells the bench through files in the directory it gets."""

from __future__ import annotations

import asyncio
import os
import time

import corq

app = corq.App()


def _note(directory: str, name: str, text: str) -> None:
    tmp = os.path.join(directory, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(directory, name))


@app.task
async def hold(directory: str) -> None:
    """Runs until cancelled; notes when it started and when the cancel reached it
    (``time.perf_counter_ns``: one clock for every process of the machine)."""
    job_id = corq.current_job().job_id
    _note(directory, f"{job_id}.started", "1")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _note(directory, f"{job_id}.stopped", str(time.perf_counter_ns()))
        raise
