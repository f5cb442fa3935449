"""Records job outcomes in batches: one round trip per kind for many jobs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from corq.aio import Backoff
from corq.backends.base import Backend, Completion, Failure, Release
from corq.errors import BrokerError
from corq.types import WorkerId
from corq.worker.runner import Outcome

log = logging.getLogger(__name__)

#: Most outcomes written in one round trip.
BATCH = 1000


class OutcomeWriter:
    """Drains the worker's outcome queue into the broker until it reads None.

    While the broker is unreachable, outcomes wait in memory and are retried with backoff:
    a result computed is never thrown away because Redis blinked.
    """

    def __init__(
        self,
        backend: Backend,
        worker_id: WorkerId,
        result_ttl_s: float,
        counts: dict[str, int],
    ) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.ttl_ms = round(result_ttl_s * 1000)
        self.counts = counts

    async def run(self, outcomes: asyncio.Queue[Outcome | None]) -> None:
        backoff = Backoff("record outcomes")
        while True:
            batch, stop = await _next_batch(outcomes)
            while batch:
                try:
                    await self.write(batch)
                    backoff.reset()
                    batch = []
                except BrokerError as exc:
                    await backoff.wait(exc)
            if stop:
                return

    async def write(self, batch: list[Outcome]) -> None:
        completions = [o for o in batch if isinstance(o, Completion)]
        failures = [o for o in batch if isinstance(o, Failure)]
        releases = [o for o in batch if isinstance(o, Release)]
        results: list[tuple[str, Any, bool]] = []
        if completions:
            oks = await self.backend.complete_jobs(self.worker_id, completions, self.ttl_ms)
            results += [("succeeded", o, ok) for o, ok in zip(completions, oks, strict=True)]
        if failures:
            oks = await self.backend.fail_jobs(self.worker_id, failures, self.ttl_ms)
            results += [("failed", o, ok) for o, ok in zip(failures, oks, strict=True)]
        if releases:
            oks = await self.backend.release_jobs(self.worker_id, releases)
            results += [("released", o, ok) for o, ok in zip(releases, oks, strict=True)]
        self._count(results)

    def _count(self, results: list[tuple[str, Any, bool]]) -> None:
        for kind, outcome, ok in results:
            if ok:
                self.counts[kind] += 1
                continue
            self.counts["rejected"] += 1
            log.warning(
                "job %s: outcome not recorded, this worker no longer holds it "
                "(its lease expired and the job was taken back)",
                outcome.job_id,
            )


async def _next_batch(outcomes: asyncio.Queue[Outcome | None]) -> tuple[list[Outcome], bool]:
    """Wait for one outcome, then take what else is already there; None means stop."""
    first = await outcomes.get()
    if first is None:
        return [], True
    batch = [first]
    while len(batch) < BATCH and not outcomes.empty():
        item = outcomes.get_nowait()
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False
