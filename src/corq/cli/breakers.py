"""`corq task reset-breaker`: close a task's circuit by hand; the breaker column of `corq
tasks` (`corq task breaker` changes the thresholds: see cli/ops.py)."""

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
