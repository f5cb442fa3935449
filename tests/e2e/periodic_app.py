"""An app with a code schedule, for `corq schedule list --app` (its broker comes from
CORQ_URL / CORQ_PREFIX)."""

from __future__ import annotations

import corq

app = corq.App()


@app.periodic(cron="0 9 * * 1-5", tz="America/New_York", name="weekday-report")
async def report() -> None:
    """Declared in code: listed before any scheduler has stored it."""
