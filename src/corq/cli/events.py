"""`corq events`: the lifecycle events log, one line per event (or JSON lines); `--follow`
shows them as they come until ctrl-C, across broker outages."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence

import click

from corq.cli.common import app_option, make_app, run, url_option
from corq.cli.text import clean, when
from corq.events import Attempt, Event

#: Longest detail shown on one line.
DETAIL_CHARS = 120


def event_line(event: Event) -> str:
    """One event as a line of text (broker text made safe to print)."""
    parts = [
        when(event.at_ms),
        f"{event.kind.value:<15}",
        clean(event.queue, one_line=True),
        clean(event.job_id, one_line=True),
        clean(event.task, one_line=True),
        f"attempt {event.attempt}",
    ]
    if event.worker_id:
        parts.append(f"worker {clean(event.worker_id, one_line=True)}")
    if event.detail:
        detail = clean(event.detail, one_line=True)
        parts.append(detail if len(detail) <= DETAIL_CHARS else detail[:DETAIL_CHARS] + "…")
    return "  ".join(parts)


def event_json(event: Event) -> str:
    return json.dumps(dataclasses.asdict(event), default=str)


@click.command()
@click.option(
    "--follow", "-f", is_flag=True, help="Keep showing events as they come (ctrl-C ends)."
)
@click.option("--queue", "-q", "queues", multiple=True, help="Only this queue (repeatable).")
@click.option("--task", default=None, help="Only events of this task.")
@click.option("--job", "job_id", default=None, metavar="ID", help="Only events of this job.")
@click.option(
    "--since-cursor",
    "cursor",
    default=None,
    metavar="C",
    help="Start after this cursor (printed to stderr at the end of a listing).",
)
@click.option(
    "--limit", default=1000, show_default=True, type=click.IntRange(min=1), help="Most shown."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@app_option
@url_option
def events(
    follow: bool,
    queues: Sequence[str],
    task: str | None,
    job_id: str | None,
    cursor: str | None,
    limit: int,
    as_json: bool,
    app_path: str | None,
    url: str | None,
) -> None:
    """Show lifecycle events (enqueued, started, ..., succeeded, dead), oldest first.

    Without --follow: the events kept after --since-cursor (from the oldest kept), then the
    cursor to go on from (stderr). With --follow: from --since-cursor (default: now) on.
    """
    app = make_app(app_path, url)
    show = event_json if as_json else event_line
    queue = list(queues) or None

    def gap() -> None:
        click.echo("# some events were trimmed before they were read", err=True)

    async def listing() -> None:
        page = await app.admin().events(cursor, queue=queue, task=task, job_id=job_id, limit=limit)
        if page.gap:
            gap()
        for event in page.events:
            click.echo(show(event))
        click.echo(f"# cursor: {page.cursor}", err=True)

    async def following() -> None:
        admin = app.admin()
        stream = admin.follow(cursor, queue=queue, task=task, job_id=job_id, on_gap=gap)
        async for event in stream:
            click.echo(show(event))

    with contextlib.suppress(KeyboardInterrupt):  # ctrl-C ends --follow: not an error
        run(app, following if follow else listing)


def attempt_rows(attempts: Sequence[Attempt]) -> list[tuple[str, ...]]:
    """A job's attempts as the rows of its timeline: attempt, worker, start, end,
    duration, outcome, error (broker text made safe to print)."""
    rows: list[tuple[str, ...]] = []
    for a in attempts:
        duration = (
            "-" if a.ended_at_ms is None else f"{(a.ended_at_ms - a.started_at_ms) / 1000:.3f}s"
        )
        rows.append(
            (
                str(a.attempt),
                clean(a.worker_id or "-", one_line=True),
                when(a.started_at_ms),
                when(a.ended_at_ms),
                duration,
                a.outcome.value,
                clean(a.error or "", one_line=True),
            )
        )
    return rows
