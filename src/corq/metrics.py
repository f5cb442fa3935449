"""Prometheus metrics: what one worker did, and what the cluster holds now.

Two sources, each in a registry of its own (never prometheus-client's global one, so an
application that embeds corq finds only its own metrics there):

- `WorkerMetrics`, a worker observer: jobs by queue, task and outcome, run and wait
  histograms, jobs in flight (``corq worker --metrics-port``);
- `ClusterCollector`, read from the broker at every scrape (``corq metrics``): queue depth
  by state, the age of the oldest ready job, flow-control waits, schedule ticks, workers,
  breakers, and the autoscaling signal (`autoscale`), also served as JSON on
  ``/autoscale``. A scrape has a deadline: a broker that is down or slow answers
  ``corq_broker_up 0``, never a hung scrape.

See docs/design.md, "Metrics and the autoscaling signal".
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from corq.backends.base import (
    Backend,
    BreakerState,
    ClaimedJob,
    Completion,
    Failure,
    FlowStats,
    QueueStats,
    Release,
    ScheduleRecord,
    SchedulerLease,
    WorkerInfo,
)
from corq.control import BreakerStatus
from corq.errors import CorqError
from corq.worker.observer import WorkerObserver
from corq.worker_info import WorkerState

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from corq.app import App

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Histogram buckets (seconds) from 1 ms to 1 h: job runs and waits span that whole range.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
#: Where `corq metrics` listens by default (9108: next to the node exporter's family).
DEFAULT_METRICS_PORT = 9108
#: Queues whose flow counters are read at once (each is one broker call).
FLOW_READS_AT_ONCE = 64
#: A worker not heard from for this long reads as lost (the default lease).
LOST_AFTER_MS = 10_000


class MetricsError(CorqError):
    """A metrics option that cannot work (a port in use, bounds the wrong way round)."""


# ------------------------------------------------------------------------------------------------
# One worker
# ------------------------------------------------------------------------------------------------


class WorkerMetrics(WorkerObserver):
    """Counts one worker's jobs into a registry of its own.

    `corq_jobs_total{queue,task,outcome}`: outcomes succeeded, retried, dead, released,
    lost, snoozed (a retry is one ``retried``); `corq_job_run_seconds`: from the start to the
    recorded outcome; `corq_job_wait_seconds`: from when the job was due (its
    ``run_at_ms``: the enqueue, or the end of its delay or backoff) to its start, by the
    producer's clock against this one (a negative wait from clock skew counts as 0).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ("queue", "task")
        self.started = Counter(
            "corq_jobs_started", "Jobs this worker started.", labels, registry=self.registry
        )
        self.ended = Counter(
            "corq_jobs",
            "Attempts this worker ended, by outcome (succeeded, retried, dead, released, lost).",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "corq_job_run_seconds",
            "Seconds from a job's start to its recorded outcome.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.wait_seconds = Histogram(
            "corq_job_wait_seconds",
            "Seconds from when a job was due (enqueued, or its delay over) to its start.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "corq_jobs_in_flight", "Jobs this worker runs now.", ("queue",), registry=self.registry
        )
        self._starts: dict[tuple[str, str], float] = {}

    def job_started(self, job: ClaimedJob) -> None:
        self.started.labels(job.queue, job.task).inc()
        self.in_flight.labels(job.queue).inc()
        waited_ms = max(0, time.time_ns() // 1_000_000 - job.run_at_ms)
        self.wait_seconds.labels(job.queue, job.task).observe(waited_ms / 1000)
        self._starts[(job.queue, job.id)] = time.monotonic()

    def job_succeeded(self, job: ClaimedJob, completion: Completion) -> None:
        self._ended(job, "succeeded")

    def job_retried(self, job: ClaimedJob, failure: Failure) -> None:
        self._ended(job, "retried")

    def job_dead(self, job: ClaimedJob, failure: Failure) -> None:
        self._ended(job, "dead")

    def job_released(self, job: ClaimedJob, release: Release) -> None:
        self._ended(job, "released")

    def job_lost(self, job: ClaimedJob) -> None:
        self._ended(job, "lost")

    def job_snoozed(self, job: ClaimedJob, failure: Failure) -> None:
        """Put off without using an attempt (Snooze, a struck task, an open breaker)."""
        self._ended(job, "snoozed")

    def _ended(self, job: ClaimedJob, outcome: str) -> None:
        self.ended.labels(job.queue, job.task, outcome).inc()
        started = self._starts.pop((job.queue, job.id), None)
        if started is None:  # an outcome without a start seen here: nothing to time
            return
        self.in_flight.labels(job.queue).dec()
        self.run_seconds.labels(job.queue, job.task).observe(time.monotonic() - started)


# ------------------------------------------------------------------------------------------------
# The cluster: one reading of the broker
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterReading:
    """What one scrape read from the broker."""

    now_ms: int
    queues: list[QueueStats]
    flow: dict[str, FlowStats]
    schedules: list[ScheduleRecord]
    scheduler: SchedulerLease | None
    #: None when not read (a reading made by hand, in tests).
    workers: list[WorkerInfo] | None = None
    breakers: list[BreakerState] | None = None


async def read_cluster(
    backend: Backend,
    queues: Sequence[str] | None = None,
    *,
    flow: bool = True,
    lost_after_ms: int = LOST_AFTER_MS,
) -> ClusterReading:
    """One reading: every queue's counts in one call, then flow control (a call per
    queue, a few at once), schedules, workers' facts and breakers."""
    stats = await backend.queue_stats(queues)
    flows: dict[str, FlowStats] = {}
    if flow:
        names = [s.queue for s in stats]
        for at in range(0, len(names), FLOW_READS_AT_ONCE):
            chunk = names[at : at + FLOW_READS_AT_ONCE]
            for read in await asyncio.gather(*(backend.flow_stats(q) for q in chunk)):
                flows[read.queue] = read
    return ClusterReading(
        now_ms=time.time_ns() // 1_000_000,
        queues=stats,
        flow=flows,
        schedules=await backend.list_schedules(),
        scheduler=await backend.scheduler_lease(),
        workers=await backend.list_worker_info(None, lost_after_ms),
        breakers=await backend.breaker_states(),
    )


# ------------------------------------------------------------------------------------------------
# The autoscaling signal
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ScalePolicy:
    """How `autoscale` turns a backlog into a number of workers."""

    min_workers: int = 0
    max_workers: int = 100
    #: Jobs one worker runs at once; None: the mean concurrency of the queue's live
    #: workers, or `default_concurrency` when none is known.
    per_worker: int | None = None
    default_concurrency: int = 100

    def __post_init__(self) -> None:
        if self.min_workers < 0 or self.max_workers < self.min_workers:
            raise MetricsError(
                f"need 0 <= min workers <= max workers, not {self.min_workers}..{self.max_workers}"
            )
        if (self.per_worker is not None and self.per_worker < 1) or self.default_concurrency < 1:
            raise MetricsError("jobs per worker must be at least 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueSignal:
    """The autoscaling signal of one queue."""

    queue: str
    #: Jobs ready to run now.
    ready: int
    #: Jobs running now.
    running: int
    #: Seconds the oldest ready job has waited (0 when nothing is ready).
    oldest_ready_age_s: float
    #: Live workers serving the queue (registered holders without worker facts).
    workers: int
    #: Over those workers: concurrency minus jobs running.
    free_slots: int
    per_worker: int
    paused: bool
    #: clamp(ceil((ready + running) / per_worker), min_workers, max_workers); a paused
    #: queue's ready jobs count for nothing.
    desired_workers: int


def autoscale(reading: ClusterReading, policy: ScalePolicy) -> list[QueueSignal]:
    """The signal of every queue in `reading`."""
    return [_signal(stats, reading, policy) for stats in reading.queues]


def _serving(reading: ClusterReading, queue: str) -> list[WorkerInfo]:
    return [
        w for w in reading.workers or () if w.state is not WorkerState.LOST and queue in w.queues
    ]


def _capacity(
    stats: QueueStats, reading: ClusterReading, policy: ScalePolicy
) -> tuple[int, int, int]:
    """(workers, jobs per worker, free slots) of a queue: from the live workers' facts, or
    (a reading without them) its registered holders at the assumed concurrency."""
    if reading.workers is None:
        per_worker = policy.per_worker or policy.default_concurrency
        return stats.workers, per_worker, max(0, stats.workers * per_worker - stats.in_flight)
    serving = _serving(reading, stats.queue)
    mean = round(sum(w.concurrency for w in serving) / len(serving)) if serving else None
    per_worker = policy.per_worker or mean or policy.default_concurrency
    free = sum(max(0, w.concurrency - max(w.in_flight, len(w.running))) for w in serving)
    return len(serving), per_worker, free


def _signal(stats: QueueStats, reading: ClusterReading, policy: ScalePolicy) -> QueueSignal:
    workers, per_worker, free = _capacity(stats, reading, policy)
    backlog = stats.in_flight + (0 if stats.paused else stats.ready)
    wanted = math.ceil(backlog / per_worker)
    oldest = stats.oldest_ready_ms
    return QueueSignal(
        queue=stats.queue,
        ready=stats.ready,
        running=stats.in_flight,
        oldest_ready_age_s=0.0 if oldest is None else max(0, reading.now_ms - oldest) / 1000,
        workers=workers,
        free_slots=free,
        per_worker=per_worker,
        paused=stats.paused,
        desired_workers=min(policy.max_workers, max(policy.min_workers, wanted)),
    )


def signals_json(signals: Sequence[QueueSignal]) -> str:
    """The signal as `corq autoscale --json` and ``/autoscale`` give it."""
    return json.dumps({"queues": [asdict(s) for s in signals]}, indent=2)


# ------------------------------------------------------------------------------------------------
# The cluster collector
# ------------------------------------------------------------------------------------------------


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def queue_families(reading: ClusterReading) -> Iterator[Metric]:
    """Depth by state, oldest ready age, pause and registered workers per queue."""
    jobs = _gauge("corq_queue_jobs", "Jobs in a queue by state.", ("queue", "state"))
    age = _gauge(
        "corq_queue_oldest_ready_age_seconds",
        "Seconds the oldest ready job of a queue has waited (0: nothing ready).",
        ("queue",),
    )
    paused = _gauge("corq_queue_paused", "1 while the queue is paused.", ("queue",))
    holders = _gauge("corq_queue_workers", "Workers registered on a queue.", ("queue",))
    for s in reading.queues:
        states = {
            "ready": s.ready,
            "scheduled": max(0, s.delayed - s.retrying),
            "retrying": s.retrying,
            "waiting": s.waiting,
            "running": s.in_flight,
            "dead": s.dead,
        }
        for state, count in states.items():
            jobs.add_metric([s.queue, state], count)
        oldest = s.oldest_ready_ms
        age.add_metric([s.queue], 0.0 if oldest is None else max(0, reading.now_ms - oldest) / 1e3)
        paused.add_metric([s.queue], float(s.paused))
        holders.add_metric([s.queue], s.workers)
    yield from (jobs, age, paused, holders)


def flow_families(reading: ClusterReading) -> Iterator[Metric]:
    """Limit waits: lanes parked and throttled now, and the jobs limits ended."""
    lanes = _gauge(
        "corq_flow_lanes",
        "Lanes waiting for a concurrency slot (parked) or a rate limit (throttled).",
        ("queue", "state"),
    )
    expired = _counter(
        "corq_flow_expired", "Jobs ended expired (not started by their deadline).", ("queue",)
    )
    dropped = _counter(
        "corq_flow_dropped", "Jobs ended expired by a rate limit that drops.", ("queue",)
    )
    cooled = _counter("corq_flow_cooled", "Enqueues dropped by a cooldown.", ("queue",))
    for queue, f in sorted(reading.flow.items()):
        lanes.add_metric([queue, "parked"], f.parked)
        lanes.add_metric([queue, "throttled"], f.throttled)
        expired.add_metric([queue], f.expired)
        dropped.add_metric([queue], f.dropped)
        cooled.add_metric([queue], f.cooled)
    yield from (lanes, expired, dropped, cooled)


def schedule_families(reading: ClusterReading) -> Iterator[Metric]:
    """Ticks fired and missed (skipped: past the catch-up window, overlap, paused)."""
    labels = ("schedule", "queue")
    fired = _counter("corq_schedule_ticks_fired", "Schedule ticks that enqueued a job.", labels)
    missed = _counter(
        "corq_schedule_ticks_missed",
        "Schedule ticks skipped (missed, overlapping, paused).",
        labels,
    )
    paused = _gauge("corq_schedule_paused", "1 while the schedule is paused.", labels)
    for r in reading.schedules:
        fired.add_metric([r.name, r.queue], r.fired)
        missed.add_metric([r.name, r.queue], r.skipped)
        paused.add_metric([r.name, r.queue], float(r.paused))
    leader = _gauge("corq_scheduler_leader", "1 while a scheduler holds the leadership.")
    leader.add_metric([], float(reading.scheduler is not None))
    yield from (fired, missed, paused, leader)


def worker_families(reading: ClusterReading) -> Iterator[Metric]:
    """Workers by state (from their published facts)."""
    workers = _gauge("corq_workers", "Workers by state (alive, stopping, lost).", ("state",))
    if reading.workers is not None:
        for state in WorkerState:
            workers.add_metric([state.value], sum(w.state is state for w in reading.workers))
    yield workers


def breaker_families(reading: ClusterReading) -> Iterator[Metric]:
    """Each task's circuit: its state now, and how often it opened."""
    state = _gauge(
        "corq_breaker_state", "1 for the state a task's circuit is in.", ("task", "state")
    )
    opened = _counter("corq_breaker_opened", "Times a task's circuit opened.", ("task",))
    for b in reading.breakers or ():
        for status in BreakerStatus:
            state.add_metric([b.task, status.value], float(b.status is status))
        opened.add_metric([b.task], b.opened)
    yield from (state, opened)


def autoscale_families(signals: Sequence[QueueSignal]) -> Iterator[Metric]:
    """The autoscaling signal per queue (depth and age are in the queue families)."""
    desired = _gauge(
        "corq_autoscale_desired_workers",
        "Workers a queue wants: ceil((ready + running) / per worker), within min..max.",
        ("queue",),
    )
    free = _gauge(
        "corq_autoscale_free_slots",
        "Free job slots over the live workers serving a queue.",
        ("queue",),
    )
    for s in signals:
        desired.add_metric([s.queue], s.desired_workers)
        free.add_metric([s.queue], s.free_slots)
    yield from (desired, free)


class BrokerLoop:
    """An event loop on a thread of its own that owns the broker connection: scrapes come
    from the HTTP server's threads, and each hands its read to this loop with a deadline."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="corq-metrics", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run `coro` on the loop; TimeoutError when it takes longer than `timeout_s`."""
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout_s), self.loop)
        try:
            return future.result(timeout_s + 1.0)
        except TimeoutError:
            future.cancel()
            raise

    def close(self, cleanup: Coroutine[Any, Any, None] | None = None) -> None:
        if cleanup is not None:
            try:
                self.run(cleanup, 5.0)
            except Exception:  # closing a connection to a broker that is gone
                log.debug("closing the metrics broker connection failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        self.loop.close()


@dataclass(eq=False)
class ClusterCollector(Collector):
    """Reads the broker at every scrape (through `read`, which raises when it cannot)."""

    read: Callable[[], ClusterReading]
    policy: ScalePolicy = field(default_factory=ScalePolicy)

    def collect(self) -> Iterable[Metric]:
        started = time.monotonic()
        up = _gauge("corq_broker_up", "1 when the broker answered this scrape in time.")
        try:
            reading = self.read()
        except Exception as exc:  # down, slow or refusing: the scrape says so and returns
            log.warning("metrics: broker read failed: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from queue_families(reading)
        yield from flow_families(reading)
        yield from schedule_families(reading)
        yield from worker_families(reading)
        yield from breaker_families(reading)
        yield from autoscale_families(autoscale(reading, self.policy))
        took = _gauge("corq_collect_seconds", "Seconds this scrape spent reading the broker.")
        took.add_metric([], time.monotonic() - started)
        yield took


class ClusterMetrics:
    """The collector over an app's broker, on a loop of its own (``corq metrics``).

    Every read has the deadline `timeout_s` (the app's socket timeout by default): a
    broker that does not answer in time costs the scrape that long, and says
    ``corq_broker_up 0``.
    """

    def __init__(
        self,
        app: App,
        *,
        policy: ScalePolicy | None = None,
        timeout_s: float | None = None,
        flow: bool = True,
        queues: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.policy = policy or ScalePolicy(default_concurrency=app.settings.concurrency)
        self.timeout_s = timeout_s or app.settings.socket_timeout_s
        self.flow = flow
        self.queues = list(queues) if queues else None
        self.registry = CollectorRegistry()
        self.registry.register(ClusterCollector(self.reading, self.policy))
        self._loop = BrokerLoop()

    def reading(self) -> ClusterReading:
        """Read the broker now (raises BrokerError or TimeoutError when it cannot)."""
        return self._loop.run(self._read(), self.timeout_s)

    async def _read(self) -> ClusterReading:
        backend = self.app.client().backend
        lost_after_ms = round(self.app.settings.lease_s * 1000)  # as `corq workers` judges
        return await read_cluster(backend, self.queues, flow=self.flow, lost_after_ms=lost_after_ms)

    def signals(self) -> list[QueueSignal]:
        """The autoscaling signal now."""
        return autoscale(self.reading(), self.policy)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve ``/metrics`` and ``/autoscale`` until closed."""
        return serve(self.registry, host, port, lambda: signals_json(self.signals()))

    def close(self) -> None:
        self._loop.close(self.app.aclose_loop_only())


# ------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one line per scrape every few seconds)."""


@dataclass
class MetricsServer:
    """An HTTP server on a thread: ``/metrics``, and ``/autoscale`` when given."""

    server: _Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5.0)


def serve(
    registry: CollectorRegistry,
    host: str,
    port: int,
    autoscale_json: Callable[[], str] | None = None,
) -> MetricsServer:
    """Serve `registry` on host:port (port 0: any free one) until closed."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/autoscale" and autoscale_json is not None:
            try:
                body, status = autoscale_json().encode(), "200 OK"
            except Exception as exc:  # the broker is down: say so, as JSON
                body, status = json.dumps({"error": str(exc)}).encode(), "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        if path in ("/", "/metrics"):
            page: Iterable[bytes] = metrics_app(environ, start_response)
            return page
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics\n"]

    try:
        server = make_server(host, port, app, _Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise MetricsError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
    thread = threading.Thread(target=server.serve_forever, name="corq-metrics-http", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
