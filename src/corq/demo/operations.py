"""The demo's operations part: an operator's levers pulled on the running demo worker, one
after the other, each checked from what the broker and the jobs say.

- a running report is cancelled: its coroutine stops within milliseconds, no retry;
- the queue is paused: a job sent meanwhile stays queued until it is resumed;
- one tenant's notifications are struck: they wait (no attempt used) while the others
  run, and run once restored;
- an export that is not ready snoozes, then runs, on its first attempt still;
- a supplier API fails three times: its circuit breaker opens, the next job waits, a probe
  after the cool-down succeeds and closes it;
- what the events log and the attempt history say of the export, and what the worker
  publishes about itself; every change above is in the configuration's history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

import corq
from corq.admin import Admin
from corq.admin.breakers import BreakerView
from corq.demo import tasks

#: How often states are read while waiting for them (the caller bounds every wait).
POLL_S = 0.02
#: How long a job sent to the paused queue is watched not starting.
PAUSED_FOR_S = 0.3
#: Who the demo's changes are recorded as (``corq config history``).
ACTOR = "corq demo"


@dataclass(kw_only=True)
class OperationsPart:
    """The levers, pulled in order; `rows` is what happened, `ok` whether it should have."""

    app: corq.App
    worker: corq.Worker
    rows: list[tuple[str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: The job whose events and attempts the part shows (the snoozed export).
    followed: corq.JobHandle[str] | None = None

    async def run(self) -> None:
        """Pull every lever (the caller bounds the time)."""
        admin = self.app.admin(ACTOR)
        await self._cancel()
        await self._pause(admin)
        await self._strike(admin)
        await self._snooze()
        await self._breaker(admin)
        await self._events(admin)
        await self._history(admin)
        await self._workers(admin)

    def _row(self, lever: str, text: str, ok: bool) -> None:
        self.rows.append((lever, text if ok else f"[red]{text}[/red]"))
        if not ok:
            self.failed.append(lever)

    async def _cancel(self) -> None:
        handle = await tasks.build_big_report.enqueue("q4")
        await _until(lambda: _status_is(handle, corq.JobStatus.RUNNING))
        asked = time.monotonic()
        cancelled = await handle.cancel()
        await _until(lambda: _true(handle.id in tasks.REPORT_STOPPED))
        stopped_ms = (tasks.REPORT_STOPPED[handle.id] - asked) * 1000
        record = await handle.info()
        self._row(
            "job.cancel()",
            f"a running 30 s report cancelled: {record.status}, its coroutine stopped "
            f"{stopped_ms:.0f} ms after the call, attempt {record.attempt} (no retry)",
            cancelled and record.status is corq.JobStatus.CANCELLED,
        )

    async def _pause(self, admin: Admin) -> None:
        await admin.pause_queue(tasks.DEMO_QUEUE)
        handle = await tasks.notify_tenant.enqueue("globex", "invoice ready")
        await asyncio.sleep(PAUSED_FOR_S)  # the point: nothing starts meanwhile
        held = (await handle.info()).status
        await admin.resume_queue(tasks.DEMO_QUEUE)
        result = await handle.result(timeout=10)
        self._row(
            "queue pause / resume",
            f"a job sent to the paused queue was still {held} after {PAUSED_FOR_S:g}s; "
            f"resumed: {result!r}",
            held is corq.JobStatus.QUEUED,
        )

    async def _strike(self, admin: Admin) -> None:
        strike = await admin.strike("notify_tenant", where={"tenant": "acme"})
        await self._seen_by_worker(admin)
        acme = await tasks.notify_tenant.enqueue("acme", "outage report")
        other = await tasks.notify_tenant.enqueue("initech", "outage report")
        other_result = await other.result(timeout=10)
        await _until(lambda: _snoozed(acme))
        held = await acme.info()
        await admin.restore("notify_tenant", where={"tenant": "acme"})
        await self._seen_by_worker(admin)
        result = await acme.result(timeout=10)
        record = await acme.info()
        self._row(
            f"strike {strike.id}",
            f"initech's notice ran ({other_result!r}); acme's waited {held.status} "
            f"({held.error}); restored, it ran on attempt {record.attempt}: {result!r}",
            record.attempt == 1,
        )

    async def _seen_by_worker(self, admin: Admin) -> None:
        version = await admin.backend.config_version()
        await _until(lambda: _true(self.worker.config_version >= version))

    async def _snooze(self) -> None:
        handle = self.followed = await tasks.poll_export.enqueue("ledger")
        result = await handle.result(timeout=10)
        attempts = await handle.info()
        self._row(
            "raise corq.Snooze(0.2)",
            f"the export was not ready, snoozed, then: {result!r} (attempts used: "
            f"{attempts.attempt}, failures: {attempts.failures})",
            attempts.attempt == 1 and attempts.failures == 0,
        )

    async def _breaker(self, admin: Admin) -> None:
        down = await tasks.check_inventory.enqueue_many([(sku, False) for sku in range(3)])
        await _until(lambda: _all_dead(down))
        opened = _circuit(await admin.breakers())
        probe = await tasks.check_inventory.enqueue(7, True)
        await _until(lambda: _snoozed(probe))
        waited = await probe.info()
        result = await probe.result(timeout=10)
        closed = _circuit(await admin.breakers())
        self._row(
            "Breaker(failures=3, reset=0.5)",
            f"3 failed calls: circuit {opened}; the next job waited ({waited.error}), ran "
            f"as the probe after the cool-down ({result!r}): circuit {closed}",
            opened == "open" and closed == "closed",
        )

    async def _events(self, admin: Admin) -> None:
        assert self.followed is not None
        job_id = self.followed.id
        page = await admin.events(job_id=job_id, limit=1000)
        attempts = await admin.job_attempts(job_id)
        moves = " > ".join(str(e.kind) for e in page.events)
        ended = ", ".join(str(a.outcome) for a in attempts)
        self._row(
            "corq events --job / corq job",
            f"the export's events: {moves}; its attempts: {ended}",
            [str(a.outcome) for a in attempts] == ["snoozed", "succeeded"],
        )

    async def _history(self, admin: Admin) -> None:
        changes = [c for c in await admin.config_history(limit=20) if c.who == ACTOR]
        fields = ", ".join(f"{c.scope}:{c.name}.{c.field}" for c in reversed(changes))
        self._row(
            "corq config history",
            f"{len(changes)} changes recorded as made by {ACTOR!r}: {fields}",
            len(changes) >= 4,
        )

    async def _workers(self, admin: Admin) -> None:
        facts = [w for w in await admin.workers() if w.worker_id == self.worker.worker_id]
        text = (
            f"{facts[0].host} pid {facts[0].pid}, concurrency {facts[0].concurrency}, "
            f"{facts[0].rss_bytes / 2**20:.0f} MiB, loop lag {facts[0].loop_lag_ms:.1f} ms"
            if facts
            else "this worker has not published its facts"
        )
        self._row("corq workers", text, bool(facts))

    def summarize(self, console: Console) -> bool:
        """Print what each lever did; True when each did what it should."""
        table = Table(title="operations", title_justify="left")
        table.add_column("lever", style="bold", no_wrap=True)
        table.add_column("what happened")
        for lever, text in self.rows:
            table.add_row(lever, text)
        console.print()
        console.print(table)
        return not self.failed


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Until `check` says so (the demo's overall timeout bounds the wait)."""
    while not await check():  # noqa: ASYNC110  # polling the broker: no event to wait on
        await asyncio.sleep(POLL_S)


async def _true(value: bool) -> bool:
    return value


async def _status_is(handle: corq.JobHandle[object], status: corq.JobStatus) -> bool:
    return (await handle.info()).status is status


async def _all_dead(handles: list[corq.JobHandle[str]]) -> bool:
    records = await asyncio.gather(*(h.info() for h in handles))
    return all(r.status is corq.JobStatus.DEAD for r in records)


async def _snoozed(handle: corq.JobHandle[object]) -> bool:
    record = await handle.info()
    return record.status is corq.JobStatus.SCHEDULED and record.error is not None


def _circuit(views: list[BreakerView]) -> str:
    for view in views:
        if view.task == "check_inventory":
            return str(view.state.status)
    return "none"
