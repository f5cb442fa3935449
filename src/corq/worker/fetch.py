"""Fetching: which queue claims next, how many jobs, how many of them suspects.

`Admission` decides, without I/O; `Fetcher` runs one loop per queue that asks it for a turn,
claims what the turn grants (one round trip for a batch), and, when the queue is empty,
waits for the broker to hand it a job (``await_jobs``, one round trip to start it).

Slots go to queues by weight (``Worker(queues={"high": 5, "low": 1})``): every free slot is
given, one at a time, to one of the queues *waiting for work* by nginx's smooth weighted
round robin (`WeightedTurns`), so under load each queue's share of started jobs follows its
weight. A queue whose claim took nothing leaves the waiting set (its share goes to the
others) until its fetcher is woken and asks again. Claims are one at a time (one FIFO
lock, which reconciliation takes too); the slots given to a queue wait for its turn.

An idle queue (its claim took nothing and listed its holder as idle in the broker) holds one
slot back for the job the broker may hand it: a handed-over job is already claimed, so the
worker never runs more than its concurrency. Idle listing is used only where that slot can
be spared (one queue, or slots left for the others); elsewhere the fetcher claims, and
blocks on the wake signal when the queue is empty. In burst mode, the worker is done once
every queue was seen empty since the last job ended and nothing runs.

The runtime configuration (``worker/config.py``) sets the queues' weights (`set_weights`)
and pauses (`set_paused`: a paused queue's `turn` waits). Where local limits would go:
`_allocate` caps a queue's slots by its allowance, `finished` gives one back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
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
    #: The claim may list the holder as idle when it takes nothing (``claim_jobs(idle=)``):
    #: a slot is then held back for the job the broker hands over.
    idle: bool = False


class WeightedTurns:
    """Smooth weighted round robin (nginx's) over the queues waiting for work. No I/O.

    Each pick adds every waiting queue's weight to its credit, takes the queue with the most
    credit (the first one listed on a tie) and takes the waiting queues' total weight from
    it: over any run of picks among the same queues each gets its weight's share, spread
    out rather than in bursts, and a queue left out of a pick neither gains nor loses.
    """

    def __init__(self, weights: Mapping[QueueName, int]) -> None:
        self.weights = dict(weights)
        self.credit = dict.fromkeys(self.weights, 0)

    def pick(self, waiting: Collection[QueueName]) -> QueueName | None:
        """The queue the next slot goes to, among `waiting` (None when none waits)."""
        best: QueueName | None = None
        total = 0
        for queue, weight in self.weights.items():
            if queue not in waiting:
                continue
            self.credit[queue] += weight
            total += weight
            if best is None or self.credit[queue] > self.credit[best]:
                best = queue
        if best is not None:
            self.credit[best] -= total
        return best


class Admission:
    """Free slots, free sandboxes and turns between queues by weight; burst mode's end."""

    def __init__(
        self,
        queues: Mapping[QueueName, int] | Sequence[QueueName],
        *,
        concurrency: int,
        sandboxes: int,
        burst: bool,
    ) -> None:
        weights = queues if isinstance(queues, Mapping) else dict.fromkeys(queues, 1)
        self.queues = tuple(weights)
        self.concurrency = concurrency
        self.sandboxes = sandboxes
        self.burst = burst
        #: Slots not taken by a running job.
        self.free = concurrency
        #: Suspects claimed and not finished (each holds a sandbox).
        self.suspects_running = 0
        #: Held while a claim is in flight: reconciliation takes it too, so that every job
        #: the broker lists for this worker is one it already knows (or one being handed
        #: over to an idle queue, see `awaiting`).
        self.lock = asyncio.Lock()
        self._turns = WeightedTurns(weights)
        #: Queues waiting for work: every queue but those whose last claim took nothing.
        self._waiting: set[QueueName] = set(self.queues)
        #: Slots given to a queue that its next claim may take.
        self._owed: dict[QueueName, int] = {}
        #: Queues listed idle in the broker, each holding one slot for a hand-over.
        self._idle: set[QueueName] = set()
        self._changed = asyncio.Event()
        self._activity = asyncio.Event()
        self._empty: set[QueueName] = set()
        #: Work that may still make jobs ready: jobs claimed whose outcome is not recorded
        #: yet, and queues whose workflows are not settled yet (burst mode waits for both).
        self._pending = 0
        #: Queues the runtime configuration pauses: given no turns (the broker refuses
        #: their claims anyway).
        self.paused: frozenset[QueueName] = frozenset()

    def set_weights(self, weights: Mapping[QueueName, int]) -> None:
        """New weights for the queues named (the runtime configuration's); the credits
        earned so far are kept."""
        changed = {q: w for q, w in weights.items() if q in self._turns.weights}
        if any(self._turns.weights[q] != w for q, w in changed.items()):
            self._turns.weights.update(changed)
            self._changed.set()

    def set_paused(self, queues: Collection[QueueName]) -> None:
        """The queues the runtime configuration pauses: their turns wait, the slots given
        to them go back to the others."""
        paused = frozenset(q for q in queues if q in self._turns.weights)
        if paused == self.paused:
            return
        self.paused = paused
        for queue in paused:
            self._owed.pop(queue, None)
        self._changed.set()

    @property
    def claimable(self) -> int:
        """Free slots claims may still fill (those held for hand-overs set aside)."""
        return self.free - len(self._idle)

    @property
    def spare(self) -> int:
        """Free slots not yet given to a queue nor held for a hand-over."""
        return self.free - len(self._idle) - sum(self._owed.values())

    @contextlib.asynccontextmanager
    async def turn(self, queue: QueueName) -> AsyncIterator[Grant]:
        """Wait until `queue` is given slots, then hold the turn while the claim is in flight.

        Asking for a turn puts the queue back among those waiting for work. Jobs claimed
        must be reported with `claimed` (or an empty claim with `idle` or `empty`) before
        the turn ends.
        """
        self._waiting.add(queue)
        while True:
            self._changed.clear()  # before looking: a change from now on wakes us
            async with self.lock:
                count = 0 if queue in self.paused else self._take(queue)
                if count > 0:
                    yield self._grant(count)
                    return
            await self._changed.wait()

    def _take(self, queue: QueueName) -> int:
        """The slots `queue` may claim now: those given to it, after giving out the spare."""
        if queue not in self._owed and self._allocate():
            self._changed.set()  # other queues may have been given slots: wake them
        return self._owed.pop(queue, 0)

    def _allocate(self) -> int:
        """Give the spare slots, one at a time by weight, to the queues waiting for work
        (at most a claim's `BATCH` each); how many were given."""
        if len(self.queues) == 1:
            return self._allocate_alone(self.queues[0])
        candidates = {q for q in self._waiting - self.paused if self._owed.get(q, 0) < BATCH}
        given = 0
        for _ in range(max(0, self.spare)):
            queue = self._turns.pick(candidates)
            if queue is None:
                break
            given += 1
            owed = self._owed[queue] = self._owed.get(queue, 0) + 1
            if owed >= BATCH:
                candidates.discard(queue)
        return given

    def _allocate_alone(self, queue: QueueName) -> int:
        """One queue has nobody to share with: it is given the spare slots, no picks."""
        owed = self._owed.get(queue, 0)
        waiting = queue in self._waiting and queue not in self.paused
        given = min(self.spare, BATCH - owed) if waiting else 0
        if given > 0:
            self._owed[queue] = owed + given
        return max(given, 0)

    def _grant(self, count: int) -> Grant:
        free_sandboxes = max(0, self.sandboxes - self.suspects_running)
        return Grant(count=count, suspects=min(count, free_sandboxes), idle=self._may_idle())

    def _may_idle(self) -> bool:
        """Whether an empty claim may hold a slot back for a hand-over: never in burst mode
        (it must see the queue empty), and only while the other queues keep a slot."""
        if self.burst:
            return False
        return len(self.queues) == 1 or len(self._idle) + 1 < self.concurrency

    def claimed(self, job: ClaimedJob) -> None:
        """A job was claimed (or handed over): it takes a slot (and a sandbox, if a suspect)."""
        self.free -= 1
        self.suspects_running += job.suspect
        self._empty.discard(job.queue)

    def idle(self, queue: QueueName) -> None:
        """`queue`'s claim took nothing and listed its holder idle: it holds one slot for the
        job the broker may hand over, and leaves the waiting set until `woken`."""
        self._leave(queue)
        self._idle.add(queue)

    def empty(self, queue: QueueName) -> None:
        """`queue`'s claim took nothing: it leaves the waiting set until it asks again."""
        self._leave(queue)

    def _leave(self, queue: QueueName) -> None:
        self._waiting.discard(queue)
        if self._owed.pop(queue, 0):
            self._changed.set()

    def woken(self, queue: QueueName) -> None:
        """An idle queue's wait ended: its held slot is free again (a job handed over takes
        it back at once with `claimed`)."""
        if queue in self._idle:
            self._idle.discard(queue)
            self._changed.set()

    def awaiting(self, queue: QueueName) -> bool:
        """True while `queue` waits for a hand-over: a job the broker lists as held by this
        worker may be on its way to it."""
        return queue in self._idle

    def finished(self, job: ClaimedJob) -> None:
        """A job's task ended: its slot is free again."""
        self.free += 1
        self.suspects_running -= job.suspect
        self._changed.set()
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
            and self._empty.issuperset(set(self.queues) - self.paused)
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
                await self._idle_wait(queue, holder, batch, backoff)

    async def _claim(self, queue: QueueName, holder: WorkerId, grant: Grant) -> ClaimBatch:
        """One claim; every job claimed is started before the turn ends."""
        batch = await self.backend.claim_jobs(
            queue,
            holder,
            grant.count,
            self.leases.lease.lease_ms,
            self.clock.broker_now_ms(),
            suspects=grant.suspects,
            idle=grant.idle,
        )
        if batch.lost:
            return batch
        self._note_due(queue, batch.next_due_ms)
        if not batch.jobs:
            if batch.idle:
                self.admission.idle(queue)
            else:
                self.admission.empty(queue)
        self._start_all(batch.jobs, holder)
        return batch

    def _start_all(self, jobs: Sequence[ClaimedJob], holder: WorkerId) -> None:
        for job in jobs:
            if job.suspect:
                log.warning(
                    "job %s (%s) died with %d worker(s) already: running it in a sandbox",
                    job.id,
                    job.task,
                    job.deaths,
                )
            self._start(job, holder)

    async def _idle_wait(
        self, queue: QueueName, holder: WorkerId, batch: ClaimBatch, backoff: Backoff
    ) -> None:
        """Nothing to claim: wait for a hand-over when listed idle, else block on the wake
        signal (burst: stop, or wait for a job to end, or for a limit to let more start)."""
        try:
            if self.admission.burst:
                await self._burst_wait(queue, batch)
            elif batch.idle:
                await self._await_hand_over(queue, holder)
            else:
                await self.backend.wait_for_jobs(queue, IDLE_BLOCK_S)
        except BrokerError as exc:
            await backoff.wait(exc)

    async def _burst_wait(self, queue: QueueName, batch: ClaimBatch) -> None:
        """Burst mode: jobs still ready but held back by a rate or concurrency limit keep
        the worker going (it waits for the limit, not for time); else the queue is empty.
        Counts the broker refuses to give (a damaged store) hold nothing back."""
        try:
            (stats,) = await self.backend.queue_stats([queue])
            held_back = stats.ready > batch.suspects
        except BrokerDataError as exc:
            log.error("queue %s: the broker refused its counts: %s", queue, exc)
            held_back = False
        if held_back:
            await self.backend.wait_for_jobs(queue, self._until_due(batch.next_due_ms))
            return
        if self.admission.queue_empty(queue):
            log.info("burst: queues empty, stopping")
            self._burst_done()
        await self.admission.wait_for_activity(IDLE_BLOCK_S)

    def _until_due(self, next_due_ms: int | None) -> float:
        """Seconds to block before claiming again: until the next start is due, at most
        IDLE_BLOCK_S (a freed slot wakes the wait earlier)."""
        if next_due_ms is None:
            return IDLE_BLOCK_S
        return min(IDLE_BLOCK_S, max(0.001, (next_due_ms - self.clock.now_ms()) / 1000))

    async def _await_hand_over(self, queue: QueueName, holder: WorkerId) -> None:
        """Wait for the broker to hand the idle holder a job, already claimed for it, and
        start it in the slot held back for it; woken without one (or after the timeout) the
        fetcher claims again."""
        try:
            jobs = await self.backend.await_jobs(queue, holder, IDLE_BLOCK_S)
            # Under the claim lock, as a claim's jobs: a reconciliation round sees them
            # either on their way (the queue awaiting) or in the registry, never between.
            async with self.admission.lock:
                self.admission.woken(queue)
                self._start_all(jobs or (), holder)
        finally:
            self.admission.woken(queue)
