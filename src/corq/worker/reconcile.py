"""Reconciliation: what the broker says a worker holds against what it runs.

The lease is per worker, not per job, so nothing else notices a job the broker thinks this
worker holds but that the worker does not run: a claim whose reply was lost to a socket
timeout, an outcome dropped after a bug. Every few heartbeats the worker compares, per
queue, the broker's count of its held jobs with its own (one cheap call); only when the
broker holds more or fewer, or every few rounds anyway, it lists them (with fences) and
gives back each one it does not know, uncounted. A job it runs that the broker no longer
lists as its own was taken away: it is stopped, and nothing is written for it; one whose
record says cancelled is stopped as an operator's cancel is (the durable path behind the
control channel's message: a thread gets its grace period, observers hear
``job_cancelled``). The control listener asks for a round at once (``request_round``) when
it had lost its connection, so a missed CANCEL costs no more than a round trip or two.

Run under the worker's claim lock, so no claim is in flight: every job the broker lists was
either claimed by this worker (and is in its registry) or is a stray, except in a queue
waiting for a hand-over (``await_jobs``), where a job held for it may be on its way: there a
stray is given back only when the next round finds it a stray again. Releases are fenced,
so a race with an outcome written meanwhile is refused by the broker, never harmful.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from corq.aio import OutageLog, reraise_if_cancelling
from corq.backends.base import Backend, HeldJob, Release, WorkerLease
from corq.errors import BrokerDataError, BrokerError
from corq.job import JobStatus
from corq.types import Clock, QueueName
from corq.worker.leases import Leases
from corq.worker.registry import CancelReason, Registry, Running

log = logging.getLogger(__name__)

#: Every this many reconciliation rounds, list held jobs even when the counts agree.
FULL_RECONCILE_EVERY = 10


@dataclass
class Findings:
    """What one reconciliation round did."""

    #: Jobs the broker said this worker held without running them, given back.
    released: int = 0
    #: Jobs this worker ran that the broker no longer listed as its own.
    taken: list[Running] = field(default_factory=list)


class Reconciler:
    """Runs a reconciliation round every `interval_s`, under the claim lock."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        registry: Registry,
        leases: Leases,
        claim_lock: asyncio.Lock,
        *,
        interval_s: float,
        awaiting: Callable[[QueueName], bool] = lambda queue: False,
        cancel_grace_s: float = 0.0,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.registry = registry
        self.leases = leases
        self.claim_lock = claim_lock
        self.interval_s = interval_s
        self.awaiting = awaiting
        self.cancel_grace_s = cancel_grace_s
        #: Strays (id, fence) seen last round in queues waiting for a hand-over.
        self._deferred: dict[QueueName, set[tuple[str, int]]] = {}
        #: Set by request_round: the next round starts now, and lists every queue.
        self._soon = asyncio.Event()

    def request_round(self) -> None:
        """Reconcile now (fully) instead of at the next interval."""
        self._soon.set()

    async def _pause(self) -> bool:
        """Wait for the next round; True when it was asked for (request_round)."""
        if not self._soon.is_set():
            sleep = asyncio.ensure_future(self.clock.sleep(self.interval_s))
            soon = asyncio.ensure_future(self._soon.wait())
            try:
                await asyncio.wait([sleep, soon], return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                soon.cancel()
        asked = self._soon.is_set()
        self._soon.clear()
        return asked

    async def run(self) -> None:
        """Reconcile until cancelled."""
        rounds, outage = 0, OutageLog("reconciliation", log)
        while True:
            asked = await self._pause()
            rounds += 1
            try:
                async with self.claim_lock:
                    findings = await reconcile(
                        self.backend,
                        self.registry,
                        self.leases.lease,
                        full=asked or rounds % FULL_RECONCILE_EVERY == 0,
                        defer=self._defer,
                    )
            except (BrokerError, BrokerDataError) as exc:
                reraise_if_cancelling()
                outage.failed(exc)
                continue
            outage.ok()
            for running in findings.taken:
                await self._stop(running)

    async def _stop(self, running: Running) -> None:
        """Stop a job taken away: as an operator's cancel when its record says cancelled."""
        job = running.job
        try:
            record = await self.backend.get_job(job.id, job.queue)
        except (BrokerError, BrokerDataError):
            record = None
        if record is not None and record.status is JobStatus.CANCELLED:
            log.info("job %s was cancelled: stopping it", job.id)
            self.registry.cancel(running, CancelReason.OPERATOR, self.cancel_grace_s)
        else:
            log.warning("job %s is no longer held by this worker: stopping it", job.id)
            self.registry.cancel(running, CancelReason.LOST)

    def _defer(self, queue: QueueName, strays: list[HeldJob]) -> list[HeldJob]:
        """The strays to give back now: in a queue waiting for a hand-over, only those that
        were strays last round too (a job handed over reaches the worker within moments)."""
        before = self._deferred.pop(queue, set())
        if not self.awaiting(queue):
            return strays
        self._deferred[queue] = {(h.job_id, h.fence) for h in strays}
        return [h for h in strays if (h.job_id, h.fence) in before]


#: Which of a queue's strays to give back now (all of them by default).
Defer = Callable[[QueueName, list[HeldJob]], list[HeldJob]]


async def reconcile(
    backend: Backend,
    registry: Registry,
    lease: WorkerLease,
    *,
    full: bool,
    defer: Defer = lambda queue, strays: strays,
) -> Findings:
    """One round over every queue of `lease`; `full` lists even when the counts agree."""
    findings = Findings()
    for queue in lease.queues:
        await _queue(backend, registry, lease, queue, full, findings, defer)
    return findings


async def _queue(
    backend: Backend,
    registry: Registry,
    lease: WorkerLease,
    queue: QueueName,
    full: bool,
    findings: Findings,
    defer: Defer,
) -> None:
    holder = lease.holder(queue)
    known = registry.held_by(queue, holder)
    if not full and await backend.count_held_jobs(queue, holder) == len(known):
        return
    listed = await backend.list_held_jobs(queue, holder)
    strays = defer(queue, [h for h in listed if known.get(h.job_id) != h.fence])
    if strays:
        findings.released += await _give_back(backend, holder, queue, strays)
    on_record = {(h.job_id, h.fence) for h in listed}
    for running in registry.executing():
        job = running.job
        if job.queue == queue and running.holder == holder and (job.id, job.fence) not in on_record:
            findings.taken.append(running)


async def _give_back(backend: Backend, holder: str, queue: QueueName, strays: list[HeldJob]) -> int:
    releases = [
        Release(job_id=h.job_id, queue=queue, fence=h.fence, unstarted=True) for h in strays
    ]
    done = sum(await backend.release_jobs(holder, releases))
    if done:
        log.warning(
            "gave back %d job(s) of queue %s that the broker said this worker held but it "
            "was not running (e.g. a claim whose reply was lost)",
            done,
            queue,
        )
    return done
