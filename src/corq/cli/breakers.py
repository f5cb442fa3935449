"""`corq task breaker | reset-breaker`: a task's circuit breaker, its thresholds changed at
runtime, and closing it by hand; the breaker column of `corq tasks`."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from corq import App
from corq.admin import Admin
from corq.admin.base import default_actor
from corq.admin.breakers import BreakerView
from corq.cli.common import app_option, make_app, run, url_option
from corq.cli.text import clean
from corq.control import BreakerStatus


def _admin(app: App) -> Admin:
    return app.admin(f"cli:{default_actor()}")


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S") + "Z"
    except (OverflowError, OSError, ValueError):
        return str(ms)


def breaker_cell(view: BreakerView | None) -> str:
    """One line: the circuit's status, what it counted, its thresholds and their source."""
    if view is None:
        return "-"
    state = view.state
    if state.status is BreakerStatus.OPEN:
        text = f"open until {_time(state.until_ms)}"
    elif state.status is BreakerStatus.HALF_OPEN:
        text = f"half-open (probe until {_time(state.until_ms)})"
    else:
        text = "closed"
    rule = view.rule
    if rule is not None:
        text += f", {state.failures} of {rule.failures} in {rule.window:g}s, reset {rule.reset:g}s"
        if view.source == "runtime":
            text += " (runtime)"
    if state.opened:
        text += f", opened {state.opened}x"
    return text


def breaker_json(view: BreakerView | None) -> dict[str, object] | None:
    if view is None:
        return None
    state, rule = view.state, view.rule
    return {
        "status": state.status.value,
        "failures": state.failures,
        "opened_at_ms": state.opened_at_ms,
        "until_ms": state.until_ms,
        "opened": state.opened,
        "rule": None
        if rule is None
        else {"failures": rule.failures, "window": rule.window, "reset": rule.reset},
        "source": view.source,
    }


@click.command("breaker")
@click.argument("name")
@click.option("--failures", type=int, default=None, help="Failures within the window that open it.")
@click.option("--window", type=float, default=None, help="The window, in seconds.")
@click.option("--reset", type=float, default=None, help="How long it stays open, in seconds.")
@click.option("--clear", is_flag=True, help="Give the code's thresholds back first.")
@app_option
@url_option
def breaker(
    name: str,
    failures: int | None,
    window: float | None,
    reset: float | None,
    clear: bool,
    app_path: str | None,
    url: str | None,
) -> None:
    """Show NAME's circuit breaker; with options, change its thresholds on every worker."""
    if not app_path:
        raise click.UsageError("give --app MODULE:ATTR: the task must be known to be checked")
    app = make_app(app_path, url)
    changing = clear or any(v is not None for v in (failures, window, reset))

    async def go() -> BreakerView | None:
        admin = _admin(app)
        if changing:
            await admin.set_breaker(
                name, failures=failures, window=window, reset=reset, clear=clear
            )
        return next((v for v in await admin.breakers() if v.task == name), None)

    view = run(app, go)
    if view is None:
        raise click.ClickException(f"task {name!r} has no circuit breaker")
    click.echo(f"task {clean(name, one_line=True)}: {breaker_cell(view)}")


@click.command("reset-breaker")
@click.argument("name")
@app_option
@url_option
def reset_breaker(name: str, app_path: str | None, url: str | None) -> None:
    """Close NAME's circuit by hand (its failures forgotten); its jobs start again."""
    app = make_app(app_path, url)
    if not run(app, lambda: _admin(app).reset_breaker(name)):
        raise click.ClickException(f"task {name!r} has no circuit to reset")
    click.echo(f"task {clean(name, one_line=True)}: circuit closed")
