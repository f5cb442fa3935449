"""`corq queue | task | tasks | config`: steer a running cluster through the runtime
configuration (pause and resume, weights, limits, strikes) and see what was changed.

Every change is recorded as made by ``cli:<user>@<host>``; workers see it within
``config_poll_s``. Commands about a task need the app (``--app``, or ``corq tasks APP``)
so the task and its parameters are known and checked before anything is written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from corq import App
from corq.admin import Admin
from corq.admin.base import default_actor
from corq.admin.config import parse_where
from corq.cli.breakers import breaker_cell, breaker_json
from corq.cli.common import app_option, load_app, make_app, run, url_option
from corq.cli.text import clean
from corq.control import ConfigChange, ConfigScope
from corq.errors import CorqError
from corq.overrides import LimitField, queue_paused, queue_weight, strikes

console = Console(width=None if sys.stdout.isatty() else 200)


def _admin(app: App) -> Admin:
    return app.admin(f"cli:{default_actor()}")


def _when(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"
    except (OverflowError, OSError, ValueError):
        return str(ms)


def _task_app(app_path: str | None, url: str | None) -> App:
    if not app_path:
        raise click.UsageError("give --app MODULE:ATTR: the task must be known to be checked")
    return make_app(app_path, url)


# -- corq queue ----------------------------------------------------------------------------


@click.group()
def queue() -> None:
    """Pause, resume or weigh a queue (every worker follows within a second)."""


@queue.command()
@click.argument("name")
@app_option
@url_option
def pause(name: str, app_path: str | None, url: str | None) -> None:
    """Hold NAME's jobs: none starts until resumed (running ones finish)."""
    app = make_app(app_path, url)
    version = run(app, lambda: _admin(app).pause_queue(name))
    click.echo(f"queue {clean(name, one_line=True)} paused (config version {version})")


@queue.command()
@click.argument("name")
@app_option
@url_option
def resume(name: str, app_path: str | None, url: str | None) -> None:
    """Let NAME's jobs start again."""
    app = make_app(app_path, url)
    version = run(app, lambda: _admin(app).resume_queue(name))
    click.echo(f"queue {clean(name, one_line=True)} resumed (config version {version})")


@queue.command()
@click.argument("name")
@click.argument("weight")
@app_option
@url_option
def weight(name: str, weight: str, app_path: str | None, url: str | None) -> None:
    """Give NAME the weight WEIGHT (1-1000) on every worker serving it; 'default' gives
    each worker's own back."""
    value: int | None = None
    if weight != "default":
        if not weight.isascii() or not weight.isdigit():
            raise click.BadParameter(f"a weight is 1-1000 or 'default', got {weight!r}")
        value = int(weight)
    app = make_app(app_path, url)
    version = run(app, lambda: _admin(app).set_queue_weight(name, value))
    click.echo(f"queue {clean(name, one_line=True)} weight {weight} (config version {version})")


# -- corq task -----------------------------------------------------------------------------


@click.group()
def task() -> None:
    """Change a task's limits at runtime, strike it (kill switch) or restore it."""


@task.command()
@click.argument("name")
@click.option("--concurrency", type=int, default=None, help="Most jobs running at once.")
@click.option("--rate", default=None, metavar="RATE", help="Starts per period: 10/s, 100/m.")
@click.option("--key-concurrency", type=int, default=None, help="Most running per key.")
@click.option("--key-rate", default=None, metavar="RATE", help="Starts per key and period.")
@click.option(
    "--clear",
    multiple=True,
    metavar="FIELD",
    help="Give a limit the code's value back (concurrency, rate-limit, ...); repeatable.",
)
@app_option
@url_option
def limit(
    name: str,
    concurrency: int | None,
    rate: str | None,
    key_concurrency: int | None,
    key_rate: str | None,
    clear: Sequence[str],
    app_path: str | None,
    url: str | None,
) -> None:
    """Override NAME's limits on every worker, at once (the code's are the fallback)."""
    app = _task_app(app_path, url)
    rules = run(
        app,
        lambda: _admin(app).set_limits(
            name,
            concurrency=concurrency,
            rate_limit=rate,
            key_concurrency=key_concurrency,
            key_rate_limit=key_rate,
            clear=[c.replace("-", "_") for c in clear],
        ),
    )
    shown = {
        "concurrency": rules.concurrency,
        "rate_limit": rules.rate,
        "key_concurrency": rules.key_concurrency,
        "key_rate_limit": rules.key_rate,
    }
    text = ", ".join(f"{k}={v}" for k, v in shown.items() if v is not None) or "no limits"
    click.echo(f"task {name}: {text}")


@task.command()
@click.argument("name")
@click.option("--failures", type=int, default=None, help="Failed attempts that open it.")
@click.option("--window", type=float, default=None, metavar="S", help="Within this many s.")
@click.option("--reset", type=float, default=None, metavar="S", help="Open this many s.")
@click.option(
    "--clear", multiple=True, metavar="FIELD", help="Give failures|window|reset the code's back."
)
@app_option
@url_option
def breaker(
    name: str,
    failures: int | None,
    window: float | None,
    reset: float | None,
    clear: Sequence[str],
    app_path: str | None,
    url: str | None,
) -> None:
    """Change the thresholds of NAME's circuit breaker on every worker."""
    app = _task_app(app_path, url)
    rule = run(
        app,
        lambda: _admin(app).set_breaker(
            name, failures=failures, window=window, reset=reset, clear=list(clear)
        ),
    )
    click.echo(
        f"task {name}: breaker failures={rule.failures} window={rule.window:g}s "
        f"reset={rule.reset:g}s"
    )


_where_option = click.option(
    "--where",
    "where",
    multiple=True,
    metavar="NAME=VALUE",
    help="Only jobs whose argument NAME equals VALUE (JSON when it parses); repeatable.",
)


def _conditions(where: Sequence[str]) -> dict[str, object] | None:
    try:
        return parse_where(where) or None
    except CorqError as exc:
        raise click.BadParameter(str(exc), param_hint="--where") from exc


@task.command()
@click.argument("name")
@_where_option
@app_option
@url_option
def strike(name: str, where: Sequence[str], app_path: str | None, url: str | None) -> None:
    """Hold NAME's jobs (those matching --where) without running them until restored."""
    conditions = _conditions(where)
    app = _task_app(app_path, url)
    done = run(app, lambda: _admin(app).strike(name, conditions))
    click.echo(f"struck: {clean(done.id, one_line=True)}")


@task.command()
@click.argument("name")
@_where_option
@app_option
@url_option
def restore(name: str, where: Sequence[str], app_path: str | None, url: str | None) -> None:
    """Lift the strike on NAME (with the same --where it was struck with)."""
    conditions = _conditions(where)
    app = make_app(app_path, url)
    if not run(app, lambda: _admin(app).restore(name, conditions)):
        raise click.ClickException(f"no strike on {name!r} with these conditions")
    click.echo(f"restored: {name}")


# -- corq tasks ----------------------------------------------------------------------------

_LIMIT_COLUMNS = {
    LimitField.CONCURRENCY: "concurrency",
    LimitField.RATE_LIMIT: "rate",
    LimitField.KEY_CONCURRENCY: "key conc.",
    LimitField.KEY_RATE_LIMIT: "key rate",
}


@click.command()
@click.argument("app_path", metavar="APP")
@url_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per task.")
def tasks(app_path: str, url: str | None, as_json: bool) -> None:
    """APP's registered tasks: queue, effective limits (and where each comes from: code or
    runtime), strikes and breaker."""
    app = load_app(app_path)
    if url:
        app.configure(url=url)
    rows = run(app, lambda: _task_rows(app))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
        return
    table = Table(title=f"tasks of {app_path}")
    for column in ("task", "queue", *_LIMIT_COLUMNS.values(), "struck", "breaker"):
        table.add_column(column)
    for row in rows:
        limits = [_limit_cell(row["limits"][f.value]) for f in _LIMIT_COLUMNS]
        struck = ", ".join(row["strikes"]) or "-"
        table.add_row(row["task"], row["queue"], *limits, struck, row["breaker"])
    console.print(table)


def _limit_cell(view: dict[str, Any]) -> str:
    if view["value"] is None:
        return "-"
    return f"{view['value']} ({view['source']})"


async def _task_rows(app: App) -> list[dict[str, Any]]:
    admin = _admin(app)
    in_force = await admin.strikes()
    circuits = {view.task: view for view in await admin.breakers()}
    rows = []
    for name in sorted(app.registry):
        found = app.registry[name]
        limits = {
            v.field.value: {
                "value": None if v.value is None else str(v.value),
                "source": v.source,
            }
            for v in await admin.limits(name)
        }
        rows.append(
            {
                "task": name,
                "queue": found.options.queue,
                "limits": limits,
                "strikes": [s.id for s in in_force if s.task == name],
                "breaker": breaker_cell(circuits.get(name)),
                "circuit": breaker_json(circuits.get(name)),
            }
        )
    return rows


# -- corq config ---------------------------------------------------------------------------


@click.group()
def config() -> None:
    """The runtime configuration: what is set now, and who changed what."""


@config.command()
@app_option
@url_option
@click.option("--json", "as_json", is_flag=True, help="The entries as one JSON object.")
def show(app_path: str | None, url: str | None, as_json: bool) -> None:
    """Every entry set at runtime (what is not here comes from the code)."""
    app = make_app(app_path, url)
    snapshot = run(app, lambda: _admin(app).config())
    if as_json:
        entries = {f"{s.value}:{n}": dict(f) for (s, n), f in sorted(snapshot.entries.items())}
        click.echo(json.dumps({"version": snapshot.version, "entries": entries}, sort_keys=True))
        return
    click.echo(f"config version {snapshot.version}")
    queues = sorted(n for s, n in snapshot.entries if s is ConfigScope.QUEUE)
    for name in queues:
        paused, weighed = queue_paused(snapshot, name), queue_weight(snapshot, name)
        parts = (["paused"] if paused else []) + ([f"weight {weighed}"] if weighed else [])
        click.echo(f"queue {clean(name, one_line=True)}: {', '.join(parts) or '-'}")
    for (scope, name), fields in sorted(snapshot.entries.items()):
        if scope is ConfigScope.TASK:
            shown = ", ".join(f"{k}={clean(v, one_line=True)}" for k, v in sorted(fields.items()))
            click.echo(f"task {clean(name, one_line=True)}: {shown}")
    for struck in strikes(snapshot):
        click.echo(f"strike {clean(struck.id, one_line=True)}")


@config.command()
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option(
    "--scope", type=click.Choice([s.value for s in ConfigScope]), default=None, help="Only these."
)
@click.option("--name", default=None, help="Only the changes of this queue, task or strike.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change.")
@app_option
@url_option
def history(
    limit: int,
    scope: str | None,
    name: str | None,
    as_json: bool,
    app_path: str | None,
    url: str | None,
) -> None:
    """Changes of the runtime configuration, newest first, with who made them."""
    app = make_app(app_path, url)
    only = None if scope is None else ConfigScope(scope)
    changes = run(app, lambda: _admin(app).config_history(limit, scope=only, name=name))
    if as_json:
        for change in changes:
            click.echo(json.dumps(_change_json(change), sort_keys=True))
        return
    if not changes:
        click.echo("no changes yet")
        return
    table = Table(title="runtime configuration history")
    for column in ("version", "when", "who", "what", "field", "old", "new"):
        table.add_column(column)
    for c in changes:
        table.add_row(
            str(c.version),
            _when(c.at_ms),
            clean(c.who, one_line=True),
            clean(f"{c.scope.value} {c.name}", one_line=True),
            c.field,
            clean(c.old or "-", one_line=True),
            clean(c.new or "-", one_line=True),
        )
    console.print(table)


def _change_json(change: ConfigChange) -> dict[str, object]:
    return {
        "version": change.version,
        "at_ms": change.at_ms,
        "who": change.who,
        "scope": change.scope.value,
        "name": change.name,
        "field": change.field,
        "old": change.old,
        "new": change.new,
    }
