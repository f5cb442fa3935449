"""Tasks the flow-control benchmarks run (bench/flow_bench.py)."""

from __future__ import annotations

import time

import corq

app = corq.App()


@app.task
async def plain(tenant: str) -> None:
    """No rules: the plain ready set."""
    return None


@app.task(key=lambda tenant: tenant, key_concurrency=10)
async def keyed(tenant: str) -> None:
    """A per-key concurrency limit (10 running per tenant, cluster-wide)."""
    return None


@app.task(rate_limit="1000000/s")
async def rated(tenant: str) -> None:
    """A task-wide rate limit high enough not to bind: what checking it costs."""
    return None


@app.task
async def plain_stamp(tenant: str, sent_ns: int) -> int:
    """How long after `sent_ns` (CLOCK_MONOTONIC, shared by processes) it started."""
    return time.perf_counter_ns() - sent_ns


@app.task(key=lambda tenant, sent_ns: tenant)
async def fair_stamp(tenant: str, sent_ns: int) -> int:
    """The same, with a fairness key: tenants are served round robin."""
    return time.perf_counter_ns() - sent_ns
