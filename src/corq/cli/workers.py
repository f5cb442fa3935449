"""`corq workers | inspect`: the registry of workers, their running jobs, their stacks.

What is shown comes from the workers' published facts (see corq/worker/facts.py): a worker
not heard from for a lease is shown as lost, then disappears. Host names, queue and task
names come from the broker and are printed as plain text (no console markup).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from corq import App
from corq.admin.jobs import MAX_INSPECT_TIMEOUT_S
from corq.admin.workers import RunningJobView, format_ms, running_jobs
from corq.cli.common import app_option, make_app, run, url_option
from corq.cli.text import clean, plain
from corq.stacks import Frame, WorkerStacks
from corq.worker_info import WorkerInfo, WorkerState

console = Console(width=None if sys.stdout.isatty() else 200)

STATE_STYLES = {WorkerState.ALIVE: "green", WorkerState.STOPPING: "yellow", WorkerState.LOST: "red"}


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def in_flight(info: WorkerInfo) -> int:
    """Jobs the worker runs (its list of them may be cut short)."""
    return max(info.in_flight, len(info.running))


def queues_text(info: WorkerInfo) -> str:
    return ",".join(q if w == 1 else f"{q}={w}" for q, w in info.queues.items())


def state_text(state: WorkerState) -> Text:
    return Text(state.value, style=STATE_STYLES.get(state, ""))


def workers_table(infos: Sequence[WorkerInfo], now_ms: int, *, title: str | None) -> Table:
    """One row per worker: who, what it serves, how loaded, how healthy."""
    table = Table(title=title)
    for name in ("worker", "host", "pid", "version", "queues", "conc", "in flight", "cpu"):
        table.add_column(name, justify="right" if name in {"pid", "conc", "in flight"} else "left")
    for name in ("rss", "lag", "age", "heartbeat", "state"):
        table.add_column(name, justify="left" if name == "state" else "right")
    for info in infos:
        table.add_row(
            plain(info.worker_id, one_line=True),
            plain(info.host, one_line=True),
            str(info.pid),
            plain(info.version, one_line=True),
            plain(queues_text(info), one_line=True),
            str(info.concurrency),
            str(in_flight(info)),
            f"{info.cpu_percent:.0f}%",
            format_bytes(info.rss_bytes),
            format_ms(info.loop_lag_ms),
            format_ms(max(0, now_ms - info.started_at_ms)),
            format_ms(max(0, now_ms - info.heartbeat_at_ms)) + " ago",
            state_text(info.state),
        )
    return table


def stacks_command(worker_id: str) -> str:
    return f"corq inspect {worker_id} --stacks"


def running_table(views: Sequence[RunningJobView], *, title: str | None) -> Table:
    """One row per running job, longest first; a stuck one in red, with why."""
    table = Table(title=title)
    for name in ("job", "task", "queue", "worker", "attempt", "executor", "running", "stuck"):
        table.add_column(name, justify="right" if name in {"attempt", "running"} else "left")
    for view in views:
        job = view.job
        stuck = Text(view.stuck, style="red") if view.stuck else Text("")
        table.add_row(
            plain(job.job_id, one_line=True),
            plain(job.task, one_line=True),
            plain(job.queue, one_line=True),
            plain(view.worker_id, one_line=True),
            str(job.attempt),
            plain(job.executor, one_line=True),
            Text(format_ms(view.run_ms), style="red" if view.stuck else ""),
            stuck,
        )
    return table


def _to_json(value: WorkerInfo | RunningJobView) -> dict[str, Any]:
    return dataclasses.asdict(value)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the workers' facts as JSON.")
@app_option
@url_option
def workers(as_json: bool, app_path: str | None, url: str | None) -> None:
    """Every worker: host, pid, version, queues=weights, concurrency, jobs in flight, CPU,
    memory, event-loop lag, age, last heartbeat, state (a lost one is removed later)."""
    app = make_app(app_path, url)
    infos = run(app, lambda: app.admin().workers())
    if as_json:
        _echo_json([_to_json(i) for i in infos])
        return
    if not infos:
        console.print("no workers")
        return
    console.print(workers_table(infos, app.clock.now_ms(), title=f"workers on {app.settings.url}"))


@click.command()
@click.argument("worker_id", required=False, metavar="[WORKER]")
@click.option("--running", "show_running", is_flag=True, help="Running jobs, stuck ones flagged.")
@click.option("--stacks", is_flag=True, help="Every asyncio task's and thread's stack (live).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=MAX_INSPECT_TIMEOUT_S),
    default=5.0,
    show_default=True,
    metavar="S",
    help="How long to wait for a worker's answer (--stacks).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@app_option
@url_option
def inspect(
    worker_id: str | None,
    show_running: bool,
    stacks: bool,
    timeout: float,
    as_json: bool,
    app_path: str | None,
    url: str | None,
) -> None:
    """Look into live workers without stopping them: their running jobs (--running, the
    default), or one worker's stacks (WORKER --stacks), through the broker."""
    if stacks and worker_id is None:
        raise click.UsageError("--stacks needs a WORKER (see corq workers)")
    app = make_app(app_path, url)
    if stacks:
        _print_stacks(app, worker_id or "", timeout, as_json=as_json)
        return
    _print_running(app, worker_id, as_json=as_json)


def _print_running(app: App, worker_id: str | None, *, as_json: bool) -> None:
    infos = run(app, lambda: app.admin().workers())
    if worker_id is not None:
        infos = [i for i in infos if i.worker_id == worker_id]
        if not infos:
            raise click.ClickException(f"no worker {worker_id!r} is registered (see corq workers)")
    views = running_jobs(infos, app.clock.now_ms())
    if as_json:
        _echo_json(
            [
                {**_to_json(v), "stacks": stacks_command(v.worker_id) if v.stuck else None}
                for v in views
            ]
        )
        return
    if not views:
        console.print("no running jobs" + (f" on {worker_id}" if worker_id else ""))
        return
    console.print(running_table(views, title=f"running jobs on {app.settings.url}"))
    for worker in dict.fromkeys(v.worker_id for v in views if v.stuck):
        console.print(
            Text.assemble(
                "stuck on ",
                plain(worker, one_line=True),
                ": see its stack with ",
                (plain(stacks_command(worker), one_line=True)),
            ),
            highlight=False,
        )


def _print_stacks(app: App, worker_id: str, timeout: float, *, as_json: bool) -> None:
    """Ask the worker for its stacks through the broker (it keeps running); a worker that
    does not answer in time is one line (WorkerNotAnsweringError), never a traceback."""
    stacks = run(app, lambda: app.admin().inspect_stacks(worker_id, timeout))
    if as_json:
        _echo_json(dataclasses.asdict(stacks))
        return
    click.echo(render_stacks(stacks))


def _frames_text(frames: Sequence[Frame], indent: str) -> list[str]:
    return [f"{indent}{f.file}:{f.line} in {f.function}" for f in frames] or [
        f"{indent}(no frames)"
    ]


def render_stacks(stacks: WorkerStacks) -> str:
    """Plain text: each asyncio task (with the job it runs), then each thread, outermost
    frame first, as a traceback reads."""
    lines = [
        clean(
            f"worker {stacks.worker_id}: {len(stacks.tasks)} asyncio task(s), "
            f"{len(stacks.threads)} thread(s)",
            one_line=True,
        )
    ]
    for task in stacks.tasks:
        job = f" running job {task.job_id} [{task.queue}]" if task.job_id else ""
        lines.append(clean(f"task {task.name}{job}", one_line=True))
        lines += [clean(line, one_line=True) for line in _frames_text(task.frames, "    ")]
    if stacks.tasks_omitted:
        lines.append(f"... and {stacks.tasks_omitted} more task(s) not shown")
    for thread in stacks.threads:
        lines.append(clean(f"thread {thread.name} ({thread.ident})", one_line=True))
        lines += [clean(line, one_line=True) for line in _frames_text(thread.frames, "    ")]
    return "\n".join(lines)
