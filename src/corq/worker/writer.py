"""Records job outcomes in batches: one round trip per kind for many jobs.

While the broker is unreachable, outcomes wait in memory and are retried with backoff: a
result computed is never thrown away because Redis blinked. An outcome the broker refuses
(BrokerDataError, or any other failure) is split from its batch so the rest goes through;
alone, it is replaced by a dead letter with a safe error, and if even that is refused it is
dropped and logged: the job is still held, so the worker's reconciliation gives it back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from corq.aio import Backoff
from corq.backends.base import BATCH, Backend, Completion, Failure, Release
from corq.errors import BrokerError
from corq.limits import error_line
from corq.types import WorkerId
from corq.worker.outcomes import Outcome

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Most result, error and traceback bytes written in one round trip.
BATCH_BYTES = 8 * 1024 * 1024

#: An outcome waiting to be written, with the holder id it was claimed under.
Pending = tuple[WorkerId, Outcome]
#: Told of every outcome once settled: (holder, outcome, recorded).
Settled = Callable[[WorkerId, Outcome, bool], None]


class OutcomeWriter:
    """Drains the worker's outcome queue into the broker until it reads None."""

    def __init__(self, backend: Backend, result_ttl_s: float, settled: Settled) -> None:
        self.backend = backend
        self.ttl_ms = round(result_ttl_s * 1000)
        self.settled = settled

    async def run(self, outcomes: asyncio.Queue[Pending | None]) -> None:
        while True:
            batch, stop = await _next_batch(outcomes)
            for (holder, kind), group in _groups(batch).items():
                await self._write(holder, kind, group)
            if stop:
                return

    async def _write(self, holder: WorkerId, kind: type, group: list[Outcome]) -> None:
        """Write one group (same holder, same kind), retrying outages, splitting refusals."""
        backoff = Backoff(f"record {kind.__name__.lower()}s")
        while True:
            try:
                recorded = await self._send(holder, kind, group)
            except BrokerError as exc:
                await backoff.wait(exc)
                continue
            except Exception as exc:  # refused: find the outcome at fault, write the others
                backoff.reset()
                await self._split(holder, kind, group, exc)
                return
            backoff.reset()
            for outcome, ok in zip(group, recorded, strict=True):
                self._settle(holder, outcome, ok)
            return

    async def _split(
        self, holder: WorkerId, kind: type, group: list[Outcome], exc: Exception
    ) -> None:
        if len(group) > 1:
            for outcome in group:
                await self._write(holder, kind, [outcome])
            return
        (outcome,) = group
        substitute = _dead_letter(outcome, exc)
        log.error(
            "job %s: the broker refused its outcome (%s)%s",
            outcome.job_id,
            error_line(exc),
            "; recording it as a dead letter instead" if substitute else "",
        )
        if substitute is None:
            self.settled(holder, outcome, False)
            return
        await self._write(holder, Failure, [substitute])

    async def _send(self, holder: WorkerId, kind: type, group: Sequence[Outcome]) -> list[bool]:
        if kind is Completion:
            return await self.backend.complete_jobs(holder, _of(Completion, group), self.ttl_ms)
        if kind is Failure:
            return await self.backend.fail_jobs(holder, _of(Failure, group), self.ttl_ms)
        return await self.backend.release_jobs(holder, _of(Release, group))

    def _settle(self, holder: WorkerId, outcome: Outcome, ok: bool) -> None:
        if not ok:
            log.warning(
                "job %s: outcome not recorded, this worker no longer holds it "
                "(its lease expired and the job was taken back)",
                outcome.job_id,
            )
        self.settled(holder, outcome, ok)


def _dead_letter(outcome: Outcome, exc: Exception) -> Failure | None:
    """What to write instead of an outcome the broker refused; None when nothing is left."""
    reason = f"the broker refused to record this outcome: {error_line(exc)}"
    if isinstance(outcome, Completion):
        return Failure(
            job_id=outcome.job_id,
            queue=outcome.queue,
            fence=outcome.fence,
            error=f"ResultNotStoredError: {reason}",
            traceback=None,
            retry_at_ms=None,
            finished_at_ms=outcome.finished_at_ms,
            counted=False,
        )
    if isinstance(outcome, Failure) and not outcome.error.startswith("OutcomeNotStoredError"):
        return replace(
            outcome,
            error=f"OutcomeNotStoredError: {reason}",
            traceback=None,
            retry_at_ms=None,
            counted=False,
            snoozed=False,
        )
    return None


def _of(kind: type[T], group: Sequence[Outcome]) -> list[T]:
    return [o for o in group if isinstance(o, kind)]


def _groups(batch: list[Pending]) -> dict[tuple[WorkerId, type], list[Outcome]]:
    groups: dict[tuple[WorkerId, type], list[Outcome]] = {}
    for holder, outcome in batch:
        groups.setdefault((holder, type(outcome)), []).append(outcome)
    return groups


def _size(outcome: Outcome) -> int:
    if isinstance(outcome, Completion):
        return len(outcome.result)
    if isinstance(outcome, Failure):
        return len(outcome.error) + len(outcome.traceback or "")
    return 0


async def _next_batch(outcomes: asyncio.Queue[Pending | None]) -> tuple[list[Pending], bool]:
    """Wait for one outcome, then take what else is there, up to BATCH and BATCH_BYTES;
    None means stop."""
    first = await outcomes.get()
    if first is None:
        return [], True
    batch = [first]
    size = _size(first[1])
    while len(batch) < BATCH and size < BATCH_BYTES and not outcomes.empty():
        item = outcomes.get_nowait()
        if item is None:
            return batch, True
        batch.append(item)
        size += _size(item[1])
    return batch, False
