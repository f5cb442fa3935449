"""`corq enqueue | job | queues | dead`: send jobs and look at them."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from corq import App, Job, JobStatus
from corq.cli.common import app_option, make_app, parse_json, run, url_option

# Piped output is not cut at 80 columns: ids must stay whole for scripts to use them.
console = Console(width=None if sys.stdout.isatty() else 200)


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


@click.command()
@click.argument("task")
@click.option(
    "--args", "args_json", metavar="JSON", help="Positional args as a JSON array: '[\"a\", 1]'."
)
@click.option(
    "--kwargs", "kwargs_json", metavar="JSON", help="Keyword args as a JSON object: '{\"n\": 1}'."
)
@click.option("--delay", type=float, default=None, metavar="S", help="Seconds before it may start.")
@click.option("--queue", "-q", default=None, help="Queue (default: the task's, or 'default').")
@click.option("--priority", type=click.IntRange(-100, 100), default=None, help="Higher runs first.")
@click.option("--job-id", default=None, help="Your own id (enqueueing an existing id is a no-op).")
@app_option
@url_option
def enqueue(
    task: str,
    args_json: str | None,
    kwargs_json: str | None,
    delay: float | None,
    queue: str | None,
    priority: int | None,
    job_id: str | None,
    app_path: str | None,
    url: str | None,
) -> None:
    """Send a job for TASK (a registered task name) and print its id."""
    args = parse_json(args_json, "--args", list)
    kwargs = parse_json(kwargs_json, "--kwargs", dict)
    app = make_app(app_path, url)

    async def go() -> Any:
        return await app.client().enqueue(
            task, args, kwargs, queue=queue, delay=delay, job_id=job_id, priority=priority
        )

    handle = run(app, go)
    click.echo(handle.id)


@click.command()
@click.argument("job_id")
@click.option("--queue", "-q", default=None, help="Queue of the job (default: search all).")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@app_option
@url_option
def job(
    job_id: str, queue: str | None, as_json: bool, app_path: str | None, url: str | None
) -> None:
    """Show a job: status, attempts, result or error."""
    app = make_app(app_path, url)

    async def go() -> Job | None:
        return await app.client().get_job(job_id, queue)

    record = run(app, go)
    if record is None:
        raise click.ClickException(f"job {job_id} not found (unknown id, expired or purged)")
    result = app.serializer.loads(record.result) if record.result is not None else None
    if as_json:
        data = {k: getattr(record, k) for k in record.__slots__ if k not in ("payload", "result")}
        data["args"] = app.serializer.loads(record.payload)
        data["result"] = result
        click.echo(json.dumps(data, indent=2, default=str))
        return
    _print_job(app, record, result)


def _print_job(app: App, record: Job, result: Any) -> None:
    colour = {
        JobStatus.SUCCEEDED: "green",
        JobStatus.DEAD: "red",
        JobStatus.FAILED: "yellow",
        JobStatus.RUNNING: "cyan",
    }.get(record.status, "white")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", record.id)
    table.add_row("task", record.task)
    table.add_row("queue", record.queue)
    table.add_row("status", f"[{colour}]{record.status}[/{colour}]")
    table.add_row(
        "attempts", f"{record.attempt} (failures {record.failures}, worker deaths {record.deaths})"
    )
    table.add_row("args", _short(app.serializer.loads(record.payload)))
    table.add_row("enqueued", _when(record.enqueued_at_ms))
    table.add_row("run at", _when(record.run_at_ms))
    table.add_row("started", _when(record.started_at_ms))
    table.add_row("finished", _when(record.finished_at_ms))
    table.add_row("worker", record.worker_id or "-")
    if record.progress is not None:
        table.add_row("progress", f"{record.progress:.0%}")
    if record.death_log:
        table.add_row("died with", " ".join(record.death_log))
    if record.status is JobStatus.SUCCEEDED:
        table.add_row("result", _short(result))
    if record.error:
        table.add_row("error", f"[red]{record.error}[/red]")
    console.print(table)
    if record.traceback:
        console.print(record.traceback, highlight=False, markup=False)


def _short(value: Any, limit: int = 500) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


@click.command()
@app_option
@url_option
def queues(app_path: str | None, url: str | None) -> None:
    """Per queue: ready, delayed, in flight, dead, workers."""
    app = make_app(app_path, url)
    stats = run(app, lambda: app.client().queue_stats())
    table = Table(title=f"queues on {app.settings.url}")
    for name in ("queue", "ready", "delayed", "in flight", "dead", "workers"):
        table.add_column(name, justify="left" if name == "queue" else "right")
    for s in stats:
        table.add_row(
            s.queue,
            f"{s.ready:,}",
            f"{s.delayed:,}",
            f"{s.in_flight:,}",
            f"[red]{s.dead:,}[/red]" if s.dead else "0",
            str(s.workers),
        )
    if not stats:
        console.print("no queues yet")
        return
    console.print(table)


@click.group()
def dead() -> None:
    """The dead letters: jobs out of retries, unknown tasks, bad payloads, poison jobs."""


@dead.command("list")
@click.option("--queue", "-q", default="default", show_default=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@app_option
@url_option
def dead_list(queue: str, limit: int, offset: int, app_path: str | None, url: str | None) -> None:
    """List dead jobs, newest first."""
    app = make_app(app_path, url)
    jobs = run(app, lambda: app.client().list_dead(queue, offset, limit))
    table = Table(title=f"dead letters of {queue}")
    table.add_column("id", no_wrap=True)
    for name in ("task", "attempts", "died", "error"):
        table.add_column(name, overflow="fold")
    for j in jobs:
        table.add_row(j.id, j.task, str(j.attempt), _when(j.finished_at_ms), j.error or "")
    console.print(table if jobs else f"no dead jobs in {queue}")


def _ids_or_all(ids: tuple[str, ...], all_: bool) -> list[str] | None:
    if all_ == bool(ids):
        raise click.UsageError("give job ids or --all (not both)")
    return None if all_ else list(ids)


@dead.command("retry")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead job of the queue.")
@click.option("--queue", "-q", default="default", show_default=True)
@app_option
@url_option
def dead_retry(
    ids: tuple[str, ...], all_: bool, queue: str, app_path: str | None, url: str | None
) -> None:
    """Queue dead jobs again, with a fresh retry budget."""
    selected = _ids_or_all(ids, all_)
    app = make_app(app_path, url)
    count = run(app, lambda: app.client().retry_dead(queue, selected))
    click.echo(f"{count} job(s) queued again on {queue}")


@dead.command("purge")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead job of the queue.")
@click.option("--queue", "-q", default="default", show_default=True)
@app_option
@url_option
def dead_purge(
    ids: tuple[str, ...], all_: bool, queue: str, app_path: str | None, url: str | None
) -> None:
    """Delete dead jobs for good."""
    selected = _ids_or_all(ids, all_)
    app = make_app(app_path, url)
    count = run(app, lambda: app.client().purge_dead(queue, selected))
    click.echo(f"{count} dead job(s) purged from {queue}")
