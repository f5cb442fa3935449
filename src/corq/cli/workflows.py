"""`corq workflow ID [--json | --counts | --cancel]`: look at a workflow, or cancel it.

It reads through the workflow's handle (``app.workflow(id)``), the same calls Python
makes: the workflow's record, then its jobs in pages of 1,000. An unknown id, or one no
broker could hold, is one line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable
from typing import TypeVar

import click
from rich.console import Console

from corq import WorkflowNotFoundError
from corq.cli.common import app_option, make_app, run, url_option
from corq.cli.text import clean
from corq.cli.values import UsageLine
from corq.cli.workflow_view import print_workflow, workflow_json

T = TypeVar("T")

# Piped output is not cut at 80 columns: ids must stay whole for scripts to use them.
console = Console(width=None if sys.stdout.isatty() else 200)


@click.command(short_help="Show a workflow as a tree of its jobs, or cancel it.")
@click.argument("workflow_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the workflow and its jobs as JSON.")
@click.option("--counts", is_flag=True, help="Only the header: state and counts (one cheap read).")
@click.option(
    "--cancel",
    is_flag=True,
    help="Cancel every job not started yet (their dependents end upstream_failed); running "
    "jobs finish.",
)
@app_option
@url_option
def workflow(
    workflow_id: str,
    as_json: bool,
    counts: bool,
    cancel: bool,
    app_path: str | None,
    url: str | None,
) -> None:
    """Show workflow ID (wf_..., or the id of a job sent with depends_on): its kind,
    state and counts, then its jobs as a tree (chains, groups, chords) or, for any other
    graph, each job with the jobs it waits for; each job's task, queue, state, and error."""
    if not workflow_id:
        raise UsageLine("give the workflow's id (wf_..., or the id of a depends_on job)")
    app = make_app(app_path, url)
    if cancel:
        cancelled = run(app, lambda: _found(workflow_id, app.workflow(workflow_id).cancel()))
        if as_json:
            click.echo(json.dumps({"id": workflow_id, "cancelled": cancelled}))
        else:
            click.echo(
                f"cancelled {cancelled:,} job{'s' if cancelled != 1 else ''} of workflow "
                f"{clean(workflow_id, one_line=True)} (jobs already running finish)"
            )
        return

    async def show() -> None:
        # Printed here rather than returned: asyncio.run's teardown formats the repr of its
        # task's result, which for 10,000 jobs takes a noticeable part of a second.
        status = await _found(workflow_id, app.workflow(workflow_id).status(jobs=not counts))
        if as_json:
            click.echo(json.dumps(workflow_json(status)))
        else:
            print_workflow(console, status)

    run(app, show)


async def _found(workflow_id: str, call: Awaitable[T]) -> T:
    """The call's answer; one message for a workflow that is not there, whichever call
    noticed."""
    try:
        return await call
    except WorkflowNotFoundError:
        raise click.ClickException(
            f"workflow {clean(workflow_id, one_line=True)} not found (finished and expired, or "
            "never created)"
        ) from None
