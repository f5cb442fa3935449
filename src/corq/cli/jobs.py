"""`corq enqueue | job | queues`: send jobs and look at them (`corq dead` is in dead.py).

Everything shown comes from the broker, where any writer may have put anything: text is
printed as plain text (no console markup), with control characters escaped, and values that
do not decode are shown as a short bytes preview, never as a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from corq import App, Job, JobStatus
from corq.cli.common import app_option, make_app, parse_json, run, url_option
from corq.cli.events import attempt_rows
from corq.cli.text import clean as _clean
from corq.cli.text import plain as _plain
from corq.cli.text import when as _when
from corq.events import Attempt
from corq.limits import PRIORITY_MAX, PRIORITY_MIN

# Piped output is not cut at 80 columns: ids must stay whole for scripts to use them.
console = Console(width=None if sys.stdout.isatty() else 200)

#: Longest error shown on one line of `corq dead list` (dead.py).
DEAD_ERROR_CHARS = 160
#: Longest value (args, result) shown in `corq job`.
VALUE_CHARS = 500
#: Bytes of an undecodable value shown in its preview.
PREVIEW_BYTES = 32


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
@click.option(
    "--priority", type=int, default=None, help=f"{PRIORITY_MIN}..{PRIORITY_MAX}; higher runs first."
)
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

    async def go() -> tuple[Job | None, list[Attempt]]:
        record = await app.client().get_job(job_id, queue)
        if record is None:
            return None, []
        return record, await app.admin().job_attempts(job_id, record.queue)

    record, attempts = run(app, go)
    if record is None:
        raise click.ClickException(f"job {job_id} not found (unknown id, expired or purged)")
    args = _decode(app, record.payload)
    result = None if record.result is None else _decode(app, record.result)
    if as_json:
        data = _job_json(record, args, result)
        data["attempts"] = [dataclasses.asdict(a) for a in attempts]
        click.echo(json.dumps(data, indent=2, default=str))
        return
    _print_job(record, args, result)
    if attempts:
        _print_attempts(attempts)


def _print_attempts(attempts: Sequence[Attempt]) -> None:
    """The job's timeline: one row per attempt."""
    table = Table(title="attempts", title_justify="left", box=None, pad_edge=False)
    for name in ("#", "worker", "started", "ended", "took", "outcome", "error"):
        table.add_column(name, overflow="fold")
    for row in attempt_rows(attempts):
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """A stored value the serializer cannot decode (a bad payload, a damaged record)."""

    #: Its size in bytes.
    size: int
    #: Its first bytes, escaped.
    preview: str
    #: Why it does not decode.
    error: str

    def __str__(self) -> str:
        return (
            f"<undecodable, {self.size:,} bytes: {self.preview}> (note: cannot be decoded: "
            f"{self.error})"
        )


def _decode(app: App, data: object) -> Any:
    """The decoded value, or an _Undecodable describing it."""
    serializer = app.serializer
    if not isinstance(data, bytes):
        return _Undecodable(0, _cut(repr(data), VALUE_CHARS), f"stored as {type(data).__name__}")
    try:
        return serializer.loads(data)
    except Exception as exc:  # a decoder's error says what is wrong with the bytes
        preview = repr(data[:PREVIEW_BYTES]) + ("…" if len(data) > PREVIEW_BYTES else "")
        error = f"{type(exc).__name__}: {exc} (serializer {serializer.name})"
        return _Undecodable(len(data), preview, _cut(error, VALUE_CHARS))


def _job_json(record: Job, args: Any, result: Any) -> dict[str, Any]:
    """The record as JSON: undecodable values are null, with an ``<name>_undecodable``
    object beside them (size, preview, error)."""
    data: dict[str, Any] = {
        k: getattr(record, k) for k in record.__slots__ if k not in ("payload", "result")
    }
    for name, value in (("args", args), ("result", result)):
        if isinstance(value, _Undecodable):
            data[name] = None
            data[f"{name}_undecodable"] = {
                "bytes": value.size,
                "preview": value.preview,
                "error": value.error,
            }
        else:
            data[name] = _json_value(value)
    return data


def _json_value(value: Any) -> Any:
    """`value` if JSON can print it, else its repr (bytes keys, NaN, very deep nesting)."""
    try:
        json.dumps(value, default=str, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return _cut(repr(value), VALUE_CHARS)
    return value


def _print_job(record: Job, args: Any, result: Any) -> None:
    colour = {
        JobStatus.SUCCEEDED: "green",
        JobStatus.DEAD: "red",
        JobStatus.FAILED: "yellow",
        JobStatus.RUNNING: "cyan",
    }.get(record.status, "white")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")

    def row(name: str, text: str) -> None:
        table.add_row(name, _plain(text))

    row("id", record.id)
    row("task", record.task)
    row("queue", record.queue)
    table.add_row("status", Text(str(record.status), style=colour))
    row("attempts", f"{record.attempt} (failures {record.failures}, worker deaths {record.deaths})")
    row("args", _short(args))
    row("enqueued", _when(record.enqueued_at_ms))
    row("run at", _when(record.run_at_ms))
    row("started", _when(record.started_at_ms))
    row("finished", _when(record.finished_at_ms))
    row("worker", record.worker_id or "-")
    if record.progress is not None:
        row("progress", f"{record.progress:.0%}")
    if record.death_log:
        row("died with", " ".join(record.death_log))
    if record.status is JobStatus.SUCCEEDED:
        row("result", _short(result))
    if record.error and record.status is JobStatus.SCHEDULED:
        # Only a snooze leaves a scheduled job with an error: its reason for waiting.
        table.add_row("snoozed", _plain(record.error, one_line=True))
    elif record.error:
        error = _plain(record.error, one_line=True)
        error.stylize("red")
        table.add_row("error", error)
    console.print(table)
    if record.traceback:
        console.print(_plain(record.traceback), highlight=False)


def _short(value: Any, limit: int = VALUE_CHARS) -> str:
    if isinstance(value, _Undecodable):
        return str(value)
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError):  # bytes keys (msgpack), deep nesting
        text = repr(value)
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


@click.command()
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1),
    help="Show this many of the busiest queues; the rest are summed up in one line.",
)
@click.option("--all", "show_all", is_flag=True, help="Show every queue.")
@app_option
@url_option
def queues(limit: int, show_all: bool, app_path: str | None, url: str | None) -> None:
    """Per queue, busiest first: ready, delayed, in flight, dead, workers, paused."""
    app = make_app(app_path, url)
    stats = run(app, lambda: app.client().queue_stats())
    if not stats:
        console.print("no queues yet")
        return
    ranked = sorted(stats, key=lambda s: (-_jobs_in(s), s.queue))
    shown = ranked if show_all else ranked[:limit]
    title = f"queues on {app.settings.url}"
    rows = [
        (
            _clean(s.queue, one_line=True),
            f"{s.ready:,}",
            f"{s.delayed:,}",
            f"{s.in_flight:,}",
            f"{s.dead:,}",
            str(s.workers),
            "paused" if s.paused else "-",
        )
        for s in shown
    ]
    if len(rows) <= RICH_TABLE_ROWS:
        _print_table(title, rows)
    else:
        click.echo(_plain_table(title, rows))
    if len(shown) < len(ranked):
        console.print(_summary(ranked[len(shown) :]), highlight=False)


#: Rows beyond which `corq queues` prints plain aligned columns: a rich table lays out about
#: 1,700 rows a second (20,000 queues took 12 s), plain columns take milliseconds.
RICH_TABLE_ROWS = 500
_QUEUE_COLUMNS = ("queue", "ready", "delayed", "in flight", "dead", "workers", "paused")


def _print_table(title: str, rows: Sequence[tuple[str, ...]]) -> None:
    table = Table(title=title)
    for name in _QUEUE_COLUMNS:
        table.add_column(name, justify="left" if name == "queue" else "right")
    for row in rows:
        dead = Text(row[4], style="red") if row[4] != "0" else "0"
        paused = Text(row[6], style="yellow") if row[6] != "-" else "-"
        table.add_row(Text(row[0]), *row[1:4], dead, row[5], paused)
    console.print(table)


def _plain_table(title: str, rows: Sequence[tuple[str, ...]]) -> str:
    """The same columns as the rich table, aligned with spaces."""
    widths = [
        max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(_QUEUE_COLUMNS)
    ]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    return "\n".join([title, line(_QUEUE_COLUMNS), *(line(row) for row in rows)])


class _Counts(Protocol):
    """The counts of one queue (what Client.queue_stats returns), as read here."""

    @property
    def ready(self) -> int: ...
    @property
    def delayed(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def dead(self) -> int: ...


def _jobs_in(stats: _Counts) -> int:
    return stats.ready + stats.delayed + stats.in_flight + stats.dead


def _summary(rest: Sequence[_Counts]) -> str:
    """One line for the queues not shown: how many, how many empty, their totals."""
    empty = sum(1 for s in rest if _jobs_in(s) == 0)
    totals = (
        f"{sum(s.ready for s in rest):,} ready, {sum(s.delayed for s in rest):,} delayed, "
        f"{sum(s.in_flight for s in rest):,} in flight, {sum(s.dead for s in rest):,} dead"
    )
    return f"… and {len(rest):,} more queues ({empty:,} empty): {totals} (--all shows them)"
