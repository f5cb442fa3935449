"""An app with one schedule, a cron every second, for the scheduler's end-to-end tests
(broker and prefix from CORQ_URL / CORQ_PREFIX); kept apart from sample_app, whose tests
count every job.

When CORQ_E2E_TICK_LOG names a file, each run of the task body appends its tick there, so
a test can count how often each tick ran.
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
async def beat() -> str:
    """Appends ``<tick ms> <job id> <attempt> <pid>`` to the tick log: one line per run."""
    job = corq.current_job()
    assert job.schedule == SCHEDULE
    assert job.tick is not None
    path = os.environ.get(TICK_LOG_ENV)
    if path:
        tick_ms = round(job.tick.timestamp() * 1000)
        # One short write in append mode: lines of concurrent runs never interleave.
        with open(path, "a") as log:  # noqa: ASYNC230  # a log line
            log.write(f"{tick_ms} {job.job_id} {job.attempt} {os.getpid()}\n")
    return f"{job.schedule} {job.tick}"
