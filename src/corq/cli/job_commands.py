"""`corq job ID` (show) and `corq job cancel ID`.

`job` is a group whose default command is `show`, so `corq job ID` keeps working; a job
whose id is a command's name is shown with `corq job show ID`.
"""

from __future__ import annotations

from typing import Any

import click

from corq.admin.jobs import CancelledJob
from corq.cli import jobs
from corq.cli.common import app_option, make_app, run, url_option
from corq.cli.text import clean
from corq.errors import JobNotCancellableError, JobNotFoundError

#: Exit codes of `corq job cancel` beyond click's (1 error, 2 usage).
EXIT_NOT_FOUND = 3
EXIT_ENDED = 4


class _ShowByDefault(click.Group):
    """A group that runs `show` when the first argument names no command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ShowByDefault)
def job() -> None:
    """Show a job (`corq job ID`) or cancel it (`corq job cancel ID`)."""


class _NotFound(click.ClickException):
    exit_code = EXIT_NOT_FOUND


class _Ended(click.ClickException):
    exit_code = EXIT_ENDED


@click.command()
@click.argument("job_id")
@click.option("--queue", "-q", default=None, help="Queue of the job (default: search all).")
@app_option
@url_option
def cancel(job_id: str, queue: str | None, app_path: str | None, url: str | None) -> None:
    """Cancel a job that has not ended: one that waits is removed at once, a running one is
    stopped on its worker. Exit code 3: no such job; 4: it has ended already."""
    app = make_app(app_path, url)

    async def go() -> CancelledJob:
        return await app.admin().cancel(job_id, queue)

    try:
        done = run(app, go)
    except click.ClickException as exc:
        raise _classify(exc) from exc
    where = f" (it was running on worker {clean(done.worker_id)})" if done.worker_id else ""
    click.echo(f"cancelled job {clean(done.job_id)} in queue {clean(done.queue)}{where}")


def _classify(exc: click.ClickException) -> click.ClickException:
    """The exit code that says why (run() turned the corq error into a message)."""
    cause: Any = exc.__cause__
    if isinstance(cause, JobNotFoundError):
        return _NotFound(exc.message)
    if isinstance(cause, JobNotCancellableError):
        return _Ended(exc.message)
    return exc


job.add_command(jobs.job, "show")
job.add_command(cancel)
