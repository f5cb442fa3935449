"""The demo's flow-control part: jobs that limits, fair turns, uniqueness and expiry shape,
sent once the other jobs have finished, then what happened, from the jobs' records.

- a big tenant's 30 sync pages, then a small tenant's 3: the tenants take turns (at most
  2 pages of one tenant at once), so the small one waits for a few pages, not the backlog;
- 30 partner calls under a rate limit of 20 a second: 20 start at once, the rest as the
  limit refills;
- the same welcome enqueued twice with one unique_key: the second call returns the first job;
- an export that must start within 0.2 s while another export holds the only slot: expired.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

import corq
from corq.demo import tasks

#: The big tenant's backlog and the small tenant's jobs sent after it.
BIG_PAGES = 30
SMALL_PAGES = 3
#: Partner calls sent at once, and the limit they are under (the task's rate_limit).
CALLS = 30
RATE_PER_S = 20
#: How soon the second export must start.
EXPIRES_S = 0.2
#: How often the records are read while waiting.
POLL_S = 0.05

#: What the summary says about each job a step sent, by state.
_ENDED = frozenset(
    {
        corq.JobStatus.SUCCEEDED,
        corq.JobStatus.DEAD,
        corq.JobStatus.CANCELLED,
        corq.JobStatus.EXPIRED,
        corq.JobStatus.UPSTREAM_FAILED,
    }
)


@dataclass(kw_only=True)
class FlowPart:
    """The flow-control jobs as the demo follows them."""

    app: corq.App
    big: list[corq.JobHandle[str]] = field(default_factory=list)
    small: list[corq.JobHandle[str]] = field(default_factory=list)
    calls: list[corq.JobHandle[int]] = field(default_factory=list)
    welcomes: list[corq.JobHandle[str]] = field(default_factory=list)
    exports: list[corq.JobHandle[str]] = field(default_factory=list)
    records: dict[str, corq.Job] = field(default_factory=dict)

    async def send(self) -> None:
        """Send every flow-control job (the big tenant's backlog before the small tenant)."""
        self.big = await tasks.sync_tenant.enqueue_many([("big", p) for p in range(BIG_PAGES)])
        self.small = await tasks.sync_tenant.enqueue_many(
            [("small", p) for p in range(SMALL_PAGES)]
        )
        self.calls = await tasks.call_partner.enqueue_many([(n,) for n in range(CALLS)])
        welcome = tasks.send_welcome.with_options(unique_key="welcome-ann")
        self.welcomes = [await welcome.enqueue("ann"), await welcome.enqueue("ann")]
        first = await tasks.export_report.enqueue("monthly")
        late = await tasks.export_report.with_options(expires=EXPIRES_S).enqueue("weekly")
        self.exports = [first, late]

    @property
    def handles(self) -> list[corq.JobHandle[object]]:
        """Every job sent (the duplicate welcome's handle names the first one's job)."""
        every: list[corq.JobHandle[object]] = [
            *self.big,
            *self.small,
            *self.calls,
            *self.welcomes,
            *self.exports,
        ]
        return list({h.id: h for h in every}.values())

    async def wait(self) -> None:
        """Until every job has ended (the caller bounds the wait)."""
        while True:
            pending = [h for h in self.handles if not self._ended(h.id)]
            if not pending:
                return
            for handle, record in zip(
                pending, await asyncio.gather(*(h.info() for h in pending)), strict=True
            ):
                self.records[handle.id] = record
            await asyncio.sleep(POLL_S)

    def _ended(self, job_id: str) -> bool:
        record = self.records.get(job_id)
        return record is not None and record.status in _ENDED

    def pending(self) -> str:
        """The jobs not ended yet, for the timeout message."""
        waiting = [h for h in self.handles if not self._ended(h.id)]
        return f"flow control ({len(waiting)} jobs)" if waiting else ""

    def summarize(self, console: Console) -> bool:
        """What each rule did, from the records; True when it all went as it should."""
        table = Table(title="flow control", title_justify="left")
        table.add_column("rule", style="bold", no_wrap=True)
        table.add_column("what happened")
        checks = [self._fair(table), self._rate(table), self._unique(table), self._expired(table)]
        console.print()
        console.print(table)
        return all(checks)

    def _starts(self, handles: list[corq.JobHandle[str]] | list[corq.JobHandle[int]]) -> list[int]:
        return sorted(self.records[h.id].started_at_ms or 0 for h in handles)

    def _fair(self, table: Table) -> bool:
        small_last = self._starts(self.small)[-1]
        big_before = sum(1 for ms in self._starts(self.big) if ms <= small_last)
        most = max(_most_at_once(self._spans(self.big)), _most_at_once(self._spans(self.small)))
        table.add_row(
            "key_concurrency=2",
            f"tenant small's {SMALL_PAGES} jobs, sent after big's {BIG_PAGES}, all started "
            f"after {big_before} of big's (fair turns); at most {most} of one tenant at once",
        )
        return most <= 2 and big_before < BIG_PAGES and self._succeeded(self.big + self.small)

    def _spans(self, handles: list[corq.JobHandle[str]]) -> list[tuple[int, int]]:
        records = [self.records[h.id] for h in handles]
        return [(r.started_at_ms or 0, r.finished_at_ms or 0) for r in records]

    def _rate(self, table: Table) -> bool:
        starts = self._starts(self.calls)
        interval_ms = 1000 / RATE_PER_S
        at_once = sum(1 for ms in starts if ms < starts[0] + interval_ms / 2)
        spread_s = (starts[-1] - starts[0]) / 1000
        table.add_row(
            f'rate_limit="{RATE_PER_S}/s"',
            f"{CALLS} calls sent at once: {at_once} started at once (a full bucket), the "
            f"other {CALLS - at_once} one every {interval_ms:g} ms as it refilled "
            f"(the last after {spread_s:.2f}s)",
        )
        refill_s = (CALLS - RATE_PER_S) / RATE_PER_S
        return at_once <= RATE_PER_S and spread_s >= 0.9 * refill_s and self._succeeded(self.calls)

    def _unique(self, table: Table) -> bool:
        first, second = self.welcomes
        same = first.id == second.id
        table.add_row(
            'unique_key="welcome-ann"',
            f"1st enqueue {first.outcome}, 2nd {second.outcome}: "
            + ("the same job" if same else "[red]two jobs[/red]")
            + f" ({first.id})",
        )
        return same and second.outcome is corq.Outcome.EXISTING and self._succeeded([first])

    def _expired(self, table: Table) -> bool:
        first, late = (self.records[h.id] for h in self.exports)
        table.add_row(
            f"expires={EXPIRES_S:g}s",
            f"export weekly waited behind monthly (concurrency=1) and ended {late.status} "
            f"({late.error}); its result() raises corq.JobExpiredError",
        )
        return late.status is corq.JobStatus.EXPIRED and first.status is corq.JobStatus.SUCCEEDED

    def _succeeded(self, handles: list[corq.JobHandle[str]] | list[corq.JobHandle[int]]) -> bool:
        return all(self.records[h.id].status is corq.JobStatus.SUCCEEDED for h in handles)


def _most_at_once(spans: list[tuple[int, int]]) -> int:
    """The most spans open at one instant (an end before a start at the same ms)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most
