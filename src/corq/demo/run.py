"""`corq demo`: the example app end to end, on a fresh SQLite file, with nothing to set up.

It starts a small HTTP server on 127.0.0.1 for the fetch jobs to call, runs a worker in this
process, enqueues a few jobs of each kind and a small workflow (`corq.demo.basket`), shows
their progress, then sends the flow-control jobs (`corq.demo.flow`) and ends with a summary.
Every wait is bounded: past the overall timeout the demo says what is still pending and
exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

import corq
from corq.demo import tasks
from corq.demo.basket import JOBS as BASKET_JOBS
from corq.demo.basket import Basket, ShowWorkflow
from corq.demo.flow import FlowPart
from corq.demo.operations import OperationsPart
from corq.demo.tasks import DEMO_QUEUE, DEMO_URL
from corq.demo.ticks import EVERY, SCHEDULE, TICKS, Ticks
from corq.worker import JobCounts

#: The demo's SQLite file, in the working directory (made afresh on every run).
DEMO_FILE = "corq-demo.db"
#: How often the progress display reads the jobs' records.
POLL_S = 0.1
#: The worker must be registered and fetching within this long.
START_TIMEOUT_S = 15.0
#: Stopping the worker at the end (its jobs are done by then) takes at most this long.
STOP_TIMEOUT_S = 15.0
#: Coroutine jobs the demo worker runs at once.
CONCURRENCY = 50
#: How long the delayed jobs wait before they may start.
REMINDER_DELAY_S = 1.5

_FINISHED = frozenset(
    {
        corq.JobStatus.SUCCEEDED,
        corq.JobStatus.DEAD,
        corq.JobStatus.CANCELLED,
        corq.JobStatus.UPSTREAM_FAILED,
    }
)


class DemoError(Exception):
    """The demo could not run to the end."""


@dataclass(frozen=True, kw_only=True)
class Step:
    """Jobs of one task, and what they show."""

    #: The task of the jobs.
    task: corq.Task[Any, Any]
    #: What this kind of job demonstrates (a column of the summary).
    shows: str
    #: One unsent job spec per job (``task.s(...)``, options by ``with_options``).
    specs: list[corq.JobSpec[Any]]
    #: Seconds the jobs wait before they may start (already in their specs' options).
    delay_s: float | None = None


@dataclass(kw_only=True)
class Line:
    """The jobs of one step as the demo follows them."""

    step: Step
    handles: list[corq.JobHandle[Any]] = field(default_factory=list)
    #: Latest record of each job, by id.
    records: dict[str, corq.Job] = field(default_factory=dict)
    bar: TaskID | None = None

    @property
    def name(self) -> str:
        return self.step.task.name

    def finished(self, handle: corq.JobHandle[Any]) -> bool:
        record = self.records.get(handle.id)
        return record is not None and record.status in _FINISHED

    @property
    def done(self) -> int:
        return sum(1 for h in self.handles if self.finished(h))

    @property
    def retried(self) -> int:
        """Attempts beyond each job's first."""
        return sum(max(0, r.attempt - 1) for r in self.records.values())

    def progress(self) -> float:
        """Finished jobs, plus the fractions running jobs reported."""
        running = sum(
            r.progress or 0.0 for r in self.records.values() if r.status is corq.JobStatus.RUNNING
        )
        return self.done + running

    def status_text(self) -> str:
        counts = Counter(r.status for r in self.records.values())
        waiting = len(self.handles) - len(self.records)
        if counts[corq.JobStatus.SUCCEEDED] == len(self.handles):
            parts = ["[green]done[/green]"]
        else:
            parts = [f"{counts[s]} {label}" for s, label in _SHOWN_STATES.items() if counts[s]]
        if waiting:
            parts.insert(0, f"{waiting} sent")
        if self.retried:
            parts.append(f"{self.retried} retried")
        bad = sum(counts[s] for s in _FINISHED if s is not corq.JobStatus.SUCCEEDED)
        if bad:
            parts.append(f"[red]{bad} did not succeed[/red]")
        return " · ".join(parts)


#: States shown while jobs run, and their labels.
_SHOWN_STATES = {
    corq.JobStatus.SCHEDULED: "scheduled",
    corq.JobStatus.QUEUED: "queued",
    corq.JobStatus.RUNNING: "running",
    corq.JobStatus.FAILED: "failed, retry due",
    corq.JobStatus.SUCCEEDED: "succeeded",
}


def plan(base_url: str) -> list[Step]:
    """The jobs the demo sends: a handful of each kind, so it looks like real work."""
    return [
        Step(
            task=tasks.fetch_url,
            shows="HTTP GET, thread pool",
            specs=[tasks.fetch_url.s(f"{base_url}/products/{i}") for i in range(1, 21)],
        ),
        Step(
            task=tasks.count_primes,
            shows="CPU-bound, process pool",
            specs=[tasks.count_primes.s(n) for n in (200_000, 220_000, 240_000, 260_000)],
        ),
        Step(
            task=tasks.clean_dataset,
            shows="async, reports progress",
            specs=[tasks.clean_dataset.s(batch) for batch in range(1, 6)],
        ),
        Step(
            task=tasks.charge_payment,
            shows="fails, succeeds on retry",
            specs=[tasks.charge_payment.s(1001 + i, failures=1 + i % 2) for i in range(6)],
        ),
        Step(
            task=tasks.render_thumbnail,
            shows="crashes its process, runs again",
            specs=[tasks.render_thumbnail.s(image) for image in (1, 2)],
        ),
        Step(
            task=tasks.send_reminder,
            shows=f"delay={REMINDER_DELAY_S:g}s",
            specs=[
                tasks.send_reminder.s(user).with_options(delay=REMINDER_DELAY_S)
                for user in ("ann", "bob", "chen")
            ],
            delay_s=REMINDER_DELAY_S,
        ),
    ]


# -- the local HTTP server the fetch jobs call -------------------------------------------
class _ShopHandler(BaseHTTPRequestHandler):
    """Answers every GET with a small JSON product, after a little think time."""

    def do_GET(self) -> None:
        time.sleep(random.uniform(0.02, 0.15))
        product = {
            "path": self.path,
            "name": f"product {self.path.rsplit('/', 1)[-1]}",
            "price": round(random.uniform(1, 100), 2),
            "tags": ["demo"] * random.randint(1, 20),
        }
        body = json.dumps(product).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the demo shows progress, not an access log."""


@contextlib.contextmanager
def local_http_server() -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 and an ephemeral port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ShopHandler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="corq-demo-http",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- running -----------------------------------------------------------------------------
def run_demo(
    url: str | None = None,
    *,
    show_workflow: ShowWorkflow,
    timeout_s: float = 60.0,
    console: Console | None = None,
    log_level: str = "error",
) -> int:
    """Run the demo; 0 when every job succeeded. `show_workflow` prints the workflow the
    way `corq workflow ID` does (the CLI's view, handed in: the CLI is the layer above)."""
    console = console or Console()
    url = url or DEMO_URL
    if url == DEMO_URL:
        try:
            _remove_demo_database()
        except OSError as exc:
            console.print(f"[red bold]Cannot remove the previous {DEMO_FILE}:[/red bold] {exc}")
            return 1
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    corq_log = logging.getLogger("corq")
    saved_level = corq_log.level
    corq_log.addHandler(handler)
    corq_log.setLevel(log_level.upper())
    try:
        with local_http_server() as base_url:
            return asyncio.run(_run(url, base_url, timeout_s, console, show_workflow))
    finally:
        corq_log.removeHandler(handler)
        corq_log.setLevel(saved_level)


def _remove_demo_database() -> None:
    """Start from an empty file, so every run of the demo is the same."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(DEMO_FILE + suffix).unlink(missing_ok=True)


async def _run(
    url: str, base_url: str, timeout_s: float, console: Console, show_workflow: ShowWorkflow
) -> int:
    app = tasks.app
    app.configure(url=url)
    try:
        try:
            await asyncio.wait_for(app.client().backend.ping(), START_TIMEOUT_S)
        except (corq.BrokerError, TimeoutError) as exc:
            console.print(f"[red bold]Cannot reach the broker at {url}:[/red bold] {exc}")
            return 1
        return await _run_jobs(app, url, base_url, timeout_s, console, show_workflow)
    finally:
        await app.aclose()


async def _run_jobs(
    app: corq.App,
    url: str,
    base_url: str,
    timeout_s: float,
    console: Console,
    show_workflow: ShowWorkflow,
) -> int:
    lines = [Line(step=step) for step in plan(base_url)]
    ticks = Ticks(app=app)
    basket = Basket(app=app, base_url=base_url)
    flow = FlowPart(app=app)
    started = time.monotonic()
    worker = corq.Worker(app, queues=[DEMO_QUEUE], concurrency=CONCURRENCY, grace_s=2.0)
    operations = OperationsPart(app=app, worker=worker)
    console.print(
        f"[bold]corq demo[/bold]: {sum(len(ln.step.specs) for ln in lines)} jobs "
        f"of {len(lines)} tasks, a workflow of {BASKET_JOBS} jobs and a schedule every "
        f"{EVERY.total_seconds():g}s, then flow control and an operator's levers, "
        f"one worker in this process, broker {url}"
    )
    try:
        async with asyncio.timeout(timeout_s):
            await _start_worker(worker)
            await ticks.start()
            await _follow(lines, ticks, basket, worker, console)
            await flow.send()
            await flow.wait()
            await operations.run()
    except TimeoutError:
        done = sum(line.done for line in lines)
        total = sum(len(line.handles) for line in lines)
        pending = "; ".join(p for p in (_pending(lines), basket.pending(), flow.pending()) if p)
        console.print(
            f"[red bold]The demo did not finish within {timeout_s:g}s[/red bold]: "
            f"{done} of {total} jobs done, {ticks.done} of {TICKS} ticks. "
            f"Still pending: {pending or 'nothing sent yet'}."
        )
        return 1
    except (DemoError, corq.CorqError) as exc:
        console.print(f"[red bold]The demo stopped:[/red bold] {exc}")
        return 1
    finally:
        await ticks.stop()
        failure = await _stop_worker(worker)
    if failure is not None:
        console.print(f"[red bold]The worker failed:[/red bold] {failure!r}")
        return 1
    failed = _summarize(lines, ticks, time.monotonic() - started, console, worker.counts)
    workflow_ok = await basket.summarize(console, show_workflow)
    flow_ok = flow.summarize(console)
    operations_ok = operations.summarize(console)
    _look_around(lines, basket, url, console)
    return 1 if failed or not workflow_ok or not flow_ok or not operations_ok else 0


async def _start_worker(worker: corq.Worker) -> None:
    try:
        await asyncio.wait_for(worker.start(), START_TIMEOUT_S)
    except TimeoutError:
        raise DemoError(
            f"the worker did not start within {START_TIMEOUT_S:g}s "
            f"(is the broker at {worker.app.settings.url} reachable? --log-level warning shows "
            "what the worker tried)"
        ) from None
    except Exception as exc:
        raise DemoError(f"the worker stopped at start: {type(exc).__name__}: {exc}") from exc


async def _follow(
    lines: Sequence[Line], ticks: Ticks, basket: Basket, worker: corq.Worker, console: Console
) -> None:
    """Send the jobs and the workflow, then show their progress until every one has
    finished and the schedule's ticks have run."""
    progress = Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(bar_width=28),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )
    with progress:
        for line in lines:
            line.bar = progress.add_task(line.name, total=len(line.step.specs), status="")
        flow = progress.add_task("workflow", total=BASKET_JOBS, status="")
        schedule = progress.add_task(SCHEDULE, total=TICKS, status="")
        total = progress.add_task(
            "all jobs", total=sum(len(ln.step.specs) for ln in lines), status=""
        )
        # Every job of every task in one bulk step (one round trip per queue).
        handles = iter(await tasks.app.enqueue_many([s for ln in lines for s in ln.step.specs]))
        for line in lines:
            line.handles = [next(handles) for _ in line.step.specs]
        await basket.start()
        while True:
            await _refresh(lines)
            await ticks.refresh()
            await basket.refresh()
            for line in lines:
                assert line.bar is not None
                progress.update(line.bar, completed=line.progress(), status=line.status_text())
            progress.update(flow, completed=basket.done, status=basket.status_text())
            progress.update(schedule, completed=ticks.done, status=ticks.status_text())
            done = sum(line.done for line in lines)
            progress.update(total, completed=done, status=_elapsed(progress, total))
            jobs_done = all(line.done == len(line.handles) for line in lines)
            if jobs_done and ticks.done == TICKS and basket.finished:
                return
            if worker.stopped:
                raise DemoError(f"the worker stopped early: {await _failure(worker)}")
            await asyncio.sleep(POLL_S)


def _elapsed(progress: Progress, task_id: TaskID) -> str:
    elapsed = progress.tasks[task_id].elapsed or 0.0
    return f"{elapsed:.1f}s"


async def _refresh(lines: Sequence[Line]) -> None:
    """Read the record of every job not finished yet."""
    pending = [(line, h) for line in lines for h in line.handles if not line.finished(h)]
    records = await asyncio.gather(*(h.info() for _, h in pending))
    for (line, handle), record in zip(pending, records, strict=True):
        line.records[handle.id] = record


def _pending(lines: Sequence[Line]) -> str:
    parts = []
    for line in lines:
        states = Counter(
            str(line.records[h.id].status) if h.id in line.records else "sent"
            for h in line.handles
            if not line.finished(h)
        )
        if states:
            parts.append(f"{line.name} ({', '.join(f'{n} {s}' for s, n in states.items())})")
    return "; ".join(parts)


async def _stop_worker(worker: corq.Worker) -> BaseException | None:
    """Stop the worker within STOP_TIMEOUT_S; what it failed with, if anything."""
    try:
        await asyncio.wait_for(worker.stop(), STOP_TIMEOUT_S)
    except TimeoutError:  # it was then stopped at once
        return DemoError(f"the worker did not stop within {STOP_TIMEOUT_S:g}s")
    except Exception as exc:
        return exc
    return None


async def _failure(worker: corq.Worker) -> str:
    """What a stopped worker failed with."""
    try:
        await worker.wait()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "it returned"


# -- the summary -------------------------------------------------------------------------
def _summarize(
    lines: Sequence[Line],
    ticks: Ticks,
    elapsed_s: float,
    console: Console,
    counts: JobCounts,
) -> int:
    """The table of the jobs, what the worker saw and the schedule's ticks; how many jobs
    did not succeed."""
    jobs = sum(len(line.handles) for line in lines)
    table = Table(title=f"corq demo: {jobs} jobs in {elapsed_s:.1f}s", title_justify="left")
    table.add_column("task", no_wrap=True, style="bold")
    table.add_column("what it shows")
    # Two-line headers keep the table within 80 columns.
    for name in ("jobs", "succeeded", "retried\nattempts", "avg\nrun time"):
        table.add_column(name, justify="right")
    failed = 0
    for line in lines:
        records = list(line.records.values())
        succeeded = sum(1 for r in records if r.status is corq.JobStatus.SUCCEEDED)
        failed += len(line.handles) - succeeded
        ok = succeeded == len(line.handles)
        table.add_row(
            line.name,
            _shows(line),
            str(len(line.handles)),
            f"[green]{succeeded}[/green]" if ok else f"[red]{succeeded}[/red]",
            str(line.retried),
            _duration(_average([_run_ms(r) for r in records])),
        )
    console.print()
    console.print(table)
    if failed:
        console.print(f"[red bold]{failed} of {jobs} jobs did not succeed.[/red bold]")
        for line in lines:
            for record in line.records.values():
                if record.status is not corq.JobStatus.SUCCEEDED:
                    console.print(f"  {record.task} {record.id}: {record.status} {record.error}")
    else:
        console.print(f"[green bold]All {jobs} jobs succeeded.[/green bold]")
    # The worker's counts come from an observer of it (metrics and events plug in the same way).
    console.print(
        f"The worker saw {counts.started} attempts start: {counts.succeeded} succeeded, "
        f"{counts.retried} failed and were retried, {counts.released} were given back "
        f"(a crashed process), {counts.dead} went dead."
    )
    ticks.summarize(console)
    return failed


def _shows(line: Line) -> str:
    if line.step.delay_s is None:
        return line.step.shows
    waits = [
        (r.started_at_ms - r.enqueued_at_ms) / 1000
        for r in line.records.values()
        if r.started_at_ms is not None
    ]
    waited = _average(waits)
    return line.step.shows if waited is None else f"{line.step.shows}, ran after {waited:.2f}s"


def _run_ms(record: corq.Job) -> float | None:
    if record.started_at_ms is None or record.finished_at_ms is None:
        return None
    return float(record.finished_at_ms - record.started_at_ms)


def _average(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _look_around(lines: Sequence[Line], basket: Basket, url: str, console: Console) -> None:
    """Where to look next: the records stay in the broker after the demo."""
    retried = [r for line in lines for r in line.records.values() if r.attempt > 1]
    example = max(retried, key=lambda r: r.attempt) if retried else None
    job_id = example.id if example is not None else "<id>"
    console.print()
    console.print("[bold]Look around[/bold] (the jobs stay in the broker):", highlight=False)
    console.print(f"  corq queues --url {url}", soft_wrap=True, highlight=False)
    console.print(
        f"  corq job {job_id} --url {url}"
        + ("   [dim]# a job that was retried[/dim]" if example is not None else ""),
        soft_wrap=True,
        highlight=False,
    )
    console.print(f"  corq schedule show {SCHEDULE} --url {url}", soft_wrap=True, highlight=False)
    if basket.workflow is not None and basket.receipt is not None:
        for workflow_id, what in (
            (basket.workflow.id, "the chain"),
            (basket.receipt.id, "the receipt"),
        ):
            console.print(
                f"  corq workflow {workflow_id} --url {url}   [dim]# {what}[/dim]",
                soft_wrap=True,
                highlight=False,
            )
    console.print("  README: tutorial", highlight=False)
