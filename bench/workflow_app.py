"""Tasks the workflow bench runs. Broker and prefix come from CORQ_URL / CORQ_PREFIX.

The callbacks stamp when their body starts (``perf_counter_ns``: CLOCK_MONOTONIC, shared
by the processes of one machine) and note each run in the file BENCH_RUNS names, so the
bench can check that each ran exactly once.
"""

from __future__ import annotations

import os
import time
from typing import Any

import corq

app = corq.App()


def note_run(what: str) -> None:
    """One line per run of a callback (O_APPEND: whole lines, whatever runs at once)."""
    path = os.environ.get("BENCH_RUNS")
    if path:
        with open(path, "a") as runs:
            runs.write(f"{what} {os.getpid()}\n")


@app.task
async def member(i: int) -> int:
    """A fan-out member: nothing to do, so the figure is corq's own cost."""
    return i


@app.task
async def fan_in(values: list[int]) -> dict[str, Any]:
    """The chord's callback: given every member's result, in order."""
    started_ns = time.perf_counter_ns()
    note_run("fan_in")
    return {"started_ns": started_ns, "count": len(values), "sum": sum(values)}


@app.task
async def chain_start() -> int:
    """A chain's first link: when it started, handed down the chain."""
    return time.perf_counter_ns()


@app.task
async def chain_step(started_ns: int) -> int:
    """A middle link: passes its input on."""
    return started_ns


@app.task
async def chain_end(started_ns: int) -> dict[str, int]:
    """The last link: when the first one started, and when this one did."""
    note_run("chain_end")
    return {"first_ns": started_ns, "last_ns": time.perf_counter_ns()}


@app.task
async def relay(first_ns: int, left: int, end_id: str) -> dict[str, int] | None:
    """The same hand-off as a chain's without a workflow: each job enqueues the next (the
    last one under `end_id`), the reference a chain step is compared with."""
    now = time.perf_counter_ns()
    first_ns = first_ns or now
    if left == 0:
        return {"first_ns": first_ns, "last_ns": now}
    spec = relay.s(first_ns, left - 1, end_id)
    await (spec.with_options(job_id=end_id) if left == 1 else spec).enqueue()
    return None
