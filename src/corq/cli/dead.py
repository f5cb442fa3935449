"""`corq dead list | show | retry | purge`: the dead letters, for operators.

Every input is checked before anything is written (a bad filter, time, JSON or id is one
line and a non-zero exit); acting on everything a filter matches asks first (``--yes``
skips the question). What is shown comes from the broker and is printed as plain text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.table import Table

from corq import App, Job
from corq.cli.common import app_option, make_app, parse_json, run, url_option
from corq.cli.jobs import (
    DEAD_ERROR_CHARS,
    _cut,
    _decode,
    _job_json,
    _print_job,
    console,
)
from corq.cli.text import plain, when
from corq.cli.values import UsageLine, parse_duration


@click.group()
def dead() -> None:
    """The dead letters: jobs out of retries, unknown tasks, bad payloads, poison jobs."""


@dataclass(frozen=True, slots=True)
class Filter:
    """The filter options, as the admin calls take them."""

    queue: str | None
    task: str | None
    error: str | None
    since: datetime | None
    until: datetime | None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.task, self.error, self.since, self.until))

    def args(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "task": self.task,
            "error": self.error,
            "since": self.since,
            "until": self.until,
        }

    def target(self, app: App) -> str:
        """The queue meant: --queue, else the task's when the app registers it, else the
        default queue (as the admin calls decide it)."""
        if self.queue is not None:
            return self.queue
        task = None if self.task is None else app.registry.get(self.task)
        return app.settings.default_queue if task is None else task.options.queue

    def describe(self, app: App) -> str:
        queue = self.target(app)
        parts = [f"task {self.task}"] if self.task else []
        parts += [f"error holding {self.error!r}"] if self.error else []
        parts += [f"died since {_when_text(self.since)}"] if self.since else []
        parts += [f"died before {_when_text(self.until)}"] if self.until else []
        return f"dead jobs of queue {queue}" + (f" ({', '.join(parts)})" if parts else "")


def _when_text(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_when(value: str | None, option: str, now: datetime | None = None) -> datetime | None:
    """A time: ISO 8601 (``2026-12-01T10:00``, UTC when no zone is given) or a duration
    back from now (``90s``, ``15m``, ``1h``, ``2d``)."""
    if value is None:
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        ago = parse_duration(text, option) or timedelta()
    except UsageLine:
        raise UsageLine(
            f"{option} {value!r} is neither a time (e.g. 2026-12-01T10:00, UTC unless a zone "
            "is given) nor a duration back from now (e.g. 15m, 1h, 2d)"
        ) from None
    try:
        return (now or datetime.now(UTC)) - ago
    except OverflowError:
        raise UsageLine(f"{option} {value!r} reaches back too far") from None


def filter_options(fn: Any) -> Any:
    """--queue, --task, --error, --since, --until."""
    options = [
        click.option("--until", default=None, metavar="WHEN", help="Died before this."),
        click.option(
            "--since",
            default=None,
            metavar="WHEN",
            help="Died at or after this: 2026-12-01T10:00 (UTC unless a zone is given) or "
            "a duration back from now (15m, 1h, 2d).",
        ),
        click.option("--error", default=None, help="Text the error holds (any case)."),
        click.option("--task", default=None, help="Only this task's jobs."),
        click.option(
            "--queue",
            "-q",
            default=None,
            help="Queue (default: the task's when the app registers it, else the default).",
        ),
    ]
    for option in options:
        fn = option(fn)
    return fn


def _filter(
    queue: str | None, task: str | None, error: str | None, since: str | None, until: str | None
) -> Filter:
    return Filter(queue, task, error, parse_when(since, "--since"), parse_when(until, "--until"))


@dead.command("list")
@filter_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--offset", default=0, show_default=True, type=click.IntRange(0), help="Without filters."
)
@click.option("--cursor", default=None, help="Go on from the page that printed it.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@app_option
@url_option
def dead_list(
    queue: str | None,
    task: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
    cursor: str | None,
    as_json: bool,
    app_path: str | None,
    url: str | None,
) -> None:
    """List dead jobs, newest first, filtered by task, error text and time."""
    where = _filter(queue, task, error, since, until)
    if offset and (where.given or cursor is not None):
        raise click.UsageError("--offset pages an unfiltered list; with filters use --cursor")
    app = make_app(app_path, url)
    jobs, next_cursor = run(app, lambda: _page(app, where, limit, offset, cursor))
    if as_json:
        page = {"jobs": [_job_json(j, _decode(app, j.payload), None) for j in jobs]}
        click.echo(json.dumps(page | {"cursor": next_cursor}, indent=2, default=str))
        return
    if not jobs:
        console.print(plain(f"no {where.describe(app)}" + (" on this page" if next_cursor else "")))
    else:
        _print_dead(where.describe(app), jobs)
    if next_cursor is not None:
        console.print(plain(f"more: --cursor {next_cursor}"), highlight=False)


async def _page(
    app: App, where: Filter, limit: int, offset: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    if offset:
        return await app.client().list_dead(where.target(app), offset, limit), None
    page = await app.admin().dead(**where.args(), limit=limit, cursor=cursor)
    return page.jobs, page.cursor


def _print_dead(title: str, jobs: Sequence[Job]) -> None:
    table = Table(title=plain(title))
    table.add_column("id", no_wrap=True)
    for name in ("task", "attempts", "died"):
        table.add_column(name, overflow="fold")
    # One line per job however long its error: the full text is in `corq dead show ID`.
    table.add_column("error", no_wrap=True, overflow="ellipsis")
    for j in jobs:
        error = _cut((j.error or "").strip().split("\n", 1)[0], DEAD_ERROR_CHARS)
        table.add_row(
            plain(j.id, one_line=True),
            plain(j.task, one_line=True),
            str(j.attempt),
            when(j.finished_at_ms),
            plain(error, one_line=True),
        )
    console.print(table)


@dead.command("show")
@click.argument("job_id")
@click.option("--queue", "-q", default=None, help="Queue of the job (default: search all).")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@app_option
@url_option
def dead_show(
    job_id: str, queue: str | None, as_json: bool, app_path: str | None, url: str | None
) -> None:
    """Show one dead job: its arguments, attempts, error and traceback."""
    app = make_app(app_path, url)
    record = run(app, lambda: app.admin().dead_job(job_id, queue))
    args = _decode(app, record.payload)
    if as_json:
        click.echo(json.dumps(_job_json(record, args, None), indent=2, default=str))
        return
    _print_job(record, args, None)


def _confirm(question: str, yes: bool) -> None:
    """Ask before acting on everything a filter matches; no answer (no terminal) is a no."""
    if yes:
        return
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:  # end of input: a script without --yes
        click.echo(err=True)  # end the question's line
        raise click.ClickException(
            "nothing done: no answer (add --yes to skip the question)"
        ) from None
    if not agreed:
        raise click.ClickException("nothing done")


@dead.command("retry")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead job matching the filters.")
@filter_options
@click.option("--args", "args_json", default=None, metavar="JSON", help="New positional args.")
@click.option("--kwargs", "kwargs_json", default=None, metavar="JSON", help="New keyword args.")
@click.option(
    "--limit", default=None, type=click.IntRange(1), help="With --all: at most this many."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before acting on --all.")
@app_option
@url_option
def dead_retry(
    ids: tuple[str, ...],
    all_: bool,
    queue: str | None,
    task: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    limit: int | None,
    yes: bool,
    app_path: str | None,
    url: str | None,
) -> None:
    """Queue dead jobs again with a fresh retry budget: by id (one, with edited --args /
    --kwargs checked against the task's signature first), or --all matching the filters."""
    where = _selection(ids, all_, _filter(queue, task, error, since, until), limit)
    edited = args_json is not None or kwargs_json is not None
    if edited and len(ids) != 1:
        raise click.UsageError("--args and --kwargs edit one job: give exactly one id")
    args = None if args_json is None else parse_json(args_json, "--args", list)
    kwargs = None if kwargs_json is None else parse_json(kwargs_json, "--kwargs", dict)
    app = make_app(app_path, url)
    if edited:
        run(app, lambda: app.admin().redrive(ids[0], queue, args=args, kwargs=kwargs))
        click.echo(f"job {ids[0]} queued again with edited arguments")
        return
    target = where.target(app)
    if ids:
        count = run(app, lambda: app.client().retry_dead(target, list(ids)))
    else:
        _confirm(f"Queue again every one of the {where.describe(app)}?", yes)
        count = run(app, lambda: app.admin().redrive_matching(**where.args(), limit=limit))
    click.echo(f"{count} job(s) queued again on {target}")


@dead.command("purge")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead job matching the filters.")
@filter_options
@click.option(
    "--limit", default=None, type=click.IntRange(1), help="With --all: at most this many."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before acting on --all.")
@app_option
@url_option
def dead_purge(
    ids: tuple[str, ...],
    all_: bool,
    queue: str | None,
    task: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    yes: bool,
    app_path: str | None,
    url: str | None,
) -> None:
    """Delete dead jobs for good: by id, or --all matching the filters."""
    where = _selection(ids, all_, _filter(queue, task, error, since, until), limit)
    app = make_app(app_path, url)
    target = where.target(app)
    if ids:
        count = run(app, lambda: app.admin().purge(list(ids), queue=target))
    else:
        _confirm(f"Delete for good every one of the {where.describe(app)}?", yes)
        count = run(app, lambda: app.admin().purge(**where.args(), limit=limit))
    click.echo(f"{count} dead job(s) purged from {target}")


def _selection(ids: tuple[str, ...], all_: bool, where: Filter, limit: int | None) -> Filter:
    """Ids or --all (with its filters and --limit), never both, never neither."""
    if all_ == bool(ids):
        raise click.UsageError("give job ids or --all (not both)")
    if ids and (where.given or limit is not None):
        raise click.UsageError("--task, --error, --since, --until and --limit go with --all")
    return where
