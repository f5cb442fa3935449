"""What mypy must infer for tasks, specs and handles (run by tests/unit/test_typing.py).

Never executed: each ``assert_type`` is checked by mypy, not at run time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, assert_type

import corq

app = corq.App("sqlite:///never-opened.db")


@app.task
async def fetch(a: int, b: int) -> int:
    return a + b


@app.task(queue="cpu", retries=2)
def resize(path: str, *, width: int = 100) -> str:
    return path


@app.task
async def nothing() -> None:
    return None


async def check_async_task() -> None:
    handle = await fetch.enqueue(1, 2)
    assert_type(handle, corq.JobHandle[int])
    assert_type(await handle.result(), int)
    assert_type(await handle.result(timeout=5), int)
    assert_type(fetch.enqueue_sync(1, 2), corq.JobHandle[int])
    assert_type(await nothing.enqueue(), corq.JobHandle[None])


async def check_sync_task() -> None:
    handle = await resize.enqueue("a.png", width=10)
    assert_type(handle, corq.JobHandle[str])
    assert_type(await handle.result(), str)
    assert_type(resize.enqueue_sync("a.png"), corq.JobHandle[str])


async def check_options() -> None:
    bound = fetch.with_options(queue="slow", delay=5, priority=3, job_id="x")
    assert_type(await bound.enqueue(1, 2), corq.JobHandle[int])
    assert_type(bound.s(1, 2), corq.JobSpec[int])
    assert_type(await fetch.enqueue_many([(1, 2), (3, 4)], delay=1.5), list[corq.JobHandle[int]])


async def check_specs() -> None:
    spec = fetch.s(1, b=2)
    assert_type(spec, corq.JobSpec[int])
    moved = spec.with_options(queue="slow", priority=5)
    assert_type(moved, corq.JobSpec[int])
    assert_type(await moved.enqueue(), corq.JobHandle[int])
    assert_type(await app.enqueue(spec), corq.JobHandle[int])
    assert_type(await app.client().enqueue(spec), corq.JobHandle[int])
    assert_type(await app.enqueue_many([fetch.s(1, 2), fetch.s(3, 4)]), list[corq.JobHandle[int]])
    mixed = await app.enqueue_many([fetch.s(1, 2), resize.s("a.png")])
    assert_type(mixed, list[corq.JobHandle[object]])


async def check_untyped_paths() -> None:
    by_name = app.spec("report.build", 2026)
    assert_type(by_name, corq.JobSpec[Any])
    assert_type(await app.enqueue("report.build", 2026, queue="reports"), corq.JobHandle[Any])
    assert_type(await app.client().enqueue("report.build", [2026]), corq.JobHandle[Any])
    assert_type(app.job("some-id"), corq.JobHandle[Any])
    assert_type(app.client().job("some-id", "default"), corq.JobHandle[Any])
    assert_type(corq.JobSpec.from_dict(by_name.to_dict()), corq.JobSpec[Any])


@app.periodic(every=30, args=("eu",), name="sync-eu")
async def sync(region: str) -> int:
    return len(region)


@app.periodic(cron="0 2 * * *", tz="Europe/Berlin", queue="cpu", retry_jitter=False)
def nightly() -> str:
    return "done"


report = app.periodic(every=60)(nothing)


async def check_periodic() -> None:
    assert_type(await sync.enqueue("us"), corq.JobHandle[int])
    assert_type(await nightly.enqueue(), corq.JobHandle[str])
    assert_type(report, corq.Task[[], None])
    info = await app.schedules.get("sync-eu")
    assert_type(info, corq.ScheduleInfo)
    assert_type(await app.schedules.run_now("sync-eu"), corq.JobHandle[Any])


@app.task(
    key=lambda tenant, **_: tenant,
    key_concurrency=2,
    rate_limit="50/s",
    key_rate_limit=corq.Rate(5, 1000),
    key_weights={"big": 3},
    over_limit="drop",
    on_duplicate=corq.OnDuplicate.REPLACE,
    unique_for=timedelta(minutes=1),
)
async def sync_tenant(tenant: str, since: int) -> int:
    return since


@app.task(batch_size=100, batch_wait=timedelta(seconds=1))
async def write_rows(rows: list[str]) -> list[int]:
    return [len(row) for row in rows]


@app.task(batch_size=10, key=lambda row: row, batch_by_key=True)
def log_rows(rows: list[str]) -> None:
    return None


async def check_flow_control() -> None:
    handle = await sync_tenant.with_options(
        unique_key="t-1", debounce=timedelta(seconds=5), max_wait=60, expires=600
    ).enqueue("t", 1)
    assert_type(handle, corq.JobHandle[int])
    assert_type(handle.outcome, corq.Outcome | None)
    assert_type(handle.created, bool)
    assert_type(await write_rows.enqueue("a"), corq.JobHandle[int])
    assert_type(await log_rows.enqueue("a"), corq.JobHandle[None])
    assert_type(sync_tenant.options.rules.key_rate, corq.Rate | None)
    assert_type(await app.enqueue("sync_tenant", "t", 1, unique_key="k"), corq.JobHandle[Any])
