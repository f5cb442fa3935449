"""An app with one schedule for the scheduler end-to-end tests: a cron every second.

Broker and prefix come from CORQ_URL / CORQ_PREFIX. Each run of the task body appends its
tick to the file named by CORQ_E2E_TICK_LOG, so a test can count how often each tick ran.
"""

from __future__ import annotations

import os

import corq

app = corq.App()

#: The schedule's name; its ticks' job ids are ``every-second@<tick ms>``.
SCHEDULE = "every-second"
#: Where the task notes the ticks it ran (set in the worker's environment).
TICK_LOG_ENV = "CORQ_E2E_TICK_LOG"


@app.periodic(cron="* * * * * *", name=SCHEDULE, overlap="allow_all")
async def note_tick() -> None:
    """Appends ``<tick ms> <job id> <attempt> <pid>``: one line per run of the body."""
    job = corq.current_job()
    assert job.schedule == SCHEDULE
    assert job.tick is not None
    tick_ms = round(job.tick.timestamp() * 1000)
    line = f"{tick_ms} {job.job_id} {job.attempt} {os.getpid()}\n"
    # One short write in append mode: lines of concurrent runs never interleave.
    with open(os.environ[TICK_LOG_ENV], "a") as log:  # noqa: ASYNC230  # a log line
        log.write(line)
