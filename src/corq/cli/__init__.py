"""The `corq` command line."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from corq import CorqError
from corq.cli.breakers import reset_breaker
from corq.cli.common import describe_settings_error
from corq.cli.dead import dead
from corq.cli.demo import demo
from corq.cli.dev import dev
from corq.cli.events import events
from corq.cli.job_commands import job
from corq.cli.jobs import enqueue, queues
from corq.cli.metrics import autoscale, metrics
from corq.cli.ops import config, queue, task, tasks
from corq.cli.scheduler import scheduler
from corq.cli.schedules import schedule
from corq.cli.top import top
from corq.cli.worker import worker
from corq.cli.workers import inspect, workers
from corq.cli.workflows import workflow


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="corq")
def cli() -> None:
    """corq: a coroutine-based distributed task queue.

    The broker comes from --url or CORQ_URL: sqlite:///corq.db (the default, in the working
    directory) or redis://127.0.0.1:6379/0.
    """


cli.add_command(worker)
cli.add_command(scheduler)
cli.add_command(enqueue)
cli.add_command(job)
cli.add_command(queues)
cli.add_command(dead)
cli.add_command(queue)
cli.add_command(task)
task.add_command(reset_breaker)
cli.add_command(tasks)
cli.add_command(config)
cli.add_command(events)
cli.add_command(schedule)
cli.add_command(workflow)
cli.add_command(demo)
cli.add_command(dev)
cli.add_command(metrics)
cli.add_command(autoscale)
cli.add_command(workers)
cli.add_command(inspect)
cli.add_command(top)


def main() -> None:
    """Run the CLI; what escapes a command as a corq or settings error is one line, never a
    traceback (click itself handles usage errors)."""
    try:
        cli(standalone_mode=True)
    except ValidationError as exc:  # a CORQ_* variable or App(...) argument out of range
        click.echo(f"Error: {describe_settings_error(exc)}", err=True)
        sys.exit(2)
    except CorqError as exc:  # raised outside `run` (e.g. a worker refusing its options)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
