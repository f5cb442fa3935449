"""The `corq` command line."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from corq.cli.demo import demo
from corq.cli.dev import dev
from corq.cli.jobs import dead, enqueue, job, queues
from corq.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="corq")
def cli() -> None:
    """corq: a coroutine-based distributed task queue.

    The broker comes from --url or CORQ_URL: sqlite:///corq.db (the default, in the working
    directory) or redis://127.0.0.1:6379/0.
    """


cli.add_command(worker)
cli.add_command(enqueue)
cli.add_command(job)
cli.add_command(queues)
cli.add_command(dead)
cli.add_command(demo)
cli.add_command(dev)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ValidationError as exc:  # a CORQ_* variable or App(...) argument out of range
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])} (CORQ_{str(e['loc'][0]).upper()}): {e['msg']}"
            for e in exc.errors()
        )
        click.echo(f"Error: invalid corq setting: {problems}", err=True)
        sys.exit(2)
