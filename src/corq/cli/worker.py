"""`corq worker`: run a worker process, or N of them under a supervisor."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

import click

from corq import App, CorqError, Worker
from corq.cli.common import load_app, parse_queues, setup_logging
from corq.cli.metrics import metrics_port_options, slot_metrics_port, worker_metrics

log = logging.getLogger("corq.cli")


@click.command()
@click.argument("app_path", metavar="APP")
@click.option(
    "--queues",
    "-q",
    default=None,
    metavar="Q1=W,Q2",
    help="Queues to serve, comma separated, each with an optional weight (high=5,low=1: "
    "its share of the free slots under load; 1 when not given) [default: the default queue].",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1),
    default=None,
    help="Jobs run at once per process [default: CORQ_CONCURRENCY or 100].",
)
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Worker processes under one supervisor that restarts crashed ones.",
)
@click.option("--burst", is_flag=True, help="Exit once the queues are empty (runs no scheduler).")
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="Run no scheduler here: schedules are fired by other workers or `corq scheduler` "
    "[default: one scheduler per `corq worker` command, in its first process].",
)
@click.option(
    "--worker-id",
    default=None,
    metavar="ID",
    help="A fixed id, unique among live workers: a process restarted under it takes its "
    "predecessor's jobs back at once [default: host.pid.random].",
)
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=None,
    metavar="S",
    help="Seconds running jobs get to finish on SIGTERM [default: 30].",
)
@click.option("--url", envvar="CORQ_URL", default=None, help="Broker URL (overrides the app's).")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@metrics_port_options
def worker(
    app_path: str,
    queues: str | None,
    concurrency: int | None,
    processes: int,
    burst: bool,
    no_scheduler: bool,
    worker_id: str | None,
    grace: float | None,
    url: str | None,
    log_level: str,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run jobs of APP (module:attribute of your corq.App, e.g. app:app).

    SIGTERM or Ctrl-C stops fetching and gives running jobs --grace seconds, then re-queues
    what still runs; a second signal exits at once (the jobs are recovered by other workers).
    """
    setup_logging(log_level)
    queue_weights = parse_queues(queues)  # bad queues fail here, once, not in every child
    app = load_app(app_path)  # and so does a bad app path
    if processes > 1:
        sys.exit(supervise(_child_argv(sys.argv[1:]), processes, worker_id))
    if url:
        app.configure(url=url)
    try:
        w = Worker(
            app,
            queues=queue_weights,
            concurrency=concurrency,
            burst=burst,
            grace_s=grace,
            worker_id=worker_id,
            scheduler=False if no_scheduler else None,
            observers=worker_metrics(metrics_port, metrics_host),
        )
    except CorqError as exc:
        raise click.ClickException(str(exc)) from exc
    run_until_signalled(w)


#: Collect the youngest generation every this many allocations (CPython's default is 700).
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Make cyclic GC cheap for a process that holds many live jobs.

    With 100,000 jobs in flight, CPython's default thresholds run a collection every 700
    allocations and full collections over millions of objects: measured, that took 30% of
    the worker's time. Freezing what exists at start-up (modules, the app) takes it out of
    every scan, and a higher gen-0 threshold collects less often for a little more memory.
    Only `corq worker` processes do this: a worker embedded in your process leaves GC alone.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class Service(Protocol):
    """What runs until signalled: a worker, or a scheduler on its own."""

    @property
    def app(self) -> App: ...

    def request_stop(self) -> None: ...

    async def run(self) -> None: ...


def run_until_signalled(w: Worker) -> None:
    """Run `w` until SIGTERM/SIGINT (a second one exits at once), burst end or a failure."""
    tune_gc()
    run_service(w)
    if w.abandoned_threads:
        # Threads running plain functions cannot be stopped, and the interpreter would wait
        # for them at exit; the broker gives their jobs back once this process is gone.
        logging.shutdown()
        os._exit(0)


def run_service(w: Service) -> None:
    """Run `w` on the event loop the settings ask for until SIGTERM/SIGINT (a second one
    exits at once) or its own end."""
    with asyncio.Runner(loop_factory=_loop_factory(w.app.settings.event_loop)) as runner:
        runner.run(_serve_until_signalled(w))


async def _serve_until_signalled(w: Service) -> None:
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info(
                "%s: stopping gracefully (send again to exit at once)",
                signal.Signals(signum).name,
            )
            w.request_stop()
        else:
            log.warning("second signal: exiting now; running jobs will be recovered")
            os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    watch = None
    supervisor = _supervisor()
    if supervisor is not None:
        watch = asyncio.create_task(_stop_when_orphaned(w, supervisor))
    try:
        await w.run()
    finally:
        if watch is not None:
            watch.cancel()


#: The exit code of a command-line or configuration error: restarting cannot help.
_USAGE_ERROR = 2


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop settings.event_loop asks for (None: asyncio's own)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise click.ClickException(
                "CORQ_EVENT_LOOP=uvloop but uvloop is not installed (pip install 'corq[uvloop]')"
            ) from None
        return None
    return uvloop.new_event_loop


#: Set by the supervisor in its children's environment: its own pid.
_SUPERVISOR_PID = "CORQ_SUPERVISOR_PID"


def _supervisor() -> int | None:
    """The supervisor this process must not outlive, if it was started by one.

    Also when the supervisor died while this child was starting (its parent is already
    someone else): then the watch stops it at once. A pid inherited from further up (a task
    that itself runs `corq worker`) names a live process that is not the parent: ignored.
    """
    value = os.environ.get(_SUPERVISOR_PID, "")
    if not value.isdigit():
        return None
    pid = int(value)
    if pid == os.getppid():
        return pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid  # gone already
    except PermissionError:
        return None
    return None


async def _stop_when_orphaned(w: Service, parent: int) -> None:
    """A supervised worker stops gracefully if its supervisor dies (even by SIGKILL)."""
    while os.getppid() == parent:  # noqa: ASYNC110  # no event exists for "parent died"
        await asyncio.sleep(1.0)
    log.warning("supervisor %d is gone: stopping", parent)
    w.request_stop()


def _child_argv(argv: list[str]) -> list[str]:
    """The same command with --processes and --worker-id removed (the supervisor gives each
    child its own id)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--processes", "-p", "--worker-id"):
            skip = True
            continue
        if arg.startswith(("--processes=", "--worker-id=")):
            continue
        out.append(arg)
    return [sys.executable, "-m", "corq", *out]


def slot_id(base: str | None, slot: int) -> str:
    """The fixed id of one supervised slot: a restarted child reuses it, so it ends the
    dead child's leases and takes its jobs back at once instead of after a lease."""
    prefix = base or f"{socket.gethostname()}.{os.getpid()}"
    return f"{prefix}.w{slot}"


def slot_argv(argv: list[str], slot: int, worker_id: str | None) -> list[str]:
    """The command of one supervised slot: its own fixed id, and a scheduler in slot 0 only."""
    child = [*slot_metrics_port(argv, slot), "--worker-id", slot_id(worker_id, slot)]
    if slot > 0:
        child.append("--no-scheduler")
    return child


def supervise(argv: list[str], count: int, worker_id: str | None = None) -> int:
    """Run `count` copies of a worker; restart any that crash; forward SIGTERM/SIGINT.

    Only the first copy runs a scheduler: one standby per machine is enough for failover,
    and each more would add its lease attempts and polls to the broker's load. A crashed
    first copy is restarted with its scheduler like any other.
    """
    children: dict[int, subprocess.Popen[bytes]] = {}
    stopping = {"flag": False, "signals": 0}

    def start(slot: int) -> None:
        env = dict(os.environ, **{_SUPERVISOR_PID: str(os.getpid())})
        child = slot_argv(argv, slot, worker_id)
        children[slot] = subprocess.Popen(child, env=env)
        log.info("supervisor: started worker %d (pid %d)", slot, children[slot].pid)

    def forward(signum: int, _frame: Any) -> None:
        stopping["flag"] = True
        stopping["signals"] += 1
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM if stopping["signals"] == 1 else signal.SIGKILL)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for slot in range(count):
        start(slot)
    restarts: dict[int, float] = {}
    exit_code = 0
    while True:
        time.sleep(0.2)
        alive = 0
        for slot, child in list(children.items()):
            code = child.poll()
            if code is None:
                alive += 1
            elif not stopping["flag"] and code == _USAGE_ERROR:
                log.error("supervisor: worker %d cannot start (exit code 2); stopping", slot)
                exit_code = _USAGE_ERROR
                forward(signal.SIGTERM, None)
            elif not stopping["flag"] and code != 0:
                delay = 1.0 if time.monotonic() - restarts.get(slot, 0.0) < 10 else 0.0
                log.warning("supervisor: worker %d exited with %s; restarting", slot, code)
                time.sleep(delay)
                restarts[slot] = time.monotonic()
                start(slot)
                alive += 1
        if alive == 0 and (stopping["flag"] or all(c.returncode == 0 for c in children.values())):
            return exit_code
