"""How `corq schedule list | show` print schedules: rich tables for people, JSON for scripts.

Names are plain by construction, but reasons, errors and origins come from the broker,
where any writer may have put anything: they are printed as plain text (no console
markup), control characters escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from corq import RunInfo, ScheduleInfo, SkipInfo
from corq.cli.text import plain, state_text
from corq.schedule import ScheduleDef, format_duration_ms, tick_datetime

#: Longest error shown in a history row (the full text is in `corq job ID`).
ERROR_CHARS = 120


# -- text ----------------------------------------------------------------------------
def moment(value: datetime | None) -> str:
    """``2026-12-01 09:00:00+01:00`` (milliseconds only when there are some)."""
    if value is None:
        return "-"
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.isoformat(sep=" ", timespec=spec)


def seconds(value: timedelta | None) -> str:
    if value is None:
        return "-"
    ms = value.total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def rule_text(definition: ScheduleDef) -> str:
    """The rule without its zone (a column of its own): ``cron */5 * * * *``, ``every 30s``."""
    rule = definition.rule
    if rule.cron is not None:
        return f"cron {rule.cron}"
    if rule.every_ms is not None:
        return f"every {format_duration_ms(rule.every_ms)}"
    assert rule.at_ms is not None
    return f"once at {moment(tick_datetime(rule.at_ms))}"


def last_run_text(run: RunInfo | None) -> Text:
    """``2026-12-01 09:00:00+01:00 succeeded in 12 ms``, or ``none yet``."""
    if run is None:
        return Text("none yet", style="dim")
    text = Text(f"{moment(run.tick)} ")
    text.append_text(state_text(run.state))
    if run.duration is not None:
        text.append(f" in {seconds(run.duration)}")
    if run.kind.value != "tick":
        text.append(f" ({run.kind.value})")
    return text


def next_text(info: ScheduleInfo) -> Text:
    if info.next_ticks:
        return Text("\n".join(moment(t) for t in info.next_ticks))
    if info.paused:
        return Text("- (paused)", style="yellow")
    return Text("none (a one-shot that has fired or passed)", style="dim")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# -- tables --------------------------------------------------------------------------
def list_table(infos: Sequence[ScheduleInfo], title: str) -> Table:
    table = Table(title=plain(title))
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("rule", overflow="fold")
    table.add_column("tz", no_wrap=True)
    table.add_column("next fire times", no_wrap=True)
    table.add_column("paused")
    table.add_column("last run", overflow="fold")
    table.add_column("source")
    for info in infos:
        table.add_row(
            plain(info.name),
            plain(rule_text(info.definition)),
            plain(info.definition.rule.tz),
            next_text(info),
            _paused_text(info),
            last_run_text(info.last_run),
            info.source if info.stored else "code (not stored yet)",
        )
    return table


def _paused_text(info: ScheduleInfo) -> Text:
    if not info.paused:
        return Text("no")
    return plain(f"yes: {info.paused_reason}" if info.paused_reason else "yes", style="yellow")


def show_renderable(
    info: ScheduleInfo, args: str, runs: Sequence[RunInfo], skips: Sequence[SkipInfo]
) -> RenderableType:
    """The definition and state as rows, then the recent runs, then the skipped ticks."""
    return Group(_fields(info, args), Text(), _runs_table(runs), Text(), _skips_table(skips))


def _fields(info: ScheduleInfo, args: str) -> Table:
    d, p = info.definition, info.definition.policy
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, RenderableType]] = [
        ("name", plain(d.name)),
        ("source", plain(f"{d.source} ({d.origin})" if d.origin else d.source)),
        ("task", plain(d.task)),
        ("args", plain(args)),
        ("queue", plain(d.queue)),
        ("priority", str(d.priority)),
        ("rule", plain(rule_text(d))),
        ("time zone", plain(d.rule.tz)),
        ("overlap", p.overlap.value),
        ("catch-up", f"{p.catchup.value} (window {format_duration_ms(p.catchup_window_ms)})"),
        ("jitter", format_duration_ms(p.jitter_ms) if p.jitter_ms else "none"),
        ("pause on failure", "yes" if p.pause_on_failure else "no"),
        ("paused", _paused_text(info)),
        ("next fire times", next_text(info)),
        ("ticks done up to", moment(info.last_tick)),
        ("fired / skipped", f"{info.fired:,} jobs / {info.skipped:,} ticks"),
    ]
    if info.buffered_tick is not None:
        rows.append(("buffered tick", moment(info.buffered_tick)))
    if not info.stored:
        rows.append(("stored", Text("not yet: a scheduler writes it when it leads", "yellow")))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _runs_table(runs: Sequence[RunInfo]) -> RenderableType:
    if not runs:
        return Text("no runs yet", style="dim")
    table = Table(title="recent runs (newest first)", title_justify="left")
    table.add_column("tick", no_wrap=True)
    table.add_column("kind")
    table.add_column("job id", no_wrap=True)
    table.add_column("state")
    table.add_column("duration", justify="right")
    errors = any(run.error for run in runs)
    if errors:  # a column only when there is something to show in it
        table.add_column("error", overflow="fold")
    for run in runs:
        cells: list[RenderableType] = [
            moment(run.tick),
            run.kind.value,
            plain(run.job_id, one_line=True),
            state_text(run.state),
            seconds(run.duration),
        ]
        if errors:
            cells.append(plain(_cut(run.error or "", ERROR_CHARS), one_line=True, style="red"))
        table.add_row(*cells)
    return table


def _skips_table(skips: Sequence[SkipInfo]) -> RenderableType:
    if not skips:
        return Text("no skipped or missed ticks", style="dim")
    table = Table(title="skipped or missed ticks (newest first)", title_justify="left")
    table.add_column("ticks", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_column("reason", overflow="fold")
    table.add_column("recorded", no_wrap=True)
    for skip in skips:
        span = moment(skip.first_tick)
        if skip.last_tick != skip.first_tick:
            span += f" … {moment(skip.last_tick)}"
        table.add_row(span, f"{skip.count:,}", plain(skip.reason, one_line=True), moment(skip.at))
    return table


def print_list(console: Console, infos: Sequence[ScheduleInfo], title: str) -> None:
    if not infos:
        console.print("no schedules yet")
        return
    console.print(list_table(infos, title))


# -- JSON ----------------------------------------------------------------------------
def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _s(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def run_json(run: RunInfo) -> dict[str, Any]:
    return {
        "tick": _iso(run.tick),
        "kind": run.kind.value,
        "job_id": run.job_id,
        "queue": run.queue,
        "fired_at": _iso(run.fired_at),
        "state": None if run.state is None else run.state.value,
        "duration_s": _s(run.duration),
        "lateness_s": _s(run.lateness),
        "error": run.error,
    }


def skip_json(skip: SkipInfo) -> dict[str, Any]:
    return {
        "first_tick": _iso(skip.first_tick),
        "last_tick": _iso(skip.last_tick),
        "count": skip.count,
        "reason": skip.reason,
        "at": _iso(skip.at),
    }


def schedule_json(info: ScheduleInfo, args: Any) -> dict[str, Any]:
    """A schedule as JSON; `args` is the decoded ``{"args": [...], "kwargs": {...}}`` (or
    None when its stored payload does not decode)."""
    d, r, p = info.definition, info.definition.rule, info.definition.policy
    return {
        "name": info.name,
        "task": d.task,
        "queue": d.queue,
        "priority": d.priority,
        "source": d.source,
        "origin": d.origin,
        "stored": info.stored,
        "call": args,
        "rule": {
            "kind": r.kind,
            "text": r.describe(),
            "cron": r.cron,
            "every_s": None if r.every_ms is None else r.every_ms / 1000,
            "at": None if r.at_ms is None else _iso(tick_datetime(r.at_ms)),
            "tz": r.tz,
            "anchor": _iso(tick_datetime(r.anchor_ms)) if r.anchor_ms else None,
        },
        "policy": {
            "overlap": p.overlap.value,
            "catchup": p.catchup.value,
            "catchup_window_s": p.catchup_window_ms / 1000,
            "jitter_s": p.jitter_ms / 1000,
            "pause_on_failure": p.pause_on_failure,
        },
        "paused": info.paused,
        "paused_reason": info.paused_reason,
        "next_ticks": [_iso(t) for t in info.next_ticks],
        "last_tick": _iso(info.last_tick),
        "buffered_tick": _iso(info.buffered_tick),
        "fired": info.fired,
        "skipped": info.skipped,
        "created_at": _iso(info.created_at),
        "updated_at": _iso(info.updated_at),
        "version": info.version,
        "last_run": None if info.last_run is None else run_json(info.last_run),
    }
