"""Fetching: which queue claims next, how many jobs, how many of them suspects.

`Admission` decides, without I/O; `Fetcher` runs one loop per queue that asks it for a turn,
claims what the turn grants (one round trip for a batch), and blocks on the broker's wake
signal when the queue is empty (no sleep-polling).

Today's policy: queues take turns (their fetchers queue on one FIFO lock), each turn claims
as many jobs as there are free slots (at most `BATCH`), and suspects only while a sandbox is
free. In burst mode, the worker is done once every queue was seen empty since the last job
ended and nothing runs.

Where the coming controls go:

- pause: `Admission.turn` waits while its queue is paused (a set of paused queues and an
  event, like the free-slot wait);
- weights: `turn` hands scarce slots to the waiting queue furthest below its share, instead
  of the lock's arrival order;
- limits (per queue or task, local or cluster-wide): `_grant` caps `count` by the allowance
  left, and `finished` gives a slot back to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from corq.aio import Backoff
from corq.backends.base import BATCH as BATCH  # most jobs one claim takes
from corq.backends.base import Backend, ClaimBatch, ClaimedJob
from corq.errors import BrokerDataError, BrokerError
from corq.types import Clock, QueueName, WorkerId
from corq.worker.leases import Leases

log = logging.getLogger(__name__)

#: An idle fetcher re-checks its queue at least this often, even without a wake signal.
IDLE_BLOCK_S = 2.0
#: A queue whose claims the broker refuses (damaged store) is tried again this often.
REFUSED_RETRY_S = 10.0


@dataclass(frozen=True, slots=True)
class Grant:
    """What one claim may take."""

    #: Most jobs to claim.
    count: int
    #: Most of them that may be suspects (each needs a free sandbox).
    suspects: int


class Admission:
    """Free slots, free sandboxes and turns between queues; burst mode's end."""

    def __init__(
        self, queues: Sequence[QueueName], *, concurrency: int, sandboxes: int, burst: bool
    ) -> None:
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.sandboxes = sandboxes
        self.burst = burst
        #: Slots not taken by a running job.
        self.free = concurrency
        #: Suspects claimed and not finished (each holds a sandbox).
        self.suspects_running = 0
        #: Held while a claim is in flight: reconciliation takes it too, so that every job
        #: the broker lists for this worker is one it already knows.
        self.lock = asyncio.Lock()
        self._slot_freed = asyncio.Event()
        self._activity = asyncio.Event()
        self._empty: set[QueueName] = set()
        #: Work that may still make jobs ready: jobs claimed whose outcome is not recorded
        #: yet, and queues whose workflows are not settled yet (burst mode waits for both).
        self._pending = 0

    @contextlib.asynccontextmanager
    async def turn(self, queue: QueueName) -> AsyncIterator[Grant]:
        """Wait until `queue` may claim, then hold the turn while the claim is in flight.

        Jobs claimed must be reported with `claimed` before the turn ends.
        """
        while True:
            await self._wait_for_slot()
            async with self.lock:
                grant = self._grant()
                if grant is not None:
                    yield grant
                    return
            # Another queue took the last slots while we waited for the lock: wait again.

    def _grant(self) -> Grant | None:
        count = min(self.free, BATCH)
        if count <= 0:
            return None
        free_sandboxes = max(0, self.sandboxes - self.suspects_running)
        return Grant(count=count, suspects=min(count, free_sandboxes))

    async def _wait_for_slot(self) -> None:
        while self.free <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def claimed(self, job: ClaimedJob) -> None:
        """A job was claimed: it takes a slot (and a sandbox, if a suspect)."""
        self.free -= 1
        self.suspects_running += job.suspect
        self._empty.discard(job.queue)

    def finished(self, job: ClaimedJob) -> None:
        """A job's task ended: its slot is free again."""
        self.free += 1
        self.suspects_running -= job.suspect
        self._slot_freed.set()
        if self.burst:  # the job may have enqueued more: look again before stopping
            self._empty.clear()
            self._activity.set()

    def pending(self, delta: int) -> None:
        """One more (+1) or one less (-1) piece of work that may still make jobs ready: an
        outcome not recorded yet (a workflow job's children are released by it), a queue's
        workflows not settled yet. When the last one is done, burst mode looks again."""
        self._pending += delta
        if self.burst and delta < 0 and self._pending == 0:
            self._empty.clear()
            self._activity.set()

    def queue_empty(self, queue: QueueName) -> bool:
        """Burst mode: `queue` had nothing to claim; True once the worker is done."""
        self._empty.add(queue)
        self._activity.clear()
        return (
            self.free == self.concurrency
            and self._pending == 0
            and self._empty.issuperset(self.queues)
        )

    async def wait_for_activity(self, timeout_s: float) -> None:
        """Burst mode: wait until a job ends (it may have enqueued more), or `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._activity.wait(), timeout_s)


class Fetcher:
    """One claim loop per queue, on the turns `Admission` grants."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        admission: Admission,
        leases: Leases,
        *,
        start: Callable[[ClaimedJob, WorkerId], None],
        note_due: Callable[[QueueName, int | None], None],
        burst_done: Callable[[], None],
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.admission = admission
        self.leases = leases
        self._start = start
        self._note_due = note_due
        self._burst_done = burst_done

    async def run(self, queue: QueueName) -> None:
        """Claim from `queue` until cancelled."""
        backoff = Backoff(f"claim {queue}")
        while True:
            try:
                async with self.admission.turn(queue) as grant:
                    holder = self.leases.lease.holder(queue)
                    batch = await self._claim(queue, holder, grant)
            except BrokerError as exc:
                await backoff.wait(exc)
                continue
            except BrokerDataError as exc:
                log.error("queue %s: the broker refused the claim: %s", queue, exc)
                await asyncio.sleep(REFUSED_RETRY_S)
                continue
            backoff.reset()
            if batch.lost:
                await self.leases.recover_lost([(queue, holder)])
            elif not batch.jobs:
                await self._idle_wait(queue, backoff)

    async def _claim(self, queue: QueueName, holder: WorkerId, grant: Grant) -> ClaimBatch:
        """One claim; every job claimed is started before the turn ends."""
        batch = await self.backend.claim_jobs(
            queue,
            holder,
            grant.count,
            self.leases.lease.lease_ms,
            self.clock.broker_now_ms(),
            suspects=grant.suspects,
        )
        if batch.lost:
            return batch
        self._note_due(queue, batch.next_due_ms)
        for job in batch.jobs:
            if job.suspect:
                log.warning(
                    "job %s (%s) died with %d worker(s) already: running it in a sandbox",
                    job.id,
                    job.task,
                    job.deaths,
                )
            self._start(job, holder)
        return batch

    async def _idle_wait(self, queue: QueueName, backoff: Backoff) -> None:
        """Nothing to claim: block on the wake signal (burst: stop, or wait for a job to end)."""
        if self.admission.burst:
            if self.admission.queue_empty(queue):
                log.info("burst: queues empty, stopping")
                self._burst_done()
            await self.admission.wait_for_activity(IDLE_BLOCK_S)
            return
        try:
            await self.backend.wait_for_jobs(queue, IDLE_BLOCK_S)
        except BrokerError as exc:
            await backoff.wait(exc)
