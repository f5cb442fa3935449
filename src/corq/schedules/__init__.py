"""Schedules at runtime: add, change, pause, inspect, backfill and run them from Python.

    await app.schedules.add("nightly-export", export, cron="0 2 * * *", tz="Europe/Berlin")
    await app.schedules.pause("nightly-export", reason="migration")
    info = await app.schedules.get("nightly-export")      # next_ticks, last run, counts

Everything is checked here, before the broker is asked (a bad cron, an unknown zone or
task, args that do not bind, a one-shot in the past, a taken name): the error says what to
change. Stored schedules are the broker's; code schedules (``@app.periodic``) belong to the
code, so they can be paused, resumed, backfilled and run now here, but changed or removed
only in the code. The scheduler leader fires the ticks (``corq.scheduler``); this module only
writes definitions and operator steps (backfill, run-now), which need no lease.

The parts: `api` (the `Schedules` class), `define` (definitions built and changed from
keywords, operator steps), `info` (what the calls return).
"""

from __future__ import annotations

from corq.schedules.api import ScheduleHost, Schedules
from corq.schedules.define import (
    MAX_BACKFILL_TICKS,
    UNSET,
    Unset,
    build_schedule,
    operator_step,
)
from corq.schedules.info import BackfillResult, RunInfo, ScheduleInfo, SkipInfo

__all__ = [
    "MAX_BACKFILL_TICKS",
    "UNSET",
    "BackfillResult",
    "RunInfo",
    "ScheduleHost",
    "ScheduleInfo",
    "Schedules",
    "SkipInfo",
    "Unset",
    "build_schedule",
    "operator_step",
]
