"""An app with a schedule, for the scheduler's command-line tests (broker and prefix from
CORQ_URL / CORQ_PREFIX); kept apart from sample_app, whose tests count every job."""

from __future__ import annotations

import corq

app = corq.App()


@app.periodic(cron="* * * * * *", name="every-second")
async def beat() -> str:
    job = corq.current_job()
    return f"{job.schedule} {job.tick}"
