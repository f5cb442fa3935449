"""`corq worker --metrics-port` and `corq metrics` from the shell, scraped over HTTP."""

from __future__ import annotations

import asyncio
import socket
import urllib.error

import pytest

import corq
from tests.conftest import free_port
from tests.e2e.conftest import Cli, wait_for
from tests.integration.test_metrics import Samples, scrape, value

pytestmark = pytest.mark.slow  # each test starts `corq` processes


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports free now."""
    while True:
        first = free_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


async def try_scrape(url: str) -> Samples | None:
    try:
        return await asyncio.to_thread(scrape, url)
    except (urllib.error.URLError, ConnectionError):
        return None  # not listening yet


async def test_each_supervised_worker_serves_its_own_metrics_port(
    cli: Cli, client_app: corq.App
) -> None:
    from tests.e2e.sample_app import nap

    # Given two supervised worker processes, on ports P and P + 1
    port = free_ports(2)
    cli.worker("-p", "2", "--metrics-port", str(port))
    urls = [f"http://127.0.0.1:{port + slot}/metrics" for slot in range(2)]

    # When 20 jobs run
    handles = await nap.enqueue_many([(0,) for _ in range(20)])
    for handle in handles:
        await handle.result(timeout=30)

    # Then the two ports' counters add up to 20 successes of the task
    q = client_app.settings.default_queue

    async def succeeded() -> float:
        total = 0.0
        for url in urls:
            samples = await try_scrape(url)
            if samples is None:
                return -1
            found = value(samples, "corq_jobs_total", queue=q, task=nap.name, outcome="succeeded")
            total += found or 0.0
        return total

    async def all_counted() -> bool:
        return await succeeded() == 20

    await wait_for(all_counted, 30, "both ports to count 20 successes")


async def test_the_cluster_collector_serves_queue_depth(cli: Cli, client_app: corq.App) -> None:
    from tests.e2e.sample_app import nap

    await nap.with_options(queue="later").enqueue_many([(0,) for _ in range(3)])
    port = free_port()
    cli.spawn("metrics", "tests.e2e.sample_app:app", "--port", str(port), log_name="metrics")
    url = f"http://127.0.0.1:{port}/metrics"

    async def ready() -> float | None:
        samples = await try_scrape(url)
        return (
            None
            if samples is None
            else value(samples, "corq_queue_jobs", queue="later", state="ready")
        )

    await wait_for(ready, 30, "the collector listening")
    assert await ready() == 3
    samples = await try_scrape(url)
    assert samples is not None
    assert value(samples, "corq_broker_up") == 1
    assert value(samples, "corq_autoscale_desired_workers", queue="later") == 1
