"""`corq top`: a live monitor of queues, workers and running jobs, redrawn every second.

Each frame is two broker reads (queue counts, workers' facts); rates are the difference of
the workers' outcome counts between two frames. On a terminal the frame is redrawn in place
on the alternate screen (rich Live), which works over SSH; piped, frames are printed one
after another. A broker outage is shown in the frame (with the last figures read) and the
next frame tries again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from corq import App, BrokerDataError, BrokerError
from corq.admin.workers import RunningJobView, format_ms, running_jobs
from corq.cli.common import app_option, make_app, run, url_option
from corq.cli.text import plain
from corq.cli.workers import console, format_bytes, in_flight, running_table, state_text
from corq.types import QueueName, WorkerId
from corq.worker_info import WorkerInfo

if TYPE_CHECKING:
    from corq.backends.base import QueueStats

#: Running jobs shown (the longest); the rest are counted in one line.
RUNNING_ROWS = 15


@dataclass
class Frame:
    """What one refresh read."""

    #: When it was read (time.monotonic, for rates) and by the app's clock (for ages).
    at_s: float
    now_ms: int
    stats: list[QueueStats] = field(default_factory=list)
    workers: list[WorkerInfo] = field(default_factory=list)
    running: list[RunningJobView] = field(default_factory=list)
    #: Why this refresh could not read the broker (the figures are the last ones read).
    error: str | None = None


async def read_frame(app: App) -> Frame:
    """Queue counts and workers' facts now (raises BrokerError on an outage)."""
    admin = app.admin()
    stats = await app.client().queue_stats()
    infos = await admin.workers()
    now_ms = app.clock.now_ms()
    return Frame(time.monotonic(), now_ms, stats, infos, running_jobs(infos, now_ms))


@dataclass(frozen=True, slots=True)
class Rates:
    """Outcomes per second between two frames."""

    #: Queue -> (succeeded/s, failed/s).
    queues: dict[QueueName, tuple[float, float]]
    #: Worker -> jobs ended per second.
    workers: dict[WorkerId, float]


def rates(previous: Frame | None, frame: Frame) -> Rates | None:
    """From the workers seen in both frames (a new worker counts from its second frame;
    counts that went down, a restarted id, count as 0)."""
    if previous is None or frame.error is not None or frame.at_s <= previous.at_s:
        return None
    span = frame.at_s - previous.at_s
    before = {w.worker_id: w for w in previous.workers}
    queues: dict[QueueName, list[float]] = {}
    per_worker: dict[WorkerId, float] = {}
    for worker in frame.workers:
        old = before.get(worker.worker_id)
        if old is None:
            continue
        ended = 0
        for queue, counts in worker.queue_counts.items():
            was = old.queue_counts.get(queue, {})
            total = queues.setdefault(queue, [0.0, 0.0])
            for i, kind in enumerate(("succeeded", "failed")):
                delta = max(0, counts.get(kind, 0) - was.get(kind, 0))
                total[i] += delta
                ended += delta
        per_worker[worker.worker_id] = ended / span
    return Rates({q: (ok / span, bad / span) for q, (ok, bad) in queues.items()}, per_worker)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def queues_table(frame: Frame, speed: Rates | None) -> Table:
    table = Table(title="queues", title_justify="left")
    table.add_column("queue")
    for name in ("ready", "delayed", "waiting", "running", "dead", "ok/s", "failed/s"):
        table.add_column(name, justify="right")
    table.add_column("oldest ready", justify="right")
    table.add_column("workers", justify="right")
    for s in sorted(frame.stats, key=lambda s: (-(s.ready + s.in_flight), s.queue)):
        ok, bad = (None, None) if speed is None else speed.queues.get(s.queue, (0.0, 0.0))
        oldest = (
            "-"
            if s.oldest_ready_ms is None
            else format_ms(max(0, frame.now_ms - s.oldest_ready_ms))
        )
        label = plain(s.queue, one_line=True)
        if s.paused:
            label.append(" (paused)", style="yellow")
        table.add_row(
            label,
            f"{s.ready:,}",
            f"{s.delayed:,}",
            f"{s.waiting:,}",
            f"{s.in_flight:,}",
            Text(f"{s.dead:,}", style="red" if s.dead else ""),
            _rate(ok),
            Text(_rate(bad), style="red" if bad else ""),
            oldest,
            str(s.workers),
        )
    return table


def workers_table(frame: Frame, speed: Rates | None) -> Table:
    table = Table(title="workers", title_justify="left")
    table.add_column("worker")
    table.add_column("host")
    for name in ("load", "jobs/s", "cpu", "rss", "lag"):
        table.add_column(name, justify="right")
    table.add_column("state")
    for w in frame.workers:
        load = in_flight(w) / w.concurrency if w.concurrency > 0 else 0.0
        per_s = None if speed is None else speed.workers.get(w.worker_id)
        table.add_row(
            plain(w.worker_id, one_line=True),
            plain(w.host, one_line=True),
            f"{in_flight(w)}/{w.concurrency} {load:.0%}",
            _rate(per_s),
            f"{w.cpu_percent:.0f}%",
            format_bytes(w.rss_bytes),
            Text(format_ms(w.loop_lag_ms), style="red" if w.loop_lag_ms >= 100 else ""),
            state_text(w.state),
        )
    return table


def render(frame: Frame, speed: Rates | None, url: str, *, retrying: bool = True) -> RenderableType:
    """One screen: a header line, then queues, workers and the longest running jobs."""
    header = Text.assemble(
        ("corq top", "bold"),
        "  ",
        plain(url, one_line=True),
        f"  {time.strftime('%H:%M:%S')}",
        f"  {len(frame.workers)} worker(s), {len(frame.running)} running",
    )
    parts: list[RenderableType] = [header]
    if frame.error is not None:
        again = " (retrying)" if retrying else ""
        parts.append(Text(f"broker unreachable: {frame.error}{again}", style="bold red"))
    parts += [queues_table(frame, speed), workers_table(frame, speed)]
    shown = frame.running[:RUNNING_ROWS]
    parts.append(running_table(shown, title="running jobs (longest first)"))
    if len(frame.running) > len(shown):
        parts.append(Text(f"... and {len(frame.running) - len(shown)} more running"))
    return Group(*parts)


class Monitor:
    """Reads frames, keeping the last good one to show through an outage."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.last: Frame | None = None

    async def next(self) -> tuple[Frame, Rates | None]:
        try:
            frame = await read_frame(self.app)
        except (BrokerError, BrokerDataError) as exc:
            last = self.last or Frame(time.monotonic(), self.app.clock.now_ms())
            return Frame(
                last.at_s,
                last.now_ms,
                last.stats,
                last.workers,
                last.running,
                str(exc) or type(exc).__name__,
            ), None
        speed, self.last = rates(self.last, frame), frame
        return frame, speed


async def _watch(app: App, interval_s: float, once: bool) -> bool:
    """Show frames until interrupted (one with `once`); False when the last read failed."""
    monitor = Monitor(app)
    url = app.settings.url
    if once:
        frame, speed = await monitor.next()
        console.print(render(frame, speed, url, retrying=False))
        return frame.error is None
    if not console.is_terminal:  # piped: frames one after another
        while True:
            frame, speed = await monitor.next()
            console.print(render(frame, speed, url))
            console.rule()
            await asyncio.sleep(interval_s)
    frame, speed = await monitor.next()
    with Live(render(frame, speed, url), console=console, screen=True, auto_refresh=False) as live:
        while True:
            await asyncio.sleep(interval_s)
            frame, speed = await monitor.next()
            live.update(render(frame, speed, url), refresh=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option("--once", is_flag=True, help="Print one frame and exit (1 if the broker is down).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1, max=3600),
    default=1.0,
    show_default=True,
    metavar="S",
    help="Seconds between refreshes.",
)
@app_option
@url_option
def top(once: bool, interval: float, app_path: str | None, url: str | None) -> None:
    """A live monitor: queues (depth by state, rates, oldest ready job), workers (load, CPU,
    memory, lag) and running jobs (stuck ones flagged). Ctrl-C quits."""
    app = make_app(app_path, url)
    for quit_signal in (signal.SIGTERM, signal.SIGHUP):  # a closed SSH session: leave the
        signal.signal(quit_signal, _interrupt)  # alternate screen as Ctrl-C does
    try:
        ok = run(app, lambda: _watch(app, interval, once))
    except KeyboardInterrupt:
        return
    if not ok:
        raise SystemExit(1)
