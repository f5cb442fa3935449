"""The worker: a set of small loops around one event loop.

- one fetcher per queue claims as many jobs as there are free slots (one round trip for a
  batch, suspects included while a sandbox is free) and, when the queue is empty, blocks on
  the broker's wake signal (no sleep-polling);
- a promoter sleeps until the next delayed job is due and moves due jobs to the ready queue;
- a writer records outcomes in batches (one round trip for many jobs);
- a reclaimer renews the lease and takes back the jobs of dead workers;
- a reconciler gives back what the broker says this worker holds but it does not run;
- a ticker lets the heartbeat thread see the loop is alive.
If any of these loops dies, the worker stops.

Each queue is held under a holder id, ``<worker id>~<incarnation>``, with a new incarnation
at every registration: when a queue's lease is lost, only the jobs claimed under the lost
incarnation are cancelled, and the worker joins again under a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import secrets
import socket
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from corq.aio import Backoff, reraise_if_cancelling
from corq.backends.base import (
    HOLDER_SEPARATOR,
    ClaimBatch,
    ClaimedJob,
    Completion,
    Failure,
    Release,
    WorkerLease,
)
from corq.context import JobTuple
from corq.errors import BrokerDataError, BrokerError, ConfigError
from corq.task import check_queue_name
from corq.types import QueueName, WorkerId
from corq.worker.heartbeat import Heartbeat, LostHolders
from corq.worker.outcomes import Outcome, Outcomes
from corq.worker.reconcile import reconcile
from corq.worker.registry import CancelReason, Registry, Running
from corq.worker.runner import Runner
from corq.worker.writer import OutcomeWriter, Pending

if TYPE_CHECKING:
    from corq.app import App
    from corq.backends.base import Backend

log = logging.getLogger(__name__)

#: Most jobs claimed in one round trip.
BATCH = 1000
#: An idle fetcher re-checks its queue at least this often, even without a wake signal.
IDLE_BLOCK_S = 2.0
#: A queue whose claims the broker refuses (damaged store) is tried again this often.
REFUSED_RETRY_S = 10.0
#: How long the broker waits before giving back the jobs of plain functions still running
#: when a worker stops (their threads cannot be stopped; the process is about to exit).
DEPART_LINGER_MS = 5_000
#: Every this many reconciliation rounds, list held jobs even when the counts agree.
FULL_RECONCILE_EVERY = 10
#: Longest the final flush of outcomes may wait for an unreachable broker at shutdown.
FLUSH_TIMEOUT_S = 15.0
#: How often a worker tidies the broker: prunes unused queue names, reclaims in queues it
#: does not serve (whose dead workers' registrations nobody else would take back).
MAINTAIN_EVERY_S = 300.0
#: Queues not served by this worker that one round of maintenance reclaims in.
MAINTAIN_QUEUES = 100
#: The count an outcome adds to once recorded.
_COUNTED = {Completion: "succeeded", Failure: "failed", Release: "released"}
_WORKER_ID = re.compile(r"[A-Za-z0-9_.:@/-]{1,100}")


def new_holder(worker_id: WorkerId) -> WorkerId:
    """A holder id for one registration: the worker id and a fresh incarnation."""
    return f"{worker_id}{HOLDER_SEPARATOR}{secrets.token_hex(3)}"


def _check_worker_id(worker_id: object) -> str:
    if not isinstance(worker_id, str) or not _WORKER_ID.fullmatch(worker_id):
        raise ConfigError(
            f"invalid worker id {worker_id!r}: use 1-100 letters, digits or _ . : @ / -"
        )
    return worker_id


def _check_concurrency(concurrency: object) -> int:
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
    return concurrency


def _check_grace(grace_s: object) -> float:
    if not isinstance(grace_s, int | float) or not 0 <= grace_s < float("inf"):
        raise ConfigError(f"grace_s must be a non-negative number of seconds, got {grace_s!r}")
    return float(grace_s)


class Worker:
    """Runs jobs from some queues until stopped (or, in burst mode, until they are empty)."""

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[QueueName] | None = None,
        concurrency: int | None = None,
        burst: bool = False,
        worker_id: str | None = None,
        grace_s: float | None = None,
    ) -> None:
        settings = app.settings
        self.app = app
        named = queues or [settings.default_queue]
        self.queues = list(dict.fromkeys(check_queue_name(q) for q in named))
        self.concurrency = _check_concurrency(
            settings.concurrency if concurrency is None else concurrency
        )
        self.burst = burst
        self.grace_s = _check_grace(settings.grace_s if grace_s is None else grace_s)
        #: Whether the id was given: then a process restarted under it ends its predecessor's
        #: leases at once (ids must be unique among live workers).
        self.fixed_id = worker_id is not None
        self.worker_id = _check_worker_id(
            worker_id or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        )
        self.clock = app.clock
        self.lease = WorkerLease(
            worker_id=self.worker_id,
            queues=tuple(self.queues),
            lease_ms=round(settings.lease_s * 1000),
            holders={q: new_holder(self.worker_id) for q in self.queues},
        )
        #: Set once the worker is registered and fetching.
        self.started = asyncio.Event()
        #: Counts of outcomes written, by kind.
        self.counts = {"succeeded": 0, "failed": 0, "released": 0, "rejected": 0}
        #: Threads still running bodies the worker gave up on when it stopped.
        self.abandoned_threads = 0
        self.registry = Registry()
        self._free = self.concurrency
        #: Suspects claimed and not finished (each needs a sandbox).
        self._suspects_running = 0
        self._slot_freed = asyncio.Event()
        self._activity = asyncio.Event()
        self._outcomes: asyncio.Queue[Pending | None] = asyncio.Queue()
        self._next_due: dict[QueueName, int | None] = {}
        self._due_changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._immediate = False
        self._idle: set[QueueName] = set()
        self._backend: Backend | None = None
        self._heartbeat: Heartbeat | None = None
        self._runner: Runner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._claim_lock = asyncio.Lock()

    @property
    def backend(self) -> Backend:
        assert self._backend is not None, "worker not running"
        return self._backend

    @property
    def runner(self) -> Runner:
        assert self._runner is not None, "worker not running"
        return self._runner

    @property
    def running_count(self) -> int:
        """Jobs whose task has not produced an outcome yet."""
        return len(self.registry.executing())

    def request_stop(self, *, immediate: bool = False) -> None:
        """Begin a graceful shutdown; `immediate` skips the grace period and writes nothing."""
        self._immediate = self._immediate or immediate
        self._stop.set()

    # -- lifecycle -------------------------------------------------------------------
    async def run(self) -> None:
        """Run until stopped; raises if one of the worker's loops failed."""
        settings = self.app.settings
        self._loop = asyncio.get_running_loop()
        self._backend = self.app.new_client().backend
        self._runner = Runner(
            self.app.registry,
            self.app.serializer,
            Outcomes(
                self.clock,
                max_deaths=settings.max_deaths,
                max_result_bytes=settings.max_result_bytes,
            ),
            threads=settings.threads,
            processes=settings.process_pool,
            sandboxes=settings.sandboxes,
            report=self._report_progress,
        )
        try:
            if not await self._until_stopped(self._register()):
                return
            await self._serve()
        finally:
            await self._close()

    async def _serve(self) -> None:
        settings = self.app.settings
        self._heartbeat = Heartbeat(
            self.backend.clone(),
            lambda: self.lease,
            self.clock,
            interval_s=settings.heartbeat_s,
            lag_warn_s=settings.loop_lag_warn_s,
            max_stall_s=settings.max_stall_s,
            on_lost=self._lost_from_thread,
            task_codes={
                t.fn.__code__: n for n, t in self.app.registry.items() if hasattr(t.fn, "__code__")
            },
        )
        self._heartbeat.start()
        loops = [
            asyncio.create_task(self._fetch_loop(q), name=f"corq-fetch-{q}") for q in self.queues
        ]
        loops += [
            asyncio.create_task(c, name=n)
            for n, c in (
                ("corq-promote", self._promote_loop()),
                ("corq-reclaim", self._reclaim_loop()),
                ("corq-reconcile", self._reconcile_loop()),
                ("corq-tick", self._tick_loop()),
            )
        ]
        writer = asyncio.create_task(self._write_loop(), name="corq-write")
        log.info(
            "worker %s started: queues=%s concurrency=%d",
            self.worker_id,
            ",".join(self.queues),
            self.concurrency,
        )
        self.started.set()
        failure = await self._wait_stop([*loops, writer])
        await self._shutdown(loops, writer)
        if failure is not None:
            raise failure

    async def _until_stopped(self, step: Coroutine[Any, Any, None]) -> bool:
        """Run `step` unless a stop is requested first; True when it completed."""
        work = asyncio.ensure_future(step)
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait([work, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            return False
        work.result()
        return True

    async def _register(self) -> None:
        """Join every queue (retrying outages); a worker with a fixed id ends the leases of
        the process it replaces and takes their jobs back at once."""
        backoff = Backoff("register")
        while True:
            try:
                await self.backend.register_worker(self.lease, self.clock.broker_now_ms())
                if self.fixed_id and await self.backend.end_leases(self.lease):
                    log.info("ended the leases of an earlier process with id %s", self.worker_id)
                await self._reclaim_all(ended_only=True)
                backoff.reset()
                return
            except BrokerError as exc:
                await backoff.wait(exc)

    async def _wait_stop(self, loops: list[asyncio.Task[None]]) -> BaseException | None:
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stop, *loops], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        for task in done:
            if task is not stop and not task.cancelled() and task.exception() is not None:
                log.error(
                    "worker loop %s failed; stopping", task.get_name(), exc_info=task.exception()
                )
                return task.exception()
        return None

    async def _shutdown(self, loops: list[asyncio.Task[None]], writer: asyncio.Task[None]) -> None:
        if self._heartbeat is not None:
            self._heartbeat.quiet()  # the ticker stops now: that is no stall
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await self._stop_jobs()
        self._outcomes.put_nowait(None)
        if self._immediate:
            writer.cancel()
        else:
            await asyncio.wait([writer], timeout=FLUSH_TIMEOUT_S)
            if not writer.done():
                writer.cancel()
                log.error(
                    "could not record %d outcome(s) before stopping (broker unreachable); "
                    "their jobs run again elsewhere once this worker's lease expires",
                    self._outcomes.qsize(),
                )
        await asyncio.gather(writer, return_exceptions=True)

    async def _stop_jobs(self) -> None:
        """Give running jobs the grace period, then cancel what still runs (re-queued)."""
        jobs = [r.task for r in self.registry.executing() if r.task is not None]
        if jobs and not self._immediate and self.grace_s > 0:
            log.info("waiting up to %.1fs for %d running job(s)", self.grace_s, len(jobs))
            await asyncio.wait(jobs, timeout=self.grace_s)
        for running in self.registry.executing():
            running.cancel_reason = None if self._immediate else CancelReason.SHUTDOWN
            if running.task is not None:
                running.task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def _close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.tick()
            await asyncio.to_thread(self._heartbeat.stop)
        if self._runner is not None:
            self.abandoned_threads = self._runner.abandoned_threads()
            await self._runner.close()
        if not self._immediate and self._backend is not None:
            try:
                await self.backend.deregister_worker(
                    self.lease, self.clock.broker_now_ms(), DEPART_LINGER_MS
                )
            except (BrokerError, BrokerDataError) as exc:
                log.warning("could not deregister (%s); the lease will expire", exc)
        if self.abandoned_threads:
            log.warning(
                "%d plain function(s) still running on threads that cannot be stopped; their "
                "jobs are given back %.0fs after this worker stops",
                self.abandoned_threads,
                DEPART_LINGER_MS / 1000,
            )
        if self._backend is not None:
            with contextlib.suppress(BrokerError, BrokerDataError):
                await self.backend.close()
        log.info("worker %s stopped", self.worker_id)

    # -- fetching --------------------------------------------------------------------
    async def _fetch_loop(self, queue: QueueName) -> None:
        backoff = Backoff(f"claim {queue}")
        while True:
            await self._wait_for_slot()
            holder = self.lease.holder(queue)
            try:
                async with self._claim_lock:
                    batch = await self._claim(queue, holder)
            except BrokerError as exc:
                await backoff.wait(exc)
                continue
            except BrokerDataError as exc:
                log.error("queue %s: the broker refused the claim: %s", queue, exc)
                await asyncio.sleep(REFUSED_RETRY_S)
                continue
            backoff.reset()
            if batch.lost:
                await self._recover_lost([(queue, holder)])
            elif batch.jobs:
                self._idle.discard(queue)
            else:
                await self._idle_wait(queue, backoff)

    async def _idle_wait(self, queue: QueueName, backoff: Backoff) -> None:
        """Nothing to claim: block on the wake signal (burst: stop, or wait for a job to end)."""
        if self.burst:
            self._idle.add(queue)
            self._stop_if_burst_done()
            self._activity.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._activity.wait(), IDLE_BLOCK_S)
            return
        try:
            await self.backend.wait_for_jobs(queue, IDLE_BLOCK_S)
        except BrokerError as exc:
            await backoff.wait(exc)

    async def _wait_for_slot(self) -> None:
        while self._free <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    async def _claim(self, queue: QueueName, holder: WorkerId) -> ClaimBatch:
        """One claim, started jobs included (under the claim lock)."""
        count = min(self._free, BATCH)
        batch = await self.backend.claim_jobs(
            queue,
            holder,
            count,
            self.lease.lease_ms,
            self.clock.broker_now_ms(),
            suspects=min(count, self._free_sandboxes()),
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

    def _free_sandboxes(self) -> int:
        return max(0, self.app.settings.sandboxes - self._suspects_running)

    def _stop_if_burst_done(self) -> None:
        """In burst mode, stop once every queue was seen empty since the last job ended."""
        if self.burst and not self.registry.executing() and self._idle.issuperset(self.queues):
            log.info("burst: queues empty, stopping")
            self.request_stop()

    def _start(self, job: ClaimedJob, holder: WorkerId) -> None:
        self._free -= 1
        self._suspects_running += job.suspect
        running = Running(job, holder)
        self.registry.add(running)
        running.task = asyncio.create_task(self._execute(running))

    async def _execute(self, running: Running) -> None:
        outcome: Outcome | None = None
        try:
            outcome = await self.runner.run(running)
        finally:
            running.finished = True
            running.task = None  # done: let it be freed now, not when the outcome is written
            self._free += 1
            self._suspects_running -= running.job.suspect
            self._slot_freed.set()
            if self.burst:  # the job may have enqueued more: look again before stopping
                self._idle.clear()
                self._activity.set()
            if outcome is not None:
                self._outcomes.put_nowait((running.holder, outcome))
            elif not (running.unstoppable and running.cancel_reason is CancelReason.SHUTDOWN):
                # (A plain function still running at shutdown stays held: its holder departs.)
                self.registry.remove(running.job.queue, running.job.id, running.job.fence)

    def _settled(self, holder: WorkerId, outcome: Outcome, ok: bool) -> None:
        """The writer is done with an outcome: the job leaves the registry."""
        self.registry.remove(outcome.queue, outcome.job_id, outcome.fence)
        self.counts[_COUNTED[type(outcome)] if ok else "rejected"] += 1

    async def _report_progress(self, job: JobTuple, progress: float) -> bool:
        """Progress is telemetry: a broker blip must never fail the job."""
        job_id, _, queue, attempt, _ = job
        running = self.registry.get(queue, job_id)
        if running is None or running.job.attempt != attempt:
            return False
        try:
            return await self.backend.set_progress(
                job_id, queue, running.holder, running.job.fence, progress
            )
        except (BrokerError, BrokerDataError) as exc:
            log.debug("progress of job %s not recorded: %s", job_id, exc)
            return False

    # -- lost leases -------------------------------------------------------------------
    def _lost_from_thread(self, lost: LostHolders) -> None:
        """Called on the heartbeat thread; hands the news to the worker's loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(
            lambda: self._keep(asyncio.ensure_future(self._recover_lost(lost)))
        )

    def _keep(self, task: asyncio.Future[None]) -> None:
        """Hold a reference to a fire-and-forget task until it is done."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recover_lost(self, lost: LostHolders) -> None:
        """Our lease in these queues expired and their jobs were taken back: stop running the
        jobs claimed under the lost incarnations, and join again under new ones."""
        current = [(q, h) for q, h in lost if self.lease.holder(q) == h]
        if not current:
            return  # already joined again since
        holders = dict(self.lease.holders)
        for queue, holder in current:
            holders[queue] = new_holder(self.worker_id)
            for running in self.registry.executing():
                if running.job.queue == queue and running.holder == holder:
                    self._cancel_lost(running)
        self.lease = replace(self.lease, holders=holders)
        names = ", ".join(q for q, _ in current)
        log.warning("re-registering in queue(s) %s after losing the lease", names)
        backoff = Backoff(f"re-register in {names}")
        while True:
            try:
                await self.backend.register_worker(self.lease, self.clock.broker_now_ms())
                backoff.reset()
                return
            except BrokerError as exc:
                await backoff.wait(exc)

    @staticmethod
    def _cancel_lost(running: Running) -> None:
        running.cancel_reason = CancelReason.LOST
        if running.task is not None:
            running.task.cancel()

    # -- delayed jobs ----------------------------------------------------------------
    def _note_due(self, queue: QueueName, due_ms: int | None) -> None:
        if self._next_due.get(queue) != due_ms:
            self._next_due[queue] = due_ms
            self._due_changed.set()

    async def _promote_loop(self) -> None:
        backoff = Backoff("promote")
        while True:
            self._due_changed.clear()
            dues = [d for d in self._next_due.values() if d is not None]
            if not dues:
                await self._due_changed.wait()
                continue
            delay_s = (min(dues) - self.clock.now_ms()) / 1000
            if delay_s > 0:
                await self._sleep_or_change(delay_s)
                continue
            try:
                await self._promote_due()
                backoff.reset()
            except BrokerError as exc:
                await backoff.wait(exc)

    async def _promote_due(self) -> None:
        now = self.clock.now_ms()
        behind = False
        for queue, due in list(self._next_due.items()):
            if due is not None and due <= now:
                self._next_due[queue] = nxt = await self.backend.promote_due_jobs(
                    queue, self.clock.broker_now_ms()
                )
                behind = behind or (nxt is not None and nxt <= due)
        if behind:
            # The broker's clock is a little behind ours: nothing was due for it yet.
            await asyncio.sleep(0.01)

    async def _sleep_or_change(self, delay_s: float) -> None:
        sleep = asyncio.ensure_future(self.clock.sleep(delay_s))
        changed = asyncio.ensure_future(self._due_changed.wait())
        try:
            await asyncio.wait([sleep, changed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            changed.cancel()

    # -- writing outcomes ------------------------------------------------------------
    async def _write_loop(self) -> None:
        writer = OutcomeWriter(self.backend, self.app.settings.result_ttl_s, self._settled)
        await writer.run(self._outcomes)

    # -- recovery of dead workers, reconciliation ------------------------------------
    async def _reclaim_loop(self) -> None:
        settings = self.app.settings
        # After an outage longer than a lease every lease has passed, though the workers
        # live: reclaim only once we have been in touch for a whole lease, by which time
        # every live worker has renewed its own. This holds from start-up too: a worker
        # that starts right after an outage must not take live workers' jobs.
        in_touch_since: int | None = self.clock.now_ms()
        next_maintenance = self.clock.now_ms() + round(
            random.uniform(0.5, 1.0) * MAINTAIN_EVERY_S * 1000
        )
        while True:
            await self.clock.sleep(settings.reclaim_s)
            try:
                # Renew our own lease first, so a fast-forwarded clock never makes us
                # reclaim our own jobs.
                lease = self.lease
                lost = await self.backend.heartbeat(lease, self.clock.broker_now_ms())
                if lost:
                    await self._recover_lost([(q, lease.holder(q)) for q in lost])
                in_touch_since = in_touch_since or self.clock.now_ms()
                whole_lease = self.clock.now_ms() - in_touch_since >= self.lease.lease_ms
                await self._reclaim_all(ended_only=not whole_lease)
                if whole_lease and self.clock.now_ms() >= next_maintenance:
                    next_maintenance = self.clock.now_ms() + round(MAINTAIN_EVERY_S * 1000)
                    await self._maintain()
            except BrokerError as exc:
                reraise_if_cancelling()
                in_touch_since = None
                log.warning("reclaim skipped: %s", exc)
            except BrokerDataError as exc:
                log.error("reclaim refused by the broker: %s", exc)

    async def _reclaim_all(self, *, ended_only: bool) -> None:
        for queue in self.queues:
            reclaimed = await self.backend.reclaim_stalled_jobs(
                queue,
                self.clock.broker_now_ms(),
                self.app.settings.max_deaths,
                ended_only=ended_only,
            )
            for r in reclaimed:
                if r.released:
                    how = "given back from stopped worker"
                else:
                    how = "taken back from dead worker"
                log.warning(
                    "job %s %s %s%s",
                    r.job_id,
                    how,
                    r.worker_id,
                    " and sent to the dead letters (poison)" if r.dead else "",
                )

    async def _maintain(self) -> None:
        """Keep the broker from growing without bound: forget queue names that hold nothing
        and were unused for longer than results live, and take back the jobs of dead workers
        in a few queues nobody here serves (a queue nobody serves any more has no one else
        to do it)."""
        settings = self.app.settings
        idle_ms = round((settings.result_ttl_s + 3600) * 1000)
        pruned = await self.backend.prune_queues(self.clock.broker_now_ms(), idle_ms)
        if pruned:
            log.info("forgot %d unused queue name(s)", len(pruned))
        others = [q for q in await self.backend.list_queues() if q not in self.lease.holders]
        for queue in random.sample(others, min(len(others), MAINTAIN_QUEUES)):
            await self.backend.reclaim_stalled_jobs(
                queue, self.clock.broker_now_ms(), settings.max_deaths
            )

    async def _reconcile_loop(self) -> None:
        rounds = 0
        while True:
            await self.clock.sleep(self.app.settings.reconcile_s)
            rounds += 1
            try:
                async with self._claim_lock:
                    findings = await reconcile(
                        self.backend,
                        self.registry,
                        self.lease,
                        full=rounds % FULL_RECONCILE_EVERY == 0,
                    )
            except (BrokerError, BrokerDataError) as exc:
                reraise_if_cancelling()
                log.warning("reconciliation skipped: %s", exc)
                continue
            for running in findings.taken:
                log.warning("job %s is no longer held by this worker: stopping it", running.job.id)
                self._cancel_lost(running)

    async def _tick_loop(self) -> None:
        while True:
            if self._heartbeat is not None:
                self._heartbeat.tick()
            await asyncio.sleep(0.02)
