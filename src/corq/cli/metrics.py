"""`corq metrics` (the cluster collector), `corq autoscale`, and the workers' metrics port."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from corq.cli.common import load_app, setup_logging
from corq.errors import BrokerError
from corq.metrics import (
    DEFAULT_METRICS_PORT,
    ClusterMetrics,
    MetricsError,
    MetricsServer,
    QueueSignal,
    ScalePolicy,
    WorkerMetrics,
    serve,
    signals_json,
)

F = TypeVar("F", bound=Callable[..., Any])

#: Where metrics listen unless told otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"


def metrics_port_options(command: F) -> F:
    """`--metrics-port` and `--metrics-host`, for `corq worker` and `corq dev`."""
    command = click.option(
        "--metrics-host",
        default=DEFAULT_HOST,
        show_default=True,
        metavar="HOST",
        help="Address the metrics port binds (0.0.0.0 to let other machines scrape it).",
    )(command)
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=None,
        metavar="N",
        help="Serve this process's Prometheus metrics on port N (/metrics); with -p, each "
        "worker process on N + its slot (0, 1...).",
    )(command)


def worker_metrics(port: int | None, host: str) -> list[WorkerMetrics]:
    """The observers for a worker: one serving on `port`, or none without a port."""
    if port is None:
        return []
    metrics = WorkerMetrics()
    try:
        serve(metrics.registry, host, port)
    except MetricsError as exc:  # a usage error (exit 2): a supervisor does not restart it
        raise click.BadParameter(str(exc), param_hint="--metrics-port") from exc
    return [metrics]


def slot_metrics_port(argv: list[str], slot: int) -> list[str]:
    """A supervised slot's command with its own metrics port: the given port + slot (0, any
    free port, stays 0)."""

    def shifted(port: str) -> str:
        return str(int(port) + slot) if port.isdigit() and int(port) > 0 else port

    out = list(argv)
    for at, arg in enumerate(out):
        if arg == "--metrics-port" and at + 1 < len(out):
            out[at + 1] = shifted(out[at + 1])
        elif arg.startswith("--metrics-port="):
            out[at] = f"--metrics-port={shifted(arg.split('=', 1)[1])}"
    return out


def scale_options(command: F) -> F:
    """The autoscaling formula's bounds, shared by `corq metrics` and `corq autoscale`."""
    for option in reversed(
        [
            click.option(
                "--min-workers",
                type=click.IntRange(0),
                default=0,
                show_default=True,
                help="Fewest workers the signal asks for.",
            ),
            click.option(
                "--max-workers",
                type=click.IntRange(0),
                default=100,
                show_default=True,
                help="Most workers the signal asks for.",
            ),
            click.option(
                "--per-worker",
                type=click.IntRange(1),
                default=None,
                metavar="N",
                help="Jobs one worker runs at once [default: the mean concurrency of the "
                "queue's live workers, else CORQ_CONCURRENCY].",
            ),
            click.option(
                "--queues",
                "-q",
                default=None,
                metavar="Q1,Q2",
                help="Only these queues [default: every known queue].",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(0.1),
                default=None,
                metavar="S",
                help="Seconds a broker read may take [default: the socket timeout, 5].",
            ),
            click.option(
                "--url", envvar="CORQ_URL", default=None, help="Broker URL (overrides the app's)."
            ),
        ]
    ):
        command = option(command)
    return command


def _cluster(
    app_path: str,
    url: str | None,
    bounds: tuple[int, int, int | None],
    queues: str | None,
    timeout: float | None,
    flow: bool = True,
) -> ClusterMetrics:
    app = load_app(app_path)
    if url:
        app.configure(url=url)
    min_workers, max_workers, per_worker = bounds
    try:
        policy = ScalePolicy(
            min_workers=min_workers,
            max_workers=max_workers,
            per_worker=per_worker,
            default_concurrency=app.settings.concurrency,
        )
    except MetricsError as exc:
        raise click.UsageError(str(exc)) from exc
    names = [q.strip() for q in (queues or "").split(",") if q.strip()]
    return ClusterMetrics(app, policy=policy, timeout_s=timeout, flow=flow, queues=names)


@click.command(short_help="Serve the cluster's metrics and autoscaling signal over HTTP.")
@click.argument("app_path", metavar="APP")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_METRICS_PORT,
    show_default=True,
    help="Port to serve /metrics and /autoscale on.",
)
@click.option(
    "--no-flow",
    is_flag=True,
    help="Leave out the flow-control metrics (one broker call per queue per scrape).",
)
@scale_options
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def metrics(
    app_path: str,
    host: str,
    port: int,
    no_flow: bool,
    min_workers: int,
    max_workers: int,
    per_worker: int | None,
    queues: str | None,
    timeout: float | None,
    url: str | None,
    log_level: str,
) -> None:
    """Serve APP's cluster metrics, read from the broker at every scrape.

    /metrics: queue depth by state, the oldest ready job's age, flow-control waits,
    schedule ticks, workers, breakers and the autoscaling signal (Prometheus text);
    /autoscale: the signal as JSON. A scrape while the broker is down answers
    corq_broker_up 0 within --timeout.
    """
    setup_logging(log_level)
    cluster = _cluster(
        app_path, url, (min_workers, max_workers, per_worker), queues, timeout, not no_flow
    )
    try:
        server = cluster.serve(host, port)
    except MetricsError as exc:
        cluster.close()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"corq metrics: http://{host}:{server.port}/metrics and /autoscale")
    _wait_until_interrupted(server)
    cluster.close()


def _wait_until_interrupted(server: MetricsServer) -> None:
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@click.command(short_help="Print the autoscaling signal of each queue.")
@click.argument("app_path", metavar="APP")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (what /autoscale serves).")
@scale_options
def autoscale(
    app_path: str,
    as_json: bool,
    min_workers: int,
    max_workers: int,
    per_worker: int | None,
    queues: str | None,
    timeout: float | None,
    url: str | None,
) -> None:
    """Print APP's autoscaling signal: per queue, jobs ready and running, the oldest ready
    job's age, free slots, and the workers wanted:
    clamp(ceil((ready + running) / per worker), min, max).
    """
    cluster = _cluster(app_path, url, (min_workers, max_workers, per_worker), queues, timeout)
    try:
        signals = cluster.signals()
    except (BrokerError, TimeoutError) as exc:
        raise click.ClickException(f"broker unreachable: {str(exc) or 'timed out'}") from exc
    finally:
        cluster.close()
    if as_json:
        click.echo(signals_json(signals))
    else:
        _print_signals(signals)


def _print_signals(signals: list[QueueSignal]) -> None:
    table = Table(box=None)
    for column in ("queue", "ready", "running", "oldest", "workers", "free", "desired"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for s in signals:
        paused = " (paused)" if s.paused else ""
        table.add_row(
            f"{s.queue}{paused}",
            str(s.ready),
            str(s.running),
            f"{s.oldest_ready_age_s:.1f}s",
            str(s.workers),
            str(s.free_slots),
            str(s.desired_workers),
        )
    Console(highlight=False).print(table)
