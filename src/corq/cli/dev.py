"""`corq dev`: everything a developer needs in one process, on the embedded broker."""

from __future__ import annotations

import shlex

import click
from rich.console import Console

from corq import App, CorqError, Settings, Worker
from corq.cli.common import load_app, parse_queues, setup_logging
from corq.cli.metrics import metrics_port_options, worker_metrics
from corq.cli.worker import run_until_signalled

#: Jobs run at once in `corq dev` unless --concurrency says otherwise (small, so logs stay
#: readable and a runaway task shows up quickly).
DEV_CONCURRENCY = 10
#: Seconds running jobs get after Ctrl-C in `corq dev` (what is still running is re-queued).
DEV_GRACE_S = 5.0


@click.command(short_help="Run APP for local development: a worker on the embedded broker.")
@click.argument("app_path", metavar="APP")
@click.option(
    "--queues",
    "-q",
    default=None,
    metavar="Q1=W,Q2",
    help="Queues to serve, comma separated, each with an optional weight (high=5,low=1) "
    "[default: every queue APP's tasks use].",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1),
    default=DEV_CONCURRENCY,
    show_default=True,
    help="Jobs run at once.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=DEV_GRACE_S,
    show_default=True,
    metavar="S",
    help="Seconds running jobs get to finish on Ctrl-C.",
)
@click.option(
    "--url",
    envvar="CORQ_URL",
    default=None,
    metavar="URL",
    help="Broker URL [env CORQ_URL; default: APP's, which is sqlite:///corq.db unless set].",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@metrics_port_options
def dev(
    app_path: str,
    queues: str | None,
    concurrency: int,
    grace: float,
    url: str | None,
    log_level: str,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run APP (module:attribute, e.g. app:app) for local development, in one process.

    A worker on the embedded SQLite broker (corq.db in the working directory) that also
    promotes delayed jobs and fires schedules, with debug-friendly defaults. It listens on
    no network port unless --metrics-port asks it to.
    Ctrl-C stops it gracefully; a second Ctrl-C exits at once.
    """
    setup_logging(log_level)
    named = parse_queues(queues)
    app = load_app(app_path)
    if url:
        app.configure(url=url)
    queue_weights = named or dict.fromkeys(_app_queues(app), 1)
    try:
        w = Worker(
            app,
            queues=queue_weights,
            concurrency=concurrency,
            grace_s=grace,
            observers=worker_metrics(metrics_port, metrics_host),
        )
    except CorqError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_banner(app_path, app, w)
    run_until_signalled(w)


def _app_queues(app: App) -> list[str]:
    """Every queue the app's tasks send to (and the default queue)."""
    return sorted(app.task_queues() | {app.settings.default_queue})


def _print_banner(app_path: str, app: App, w: Worker) -> None:
    console = Console(highlight=False)
    url = app.settings.url
    # `corq enqueue` finds the broker by itself only when it is the default one.
    url_flag = "" if url == Settings.model_fields["url"].default else f" --url {shlex.quote(url)}"
    tasks = ", ".join(sorted(app.registry)) or "(none registered)"
    console.print(f"[bold]corq dev[/bold]  {app_path}", soft_wrap=True)
    console.print(f"  tasks        {tasks}", soft_wrap=True)
    console.print(f"  broker       {url}", soft_wrap=True)
    console.print(f"  queues       {', '.join(w.queues)}", soft_wrap=True)
    console.print(f"  concurrency  {w.concurrency}", soft_wrap=True)
    periodic = ", ".join(sorted(app.periodic_schedules)) or "none in code"
    console.print(f"  schedules    {periodic} (fired by this process)", soft_wrap=True)
    console.print(
        f"  enqueue      corq enqueue TASK --args '[...]'{url_flag}", soft_wrap=True, markup=False
    )
    console.print(f"  look         corq job ID{url_flag} · corq queues{url_flag}", soft_wrap=True)
    console.print("  stop         Ctrl-C", soft_wrap=True)
