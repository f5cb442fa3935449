"""`corq demo`: run the bundled example app end to end, with nothing to set up."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from corq.cli.workflow_view import print_workflow


@click.command(short_help="Run the bundled example app end to end, with nothing to set up.")
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="Run on this broker instead, e.g. redis://127.0.0.1:6379/0 "
    "[default: sqlite:///corq-demo.db, made afresh in the working directory].",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    metavar="S",
    help="Give up, and exit 1, if the jobs have not all finished by then.",
)
@click.option(
    "--log-level",
    default="error",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="corq's own log lines shown above the progress bars (warning shows each retry).",
)
def demo(url: str | None, timeout_s: float, log_level: str) -> None:
    """Run the bundled example app (corq.demo.tasks) end to end and summarize what happened.

    A worker runs in this process while the demo enqueues HTTP fetches (against a local
    server on 127.0.0.1), CPU-bound jobs in the process pool, async jobs that report
    progress, flaky jobs that succeed on retry, delayed jobs, and a small workflow (a chain
    with a chord, and a job sent with depends_on). Exits 0 when every job succeeded.
    """
    from corq.demo.run import run_demo  # imported here: `corq --help` stays quick

    # Piped output is not cut at 80 columns, so ids and commands stay whole.
    console = Console(width=None if sys.stdout.isatty() else 120)
    sys.exit(
        run_demo(
            url,
            show_workflow=print_workflow,
            timeout_s=timeout_s,
            console=console,
            log_level=log_level,
        )
    )
