"""An app for the end-to-end tests; its broker and prefix come from CORQ_URL / CORQ_PREFIX."""

from __future__ import annotations

import asyncio
import os
import time

import corq

app = corq.App()


@app.task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task
def crash() -> None:
    """Kills the worker process running it (a poison job)."""
    os._exit(3)


@app.task
async def gated(gate: str) -> str:
    """Runs until the file `gate` exists: the test decides when it may finish."""
    while not os.path.exists(gate):  # noqa: ASYNC110, ASYNC240  # another process makes it
        await asyncio.sleep(0.01)
    return "opened"


@app.task
async def logged_nap(seconds: float, log_dir: str) -> float:
    """Sleeps, noting when each attempt started and ended (in a file of this process), so a
    test can check that no two attempts of one job overlapped."""
    job = corq.current_job()
    path = os.path.join(log_dir, f"attempts-{os.getpid()}.log")
    with open(path, "a") as log:  # noqa: ASYNC230  # one short line, as a log handler would
        log.write(f"{job.job_id} {job.attempt} start {time.time():.6f} {os.getpid()}\n")
    await asyncio.sleep(seconds)
    with open(path, "a") as log:  # noqa: ASYNC230  # one short line, as a log handler would
        log.write(f"{job.job_id} {job.attempt} end {time.time():.6f} {os.getpid()}\n")
    return seconds
