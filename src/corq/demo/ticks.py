"""The demo's schedule: added when the demo starts, followed while the worker fires its ticks,
paused at the end with its history left in the broker for `corq schedule show`.

The demo's worker runs a scheduler like every worker does; alone, it leads, and fires
each tick of the schedule once.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta

from rich.console import Console

import corq
from corq.demo import tasks

#: The schedule's name (a tick's job id is ``demo-tick@<tick in ms>``).
SCHEDULE = "demo-tick"
#: Its interval.
EVERY = timedelta(seconds=1)
#: Ticks the demo waits for: two whole seconds, so the demo stays short.
TICKS = 2
#: Pausing it at the end takes at most this long.
STOP_TIMEOUT_S = 5.0


@dataclass(kw_only=True)
class Ticks:
    """The schedule as the demo follows it."""

    app: corq.App
    #: Its runs, oldest first, once read.
    runs: list[corq.RunInfo] = field(default_factory=list)
    paused: bool = False

    async def start(self) -> None:
        """Add the schedule (a previous demo's on the same broker is replaced)."""
        with contextlib.suppress(corq.ScheduleNotFoundError):
            await self.app.schedules.remove(SCHEDULE)
        await self.app.schedules.add(SCHEDULE, tasks.tick, every=EVERY, origin="corq demo")

    async def refresh(self) -> None:
        """Read its runs; once the ticks the demo waits for have fired, pause it, so that no
        more fire while their jobs finish."""
        runs, _ = await self.app.schedules.history(SCHEDULE, limit=TICKS * 5)
        self.runs = list(reversed(runs))
        if len(self.runs) >= TICKS and not self.paused:
            await self.pause()

    async def pause(self) -> None:
        """No more ticks; its history stays in the broker to be looked at."""
        await self.app.schedules.pause(SCHEDULE, reason="the demo has seen its ticks")
        self.paused = True

    @property
    def done(self) -> int:
        """Ticks whose job has succeeded (at most TICKS are counted)."""
        return min(TICKS, sum(1 for r in self.runs if r.state is corq.JobStatus.SUCCEEDED))

    def status_text(self) -> str:
        if self.done == TICKS:
            return "[green]done[/green]"
        return f"{len(self.runs)} fired" if self.runs else "waiting for the next whole second"

    async def stop(self) -> None:
        """Pause it if the demo ends early (a timeout, an error), so it fires no more."""
        if not self.paused:
            with contextlib.suppress(corq.CorqError, TimeoutError):
                await asyncio.wait_for(self.pause(), STOP_TIMEOUT_S)

    def summarize(self, console: Console) -> None:
        """What the schedule did, from its run history in the broker."""
        fired = [r for r in self.runs if r.kind.value == "tick"]
        ids = {r.job_id for r in fired}
        console.print(
            f"Schedule [bold]{SCHEDULE}[/bold] (every {EVERY.total_seconds():g}s) fired "
            f"{len(fired)} ticks, one job each ({len(ids)} job ids), and was paused:",
            highlight=False,
        )
        for run in fired:  # the ticks the demo waited for, and any that fired meanwhile
            state = "record expired" if run.state is None else str(run.state)
            late = "" if run.lateness is None else f", enqueued {_ms(run.lateness)} after its tick"
            console.print(
                f"  tick {run.tick:%H:%M:%S %Z} → job {run.job_id} {state}{late}", highlight=False
            )


def _ms(delta: timedelta) -> str:
    return f"{delta.total_seconds() * 1000:.0f} ms"
