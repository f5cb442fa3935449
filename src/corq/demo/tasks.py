"""The example app `corq demo` runs: a few tasks of the kinds real projects have.

Run it yourself with a worker of your own:

    corq worker corq.demo.tasks:app --url sqlite:///corq-demo.db
    corq enqueue count_primes --args '[100000]' --app corq.demo.tasks:app
    corq schedule add every-5s tick --every 5s --app corq.demo.tasks:app
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from typing import Any

import corq

#: The demo's own broker: an SQLite file in the working directory (`corq demo --url` changes it).
DEMO_URL = "sqlite:///corq-demo.db"
#: Every demo task uses this queue, so the demo never runs jobs of your own queues.
DEMO_QUEUE = "demo"

#: A struck job is looked at again this often (the default, 5 s, is long for a demo).
STRIKE_RECHECK_S = 0.3

app = corq.App(DEMO_URL, default_queue=DEMO_QUEUE, strike_recheck_s=STRIKE_RECHECK_S)

# The demo's HTTP server is local: never send its requests through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@app.task(timeout=10, retries=2, backoff=0.2)
def fetch_url(url: str) -> dict[str, Any]:
    """A plain (blocking) function: corq runs it in its thread pool."""
    started = time.perf_counter()
    with _opener.open(url, timeout=5) as response:
        body = response.read()
        status = int(response.status)
    return {
        "url": url,
        "status": status,
        "bytes": len(body),
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }


@app.task(process=True, timeout=30)
def count_primes(limit: int) -> int:
    """CPU-bound: runs in the process pool, so it never blocks the worker's event loop.

    A module-level function, so the pool's child process can import it by name."""
    count = 0
    for n in range(2, limit):
        divisor = 2
        while divisor * divisor <= n:
            if n % divisor == 0:
                break
            divisor += 1
        else:
            count += 1
    return count


@app.task(timeout=30)
async def clean_dataset(batch: int, rows: int = 20_000) -> dict[str, Any]:
    """An async data job that reads its input page by page and reports its progress."""
    rng = random.Random(batch)
    pages = 15
    kept = 0
    total = 0.0
    for page in range(pages):
        await asyncio.sleep(0.08)  # waiting for the next page, as from a database cursor
        values = [rng.gauss(100.0, 25.0) for _ in range(rows // pages)]
        valid = [v for v in values if 50.0 <= v <= 150.0]
        kept += len(valid)
        total += sum(valid)
        await corq.set_progress((page + 1) / pages)
    return {"batch": batch, "rows": rows, "kept": kept, "mean": round(total / max(kept, 1), 2)}


@app.task(retries=3, backoff=0.2, timeout=10)
async def charge_payment(order_id: int, failures: int = 1) -> str:
    """Fails its first `failures` attempts (a flaky payment gateway), then succeeds on retry.

    The job id stays the same across attempts: a real task would pass it to the gateway as
    an idempotency key, so a retry never charges twice."""
    attempt = corq.current_job().attempt
    if attempt <= failures:
        raise ConnectionError(f"payment gateway timed out (simulated, attempt {attempt})")
    await asyncio.sleep(0.05)
    return f"order {order_id} charged on attempt {attempt}"


@app.task(timeout=10)
async def send_reminder(user: str) -> str:
    """Enqueued with a delay: it waits as `scheduled` until its time comes."""
    job = corq.current_job()
    waited_s = (time.time() * 1000 - job.enqueued_at_ms) / 1000
    return f"reminded {user} {waited_s:.1f}s after it was enqueued"


@app.task(process=True, timeout=30)
def render_thumbnail(image: int) -> str:
    """Kills its own process on its first attempt (as a crashing image library would).

    `process=True` jobs run one per child process, so the crash is pinned on this job
    alone: it counts one death and runs again, and the other jobs never notice."""
    import os

    attempt = corq.current_job().attempt
    if attempt == 1:
        os._exit(139)  # what a segfault in native code looks like from outside
    return f"thumbnail {image} rendered on attempt {attempt}"


@app.task(timeout=10, retries=2, backoff=0.2)
def fetch_price(url: str) -> dict[str, Any]:
    """A member of the workflow's chord: one product's name and price, from the shop."""
    with _opener.open(url, timeout=5) as response:
        product = json.loads(response.read())
    return {"name": product["name"], "price": product["price"]}


@app.task(timeout=10)
async def add_up(products: list[dict[str, Any]]) -> float:
    """The chord's callback: given the list of its members' results, in their order."""
    return round(sum(float(product["price"]) for product in products), 2)


@app.task(timeout=10)
async def apply_discount(total: float, percent: int) -> float:
    """A link of the chain: given the previous job's result as its first argument."""
    return round(total * (100 - percent) / 100, 2)


@app.task(timeout=10)
async def email_receipt(user: str) -> str:
    """Sent with ``depends_on``: it reads the job it waited for with parent_results()."""
    (amount,) = (await corq.current_job().parent_results()).values()
    return f"receipt sent to {user}: {amount:.2f} charged"


@app.task(timeout=10)
async def tick() -> str:
    """Sent by the demo's schedule at each tick: `current_job()` says which schedule and tick.

    The tick is the same on every attempt and every scheduler, so a real task can key its
    effects on it (a report for 09:00 is written once, whoever fires it)."""
    job = corq.current_job()
    return f"{job.schedule} tick {job.tick:%H:%M:%S}"


# -- flow control (corq.demo.flow sends these) -------------------------------------------
@app.task(timeout=10, key=lambda tenant, **_: tenant, key_concurrency=2)
async def sync_tenant(tenant: str, page: int) -> str:
    """One page of a tenant's sync: tenants take turns, at most 2 pages of one at once."""
    await asyncio.sleep(0.04)
    return f"{tenant} page {page} synced"


@app.task(timeout=10, rate_limit="20/s")
async def call_partner(order: int) -> int:
    """A partner API that takes at most 20 calls a second from all workers together."""
    return order


@app.task(timeout=10)
async def send_welcome(user: str) -> str:
    """Enqueued with a unique_key: a second welcome while the first is pending is the same job."""
    await asyncio.sleep(0.3)
    return f"welcome sent to {user}"


@app.task(timeout=10, concurrency=1)
async def export_report(name: str) -> str:
    """One export at a time: a second one with `expires` that cannot start in time expires."""
    await asyncio.sleep(0.5)
    return f"report {name} exported"


# -- operations (corq.demo.operations sends these) ---------------------------------------
#: When each cancelled report's coroutine stopped (time.monotonic()), by job id: the demo
#: runs its worker in this process, so it can see how soon a cancel stops the body.
REPORT_STOPPED: dict[str, float] = {}
#: The export polls it has answered "not ready" to, by job id.
EXPORTS_POLLED: set[str] = set()


@app.task(timeout=60)
async def build_big_report(name: str) -> str:
    """A long report: the demo cancels it while it runs (the coroutine is cancelled)."""
    try:
        await asyncio.sleep(30)
        return f"report {name} built"
    finally:
        REPORT_STOPPED[corq.current_job().job_id] = time.monotonic()


@app.task(timeout=10)
async def poll_export(name: str) -> str:
    """Polls an export that is not ready the first time: it snoozes without using an attempt."""
    job = corq.current_job()
    if job.job_id not in EXPORTS_POLLED:
        EXPORTS_POLLED.add(job.job_id)
        raise corq.Snooze(0.2, f"export {name} not ready")
    return f"export {name} downloaded on attempt {job.attempt}"


@app.task(timeout=10)
async def notify_tenant(tenant: str, message: str) -> str:
    """A per-tenant notification: the demo strikes one tenant's, then restores them."""
    return f"{tenant} notified: {message}"


@app.task(timeout=10, breaker=corq.Breaker(failures=3, window=60, reset=0.5))
async def check_inventory(sku: int, healthy: bool) -> str:
    """A supplier API behind a circuit breaker: 3 failures open it, a probe closes it."""
    if not healthy:
        raise ConnectionError(f"supplier API down (simulated) for sku {sku}")
    return f"sku {sku} in stock"
