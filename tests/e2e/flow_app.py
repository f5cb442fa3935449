"""Flow-control tasks for the end-to-end tests (tests/e2e/test_flow_control.py).

Every job notes when it started and ended in a file of its process under the directory it is
given (`time.time_ns`, one clock for all processes of the machine), so a test can check what
ran at once on all workers together. Its broker and prefix come from CORQ_URL / CORQ_PREFIX.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable

import corq

app = corq.App()

#: The limits the tests check.
CONCURRENCY = 3
KEY_CONCURRENCY = 2
RATE = 20


def _note(log_dir: str, event: str, label: str) -> None:
    """One line `<event> <label> <ns> <pid>` (a short O_APPEND write is not interleaved)."""
    with open(os.path.join(log_dir, f"flow-{os.getpid()}.log"), "a") as log:
        log.write(f"{event} {label} {time.time_ns()} {os.getpid()}\n")


async def _recorded(log_dir: str, label: str, work: Awaitable[object]) -> None:
    _note(log_dir, "start", label)
    await work
    _note(log_dir, "end", label)


async def _gate(path: str) -> None:
    while not os.path.exists(path):  # noqa: ASYNC110, ASYNC240  # another process makes it
        await asyncio.sleep(0.01)


@app.task(concurrency=CONCURRENCY)
async def limited(log_dir: str, n: int, seconds: float) -> None:
    await _recorded(log_dir, f"limited:{n}", asyncio.sleep(seconds))


@app.task(concurrency=CONCURRENCY)
async def held(log_dir: str, n: int, gate: str) -> None:
    """Holds its slot until the file `gate` exists, then a little longer."""
    await _recorded(log_dir, f"held:{n}", _held(gate))


async def _held(gate: str) -> None:
    await _gate(gate)
    await asyncio.sleep(0.05)


@app.task(key=lambda tenant, **_: tenant, key_concurrency=KEY_CONCURRENCY)
async def per_tenant(log_dir: str, tenant: str, n: int, seconds: float) -> None:
    await _recorded(log_dir, f"{tenant}:{n}", asyncio.sleep(seconds))


@app.task(key=lambda account, **_: account, key_concurrency=1)
async def in_order(log_dir: str, account: str, n: int) -> None:
    await _recorded(log_dir, f"{account}:{n}", asyncio.sleep(0.005))


@app.task(rate_limit=f"{RATE}/s")
async def rated(log_dir: str, n: int) -> None:
    await _recorded(log_dir, f"rated:{n}", asyncio.sleep(0))


@app.task(key=lambda tenant, **_: tenant)
async def fair(log_dir: str, tenant: str, n: int, seconds: float) -> None:
    await _recorded(log_dir, f"{tenant}:{n}", asyncio.sleep(seconds))


@app.task
async def weighted(log_dir: str, n: int) -> None:
    """Sent to each weighted queue; the label names the queue."""
    queue = corq.current_job().queue
    await _recorded(log_dir, f"{queue}:{n}", asyncio.sleep(0.01))


@app.task
async def welcome(user: str) -> str:
    return f"welcome {user}"


@app.task(concurrency=1)
async def single(gate: str) -> str:
    """One at a time; holds its slot until the file `gate` exists."""
    await _gate(gate)
    return "ran"


@app.task(concurrency=8)
async def paced(log_dir: str, n: int, seconds: float) -> None:
    """Limited to 8 at once in code; the runtime configuration test lowers it."""
    await _recorded(log_dir, f"paced:{n}", asyncio.sleep(seconds))
