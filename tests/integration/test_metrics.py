"""Metrics over HTTP, as Prometheus scrapes them: a worker's own, and the cluster's."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import corq
from corq.metrics import ClusterMetrics, MetricsServer, ScalePolicy, WorkerMetrics, serve
from corq.testing import run_worker
from tests.conftest import free_port
from tests.waiting import until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a scrape, by name and labels (parsed as Prometheus parses it)."""
    with urllib.request.urlopen(url, timeout=30) as reply:
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scraped(url: str) -> Samples:
    return await asyncio.to_thread(scrape, url)


@pytest.fixture
def worker_metrics() -> Iterator[tuple[WorkerMetrics, MetricsServer]]:
    metrics = WorkerMetrics()
    server = serve(metrics.registry, "127.0.0.1", 0)
    yield metrics, server
    server.close()


async def test_a_workers_metrics_count_what_its_jobs_did(
    app: corq.App, worker_metrics: tuple[WorkerMetrics, MetricsServer]
) -> None:
    metrics, server = worker_metrics

    @app.task
    async def ok(n: int) -> int:
        return n

    @app.task(retries=1, backoff=0.01)
    async def broken() -> None:
        raise ValueError("boom")

    # When a worker with the metrics observer runs 5 good jobs and one that fails twice
    async with run_worker(app, observers=[metrics]) as w:
        handles = [await ok.enqueue(n) for n in range(5)]
        bad = await broken.enqueue()
        for handle in handles:
            await handle.result(timeout=10)
        await until(lambda: (w.counts.succeeded, w.counts.dead) == (5, 1), what="all observed")
        samples = await scraped(f"http://127.0.0.1:{server.port}/metrics")

    # Then the scrape says so, by task and outcome
    q = app.settings.default_queue
    ok_task, bad_task = ok.name, broken.name
    assert value(samples, "corq_jobs_total", queue=q, task=ok_task, outcome="succeeded") == 5
    assert value(samples, "corq_jobs_total", queue=q, task=bad_task, outcome="retried") == 1
    assert value(samples, "corq_jobs_total", queue=q, task=bad_task, outcome="dead") == 1
    assert value(samples, "corq_jobs_started_total", queue=q, task=ok_task) == 5
    assert value(samples, "corq_job_run_seconds_count", queue=q, task=ok_task) == 5
    assert value(samples, "corq_job_wait_seconds_count", queue=q, task=bad_task) == 2
    assert value(samples, "corq_jobs_in_flight", queue=q) == 0
    assert await bad.status() == corq.JobStatus.DEAD


class Cluster(ClusterMetrics):
    def registry_text(self) -> Samples:
        """A scrape of the registry as /metrics serves it, parsed."""
        text = generate_latest(self.registry).decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


async def test_a_snoozed_attempt_counts_as_snoozed(
    app: corq.App, worker_metrics: tuple[WorkerMetrics, MetricsServer]
) -> None:
    metrics, server = worker_metrics
    seen: list[int] = []

    @app.task
    async def poll() -> str:
        seen.append(1)
        if len(seen) == 1:
            raise corq.Snooze(0.01, "not ready yet")
        return "ready"

    async with run_worker(app, observers=[metrics]) as w:
        assert await (await poll.enqueue()).result(timeout=10) == "ready"
        # The result is readable as soon as it is written; the hooks run just after
        await until(lambda: w.counts.succeeded == 1, what="the success observed")
        samples = await scraped(f"http://127.0.0.1:{server.port}/metrics")

    q = app.settings.default_queue
    assert value(samples, "corq_jobs_total", queue=q, task=poll.name, outcome="snoozed") == 1
    assert value(samples, "corq_jobs_total", queue=q, task=poll.name, outcome="succeeded") == 1
    assert value(samples, "corq_jobs_in_flight", queue=q) == 0


@pytest.fixture
def cluster(app: corq.App) -> Iterator[Cluster]:
    metrics = Cluster(app, policy=ScalePolicy(per_worker=2, max_workers=10))
    yield metrics
    metrics.close()


async def test_the_collector_reads_queue_depth_and_the_autoscaling_signal(
    app: corq.App, cluster: Cluster
) -> None:
    @app.task(queue="mail")
    async def send(to: str) -> None: ...

    # Given 5 ready jobs and 1 delayed one, the oldest ready since a known time
    before_ms = time.time_ns() // 1_000_000
    for n in range(5):
        await send.enqueue(f"user{n}")
    await send.with_options(delay=3600).enqueue("later")

    # When Prometheus scrapes the collector
    server = cluster.serve("127.0.0.1", 0)
    try:
        samples = await scraped(f"http://127.0.0.1:{server.port}/metrics")
        signal = await asyncio.to_thread(
            urllib.request.urlopen, f"http://127.0.0.1:{server.port}/autoscale"
        )
        body = signal.read().decode()
    finally:
        server.close()
    waited_s = (time.time_ns() // 1_000_000 - before_ms) / 1000

    # Then
    assert value(samples, "corq_broker_up") == 1
    assert value(samples, "corq_queue_jobs", queue="mail", state="ready") == 5
    assert value(samples, "corq_queue_jobs", queue="mail", state="scheduled") == 1
    assert value(samples, "corq_queue_jobs", queue="mail", state="running") == 0
    age = value(samples, "corq_queue_oldest_ready_age_seconds", queue="mail")
    assert age is not None
    assert 0 <= age <= waited_s + 0.01
    # ceil((5 ready + 0 running) / 2 per worker) = 3
    assert value(samples, "corq_autoscale_desired_workers", queue="mail") == 3
    assert '"queue": "mail"' in body
    assert '"desired_workers": 3' in body


async def test_free_slots_and_workers_come_from_the_workers_facts(
    app: corq.App, cluster: Cluster
) -> None:
    @app.task
    async def wait(gate: str) -> None:
        await asyncio.sleep(3600)

    q = app.settings.default_queue
    async with run_worker(app, concurrency=4) as w:
        await wait.enqueue("a")
        await until(lambda: w.counts.started == 1, what="the job running")

        # The worker publishes its facts at its next heartbeat: 1 of its 4 slots taken
        async def published() -> bool:
            signals = await asyncio.to_thread(cluster.signals)
            return [(s.queue, s.workers, s.free_slots) for s in signals] == [(q, 1, 3)]

        await until(published, what="the facts with the running job")
        [signal] = await asyncio.to_thread(cluster.signals)
        samples = await asyncio.to_thread(cluster.registry_text)
        await w.stop(0)
    assert (signal.running, signal.ready, signal.per_worker, signal.desired_workers) == (1, 0, 2, 1)
    assert samples["corq_workers", frozenset({("state", "alive")})] == 1
    assert samples["corq_autoscale_free_slots", frozenset({("queue", q)})] == 3


async def test_breaker_states_are_exported(app: corq.App, cluster: Cluster) -> None:
    # Given a task whose circuit opened after one failure
    rule = corq.Breaker(failures=1, window=60, reset=60)
    await app.client().backend.breaker_outcome("tasks.flaky", rule, False, False, None)

    samples = await asyncio.to_thread(cluster.registry_text)

    task = ("task", "tasks.flaky")
    assert samples["corq_breaker_state", frozenset({task, ("state", "open")})] == 1
    assert samples["corq_breaker_state", frozenset({task, ("state", "closed")})] == 0
    assert samples["corq_breaker_opened_total", frozenset({task})] == 1


class Silent:
    """A TCP server that accepts connections and never answers (a hung broker)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("broker", ["refused", "silent"])
def test_a_scrape_while_the_broker_is_down_says_so_quickly(broker: str, prefix: str) -> None:
    silent = Silent() if broker == "silent" else None
    port = silent.port if silent else free_port()
    app = corq.App(f"redis://127.0.0.1:{port}/0", prefix=prefix)
    cluster = ClusterMetrics(app, timeout_s=0.5)
    server = cluster.serve("127.0.0.1", 0)
    try:
        started = time.monotonic()
        samples = scrape(f"http://127.0.0.1:{server.port}/metrics")
        took = time.monotonic() - started
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/autoscale", timeout=30)
    finally:
        server.close()
        cluster.close()
        if silent:
            silent.close()
    assert value(samples, "corq_broker_up") == 0
    assert not any(name.startswith("corq_queue_") for name, _ in samples)
    assert took < 2.0
    assert refused.value.code == 503
    assert "error" in refused.value.read().decode()


def test_corq_autoscale_prints_the_signal_as_json(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from corq.cli import cli

    url = f"sqlite:///{tmp_path / 'corq.db'}"
    app = corq.App(url)

    @app.task(queue="img")
    async def resize(n: int) -> None: ...

    for n in range(7):
        resize.enqueue_sync(n)
    app.close_sync()
    args = ["autoscale", "tests.e2e.sample_app:app", "--url", url, "--json", "--per-worker", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    [img] = [q for q in json.loads(result.output)["queues"] if q["queue"] == "img"]
    assert (img["ready"], img["running"], img["desired_workers"]) == (7, 0, 3)
