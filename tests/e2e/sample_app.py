"""An app for the end-to-end tests; its broker and prefix come from CORQ_URL / CORQ_PREFIX."""

from __future__ import annotations

import asyncio
import os

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
