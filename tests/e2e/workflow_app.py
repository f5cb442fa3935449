"""An app for the end-to-end workflow tests; broker and prefix come from CORQ_URL /
CORQ_PREFIX. Each run of a task body is noted, one line in the file WF_RUNS names (O_APPEND:
whole lines, whichever process writes), so a test can count how often each job ran."""

from __future__ import annotations

import asyncio
import os

import corq

app = corq.App()


def note_run(what: str) -> None:
    path = os.environ.get("WF_RUNS")
    if path:
        job = corq.current_job()
        with open(path, "a") as runs:  # one short line, as a log handler would
            runs.write(f"{what} {job.job_id} {job.attempt} {os.getpid()}\n")


@app.task
async def gated(i: int, gate: str) -> int:
    """Runs until the file `gate` exists (the test decides when it may finish)."""
    note_run("gated")
    while not os.path.exists(gate):  # noqa: ASYNC110, ASYNC240  # another process makes it
        await asyncio.sleep(0.01)
    return i


@app.task
async def quick(i: int) -> int:
    note_run("quick")
    return i


@app.task
async def add_one(x: int) -> int:
    note_run("add_one")
    return x + 1


@app.task
async def tally(values: list[int]) -> dict[str, int]:
    """A fan-in callback: given every member's result, in order."""
    note_run("tally")
    return {"count": len(values), "sum": sum(values)}
