"""Lifecycle events and attempt history for operators (`corq events`, `corq job ID`).

The broker keeps a bounded log of every job's moves (see docs/design.md, "Events and
attempt history"); this part reads it with filters, follows it live across broker
outages, and reads a job's attempts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from corq.admin.base import AdminBase
from corq.errors import BrokerError, JobNotFoundError
from corq.events import Attempt, Event, EventPage
from corq.types import JobId, QueueName, TaskName

log = logging.getLogger("corq.admin.events")

#: Events one read of the broker asks for.
PAGE = 500
#: How long one blocking read of `follow` waits for news before it asks again.
FOLLOW_BLOCK_S = 1.0
#: The first and the longest wait before `follow` tries again after an outage.
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a reader wants (None: any)."""

    queues: list[QueueName] | None = None
    task: TaskName | None = None
    job_id: JobId | None = None

    def __call__(self, event: Event) -> bool:
        return (self.task is None or event.task == self.task) and (
            self.job_id is None or event.job_id == self.job_id
        )


def _queues(queue: QueueName | Sequence[QueueName] | None) -> list[QueueName] | None:
    if queue is None:
        return None
    return [queue] if isinstance(queue, str) else list(queue)


class EventsAdmin(AdminBase):
    """Read and follow the events log; a job's attempts."""

    async def events(
        self,
        cursor: str | None = None,
        *,
        queue: QueueName | Sequence[QueueName] | None = None,
        task: TaskName | None = None,
        job_id: JobId | None = None,
        limit: int = 100,
    ) -> EventPage:
        """Up to `limit` events after `cursor` (None: from the oldest kept), oldest first,
        of the queues given (all when None) and of that task or job; the page's cursor
        reads on after the last event looked at (matching or not)."""
        wanted = EventFilter(_queues(queue), task, job_id)
        limit = max(1, limit)
        found: list[Event] = []
        gap = False
        while True:
            page = await self.backend.read_events(cursor, queues=wanted.queues, limit=PAGE)
            gap = gap or page.gap
            for event in page.events:
                if wanted(event):
                    found.append(event)
                    if len(found) == limit:
                        return EventPage(events=found, cursor=event.cursor, gap=gap)
            cursor = page.cursor
            if not page.events:
                break
        return EventPage(events=found, cursor=cursor or "", gap=gap)

    async def events_cursor(self, queue: QueueName | Sequence[QueueName] | None = None) -> str:
        """A cursor at the end of the log now: following from it shows only what comes."""
        return await self.backend.events_cursor(_queues(queue))

    async def follow(
        self,
        cursor: str | None = None,
        *,
        queue: QueueName | Sequence[QueueName] | None = None,
        task: TaskName | None = None,
        job_id: JobId | None = None,
        on_gap: Callable[[], None] | None = None,
    ) -> AsyncIterator[Event]:
        """Every matching event from `cursor` on (None: from now), as it comes, forever.

        A broker outage is waited out (retried with backoff, from the last cursor), so no
        event is shown twice or skipped; events trimmed away before they were read (the
        reader fell behind the log's bound) call `on_gap`.
        """
        wanted = EventFilter(_queues(queue), task, job_id)
        delay = RETRY_FIRST_S
        while cursor is None:
            try:
                cursor = await self.backend.events_cursor(wanted.queues)
            except BrokerError as exc:
                delay = await _wait_out(exc, delay)
        while True:
            try:
                page = await self.backend.read_events(
                    cursor, queues=wanted.queues, limit=PAGE, block_s=FOLLOW_BLOCK_S
                )
            except BrokerError as exc:
                delay = await _wait_out(exc, delay)
                continue
            delay = RETRY_FIRST_S
            if page.gap and on_gap is not None:
                on_gap()
            for event in page.events:
                if wanted(event):
                    yield event
            cursor = page.cursor

    async def job_attempts(self, job_id: JobId, queue: QueueName | None = None) -> list[Attempt]:
        """The job's attempts, first first; JobNotFoundError when no queue holds it."""
        if queue is None:
            job = await self.backend.get_job(job_id, None)
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found (unknown id, expired or purged)")
            queue = job.queue
        return await self.backend.job_attempts(job_id, queue)


async def _wait_out(exc: BrokerError, delay: float) -> float:
    """Sleep `delay` (the broker is out), and return the next delay (doubled, capped)."""
    log.warning("events: broker unavailable (%s); retrying in %.1f s", exc, delay)
    await asyncio.sleep(delay)
    return min(delay * 2, RETRY_MAX_S)
