"""`corq scheduler`: run a scheduler alone (it fires schedules and runs no jobs)."""

from __future__ import annotations

import click

from corq import CorqError, Scheduler
from corq.cli.common import load_app, setup_logging
from corq.cli.worker import run_service


@click.command(short_help="Fire APP's schedules (a standby while another scheduler leads).")
@click.argument("app_path", metavar="APP")
@click.option(
    "--holder",
    default=None,
    metavar="ID",
    help="The id this scheduler leads under [default: host.pid.random].",
)
@click.option("--url", envvar="CORQ_URL", default=None, help="Broker URL (overrides the app's).")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def scheduler(app_path: str, holder: str | None, url: str | None, log_level: str) -> None:
    """Fire the schedules of APP (module:attribute of your corq.App, e.g. app:app).

    Any number of schedulers may run (every `corq worker` runs one too, unless
    --no-scheduler): one leads and fires each tick once, the others stand by and take over
    within a few seconds of its death. SIGTERM or Ctrl-C gives up the lead, so a standby
    takes over at once; a second signal exits at once.
    """
    setup_logging(log_level)
    app = load_app(app_path)
    if url:
        app.configure(url=url)
    try:
        service = Scheduler(app, holder=holder)
    except CorqError as exc:
        raise click.ClickException(str(exc)) from exc
    run_service(service)
