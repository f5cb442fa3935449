"""`corq schedule add | list | show | pause | resume | rm | backfill | run-now`.

Every command goes through ``app.schedules``, so the command line checks exactly what
Python checks: a mistake (a bad cron, an unknown zone or task, args that do not bind, a
one-shot in the past, a taken name, an unknown schedule) is one line on stderr and a
non-zero exit code, and nothing is written.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

import click
from rich.console import Console

from corq import App, ScheduleInfo
from corq.cli.common import app_option, make_app, parse_json, run, url_option
from corq.cli.schedule_view import (
    moment,
    print_list,
    run_json,
    schedule_json,
    show_renderable,
    skip_json,
)
from corq.cli.text import clean
from corq.cli.values import UsageLine, parse_duration, parse_moment
from corq.schedule import CatchUp, Overlap, ScheduleDef

# Piped output is not cut at 80 columns: ids must stay whole for scripts to use them.
console = Console(width=None if sys.stdout.isatty() else 200)

_OVERLAPS = ", ".join(o.value for o in Overlap)
_CATCHUPS = ", ".join(c.value for c in CatchUp)


@click.group(short_help="Add, list, show, pause, resume, remove, backfill or run schedules.")
def schedule() -> None:
    """Schedules: cron, interval and one-shot rules that send jobs (see `--help` of each).

    A scheduler runs in every worker (one of them leads and fires the ticks); changes made
    here are seen by it within a second.
    """


@schedule.command("add", short_help="Store a schedule (needs --app).")
@click.argument("name")
@click.argument("task")
@click.option(
    "--cron", default=None, metavar="EXPR", help="'*/5 * * * *' (6 fields: seconds first)."
)
@click.option("--every", default=None, metavar="DURATION", help="An interval: 30s, 5m, 1h30m.")
@click.option(
    "--at", default=None, metavar="ISO", help="One time, with its zone: 2027-01-01T09:00Z."
)
@click.option("--tz", default=None, help="IANA time zone the cron expression is read in [UTC].")
@click.option(
    "--anchor", default=None, metavar="ISO", help="Where --every ticks count from [epoch]."
)
@click.option("--args", "args_json", metavar="JSON", help="Positional args: '[\"eu\", 1]'.")
@click.option("--kwargs", "kwargs_json", metavar="JSON", help='Keyword args: \'{"fmt": "csv"}\'.')
@click.option("--queue", "-q", default=None, help="Queue of its jobs [the task's].")
@click.option("--priority", type=int, default=None, help="-100..100 [the task's].")
@click.option("--overlap", default="allow_all", show_default=True, help=f"One of {_OVERLAPS}.")
@click.option("--catchup", default="all", show_default=True, help=f"One of {_CATCHUPS}.")
@click.option(
    "--catchup-window",
    default=None,
    metavar="DURATION",
    help="Missed ticks older than this are skipped, not fired late [5m].",
)
@click.option("--jitter", default=None, metavar="DURATION", help="Delay each job up to this.")
@click.option("--pause-on-failure", is_flag=True, help="Pause when one of its jobs ends dead.")
@click.option("--paused", is_flag=True, help="Add it paused (resume it later).")
@app_option
@url_option
def add(
    name: str,
    task: str,
    cron: str | None,
    every: str | None,
    at: str | None,
    tz: str | None,
    anchor: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    priority: int | None,
    overlap: str,
    catchup: str,
    catchup_window: str | None,
    jitter: str | None,
    pause_on_failure: bool,
    paused: bool,
    app_path: str | None,
    url: str | None,
) -> None:
    """Store schedule NAME that sends TASK's job at each tick of one of --cron, --every, --at.

    Needs --app: the task and its arguments are checked against your app's code.
    """
    if app_path is None:
        raise UsageLine(
            "schedule add needs --app MODULE:ATTR (your corq.App), so the task and its "
            "arguments are checked before anything is stored"
        )
    every_d, at_d, anchor_d = (
        parse_duration(every, "--every"),
        parse_moment(at, "--at"),
        parse_moment(anchor, "--anchor"),
    )
    window_d, jitter_d = (
        parse_duration(catchup_window, "--catchup-window"),
        parse_duration(jitter, "--jitter"),
    )
    args, kwargs = _json(args_json, "--args", list), _json(kwargs_json, "--kwargs", dict)
    app = make_app(app_path, url)
    origin = f"corq schedule add on {socket.gethostname()}"
    info = run(
        app,
        lambda: app.schedules.add(
            name,
            task,
            cron=cron,
            every=every_d,
            at=at_d,
            tz=tz,
            anchor=anchor_d,
            args=args,
            kwargs=kwargs,
            queue=queue,
            priority=priority,
            overlap=overlap,
            catchup=catchup,
            catchup_window=window_d,
            jitter=jitter_d,
            pause_on_failure=pause_on_failure,
            paused=paused,
            origin=origin,
        ),
    )
    click.echo(f"added schedule {info.name}: {info.definition.rule.describe()}, {_next(info)}")


def _json(value: str | None, what: str, kind: type) -> Any:
    try:
        return parse_json(value, what, kind)
    except click.BadParameter as exc:
        raise UsageLine(exc.message) from None


def _next(info: ScheduleInfo) -> str:
    if info.next_ticks:
        return f"next at {moment(info.next_ticks[0])}"
    return "paused" if info.paused else "no tick ahead"


@schedule.command("list", short_help="Every schedule, its next fire times and last run.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@app_option
@url_option
def list_(as_json: bool, app_path: str | None, url: str | None) -> None:
    """Every schedule: rule, zone, next three fire times, paused, last run and its outcome.

    With --app, the app's code schedules that no scheduler has stored yet are listed too.
    """
    app = make_app(app_path, url)
    infos = run(app, app.schedules.list)
    if as_json:
        click.echo(json.dumps([schedule_json(i, _call(app, i.definition)) for i in infos]))
        return
    print_list(console, infos, f"schedules on {app.settings.url}")


@schedule.command("show", short_help="A schedule, its recent runs and skipped ticks.")
@click.argument("name")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(1, 100), help="Runs shown."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@app_option
@url_option
def show(name: str, limit: int, as_json: bool, app_path: str | None, url: str | None) -> None:
    """A schedule's definition and state, its recent runs (tick, job id, state, duration)
    and its skipped or missed ticks, with the reason and how many."""
    app = make_app(app_path, url)

    async def go() -> tuple[ScheduleInfo, Any]:
        info = await app.schedules.get(name)
        return info, await app.schedules.history(name, limit)

    info, (runs, skips) = run(app, go)
    call = _call(app, info.definition)
    if as_json:
        data = schedule_json(info, call)
        data["runs"] = [run_json(r) for r in runs]
        data["skips"] = [skip_json(s) for s in skips]
        click.echo(json.dumps(data, indent=2))
        return
    console.print(show_renderable(info, _call_text(call), runs, skips))


def _call(app: App, definition: ScheduleDef) -> Any:
    """The job's arguments as stored, or None when they do not decode with this app."""
    try:
        data = app.serializer.loads(definition.payload)
        json.dumps(data)
    except Exception:  # another serializer's bytes, a damaged record
        return None
    return data


def _call_text(call: Any) -> str:
    if not isinstance(call, dict):
        return "<cannot be decoded with this app's serializer>"
    args = ", ".join(json.dumps(a) for a in call.get("args", []))
    kwargs = ", ".join(f"{k}={json.dumps(v)}" for k, v in call.get("kwargs", {}).items())
    return f"({', '.join(p for p in (args, kwargs) if p)})"


@schedule.command("pause", short_help="Stop firing its ticks until resumed.")
@click.argument("name")
@click.option("--reason", default=None, help="Shown by list and show.")
@app_option
@url_option
def pause(name: str, reason: str | None, app_path: str | None, url: str | None) -> None:
    """Stop firing NAME's ticks until resumed (backfill and run-now still work)."""
    app = make_app(app_path, url)
    info = run(app, lambda: app.schedules.pause(name, reason))
    click.echo(
        f"paused schedule {info.name}" + (f": {clean(reason, one_line=True)}" if reason else "")
    )


@schedule.command("resume", short_help="Fire its ticks again, from now on.")
@click.argument("name")
@app_option
@url_option
def resume(name: str, app_path: str | None, url: str | None) -> None:
    """Fire NAME again from now on; the ticks passed while paused are logged as skipped."""
    app = make_app(app_path, url)
    info = run(app, lambda: app.schedules.resume(name))
    click.echo(f"resumed schedule {info.name}, {_next(info)}")


@schedule.command("rm", short_help="Remove a stored schedule with its state and history.")
@click.argument("name")
@app_option
@url_option
def rm(name: str, app_path: str | None, url: str | None) -> None:
    """Delete stored schedule NAME with its state and history (its jobs are left alone)."""
    app = make_app(app_path, url)
    run(app, lambda: app.schedules.remove(name))
    click.echo(f"removed schedule {name}")


@schedule.command("backfill", short_help="Fire the past ticks of a window not fired yet.")
@click.argument("name")
@click.option("--from", "start", required=True, metavar="ISO", help="Window start, with zone.")
@click.option("--to", "end", required=True, metavar="ISO", help="Window end (in the past).")
@app_option
@url_option
def backfill(name: str, start: str, end: str, app_path: str | None, url: str | None) -> None:
    """Fire NAME's ticks in [--from, --to] that were not fired (skipped, missed, paused);
    each tick still fires at most once."""
    start_at, end_at = parse_moment(start, "--from"), parse_moment(end, "--to")
    app = make_app(app_path, url)
    result = run(app, lambda: app.schedules.backfill(name, start_at, end_at))
    parts = [f"{result.ticks} tick(s) in the window", f"{result.fired} job(s) enqueued"]
    if result.already_fired:
        parts.append(f"{result.already_fired} fired before (not again)")
    if result.below_floor:
        parts.append(f"{result.below_floor} too old to check (refused)")
    if result.ahead:
        parts.append(f"{result.ahead} not due yet (the scheduler fires them)")
    click.echo(f"backfill of {name}: " + ", ".join(parts))
    for job_id in result.job_ids:
        click.echo(job_id)


@schedule.command("run-now", short_help="Send the schedule's job now, outside its ticks.")
@click.argument("name")
@app_option
@url_option
def run_now(name: str, app_path: str | None, url: str | None) -> None:
    """Send NAME's job now, outside its ticks (the regular ticks are not moved); prints the
    job's id."""
    app = make_app(app_path, url)
    handle = run(app, lambda: app.schedules.run_now(name))
    click.echo(handle.id)
