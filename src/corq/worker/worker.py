"""The worker: a set of small loops around one event loop.

- one fetcher per queue claims as many jobs as there are free slots (one round trip for a
  batch) and, when the queue is empty, blocks on the broker's wake signal (no sleep-polling);
- a promoter sleeps until the next delayed job is due and moves due jobs to the ready queue;
- a writer records outcomes in batches (one round trip for many jobs);
- a reclaimer takes back the jobs of dead workers;
- a ticker lets the heartbeat thread see the loop is alive.
If any of these loops dies, the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from corq.aio import Backoff, reraise_if_cancelling
from corq.backends.base import (
    ClaimBatch,
    ClaimedJob,
    WorkerLease,
)
from corq.errors import BrokerError
from corq.task import check_queue_name
from corq.types import QueueName
from corq.worker.heartbeat import Heartbeat
from corq.worker.runner import Outcome, Runner, Running
from corq.worker.writer import OutcomeWriter

if TYPE_CHECKING:
    from corq.app import App
    from corq.backends.base import Backend

log = logging.getLogger(__name__)

#: Most jobs claimed, or outcomes written, in one round trip.
BATCH = 1000
#: An idle fetcher re-checks its queue at least this often, even without a wake signal.
IDLE_BLOCK_S = 2.0


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
        self.queues = [check_queue_name(q) for q in (queues or [settings.default_queue])]
        self.concurrency = concurrency or settings.concurrency
        self.burst = burst
        self.grace_s = settings.grace_s if grace_s is None else grace_s
        self.worker_id = worker_id or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.clock = app.clock
        self.lease = WorkerLease(
            worker_id=self.worker_id,
            queues=tuple(self.queues),
            lease_ms=round(settings.lease_s * 1000),
        )
        #: Set once the worker is registered and fetching.
        self.started = asyncio.Event()
        #: Counts of outcomes written, by kind.
        self.counts = {"succeeded": 0, "failed": 0, "released": 0, "rejected": 0}
        self._running: dict[str, Running] = {}
        self._free = self.concurrency
        self._slot_freed = asyncio.Event()
        self._outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
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
        #: The suspect job running alone, if any: nothing else is claimed meanwhile.
        self._isolated: Running | None = None
        #: Queues where suspects wait for an idle worker.
        self._suspect_queues: set[QueueName] = set()

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
        return len(self._running)

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
            self.clock,
            threads=settings.threads,
            processes=settings.process_pool,
            report=self._report_progress,
        )
        await self._register()
        self._heartbeat = Heartbeat(
            self.backend.clone(),
            self.lease,
            self.clock,
            interval_s=settings.heartbeat_s,
            lag_warn_s=settings.loop_lag_warn_s,
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

    async def _register(self) -> None:
        backoff = Backoff("register")
        while True:
            try:
                await self.backend.register_worker(self.lease, self.clock.now_ms())
                await self._reclaim_all()
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
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        jobs = [r.task for r in self._running.values() if r.task is not None]
        if jobs and not self._immediate and self.grace_s > 0:
            log.info("waiting up to %.1fs for %d running job(s)", self.grace_s, len(jobs))
            await asyncio.wait(jobs, timeout=self.grace_s)
        for running in list(self._running.values()):
            running.cancel_reason = None if self._immediate else "shutdown"
            if running.task is not None:
                running.task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        self._outcomes.put_nowait(None)
        if self._immediate:
            writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await self._close()

    async def _close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.tick()
            await asyncio.to_thread(self._heartbeat.stop)
        if not self._immediate:
            try:
                await self.backend.deregister_worker(self.lease)
            except BrokerError as exc:
                log.warning("could not deregister (%s); the lease will expire", exc)
        self.runner.close()
        await self.backend.close()
        log.info("worker %s stopped", self.worker_id)

    # -- fetching --------------------------------------------------------------------
    async def _fetch_loop(self, queue: QueueName) -> None:
        backoff = Backoff(f"claim {queue}")
        while True:
            await self._wait_until_may_claim()
            try:
                async with self._claim_lock:
                    batch = await self._claim(queue)
            except BrokerError as exc:
                await backoff.wait(exc)
                continue
            backoff.reset()
            if batch.lost:
                await self._recover_lost([queue])
                continue
            if batch.jobs:
                self._idle.discard(queue)
                continue
            if self.burst:
                self._check_burst_done(queue)
            try:
                await self.backend.wait_for_jobs(queue, IDLE_BLOCK_S)
            except BrokerError as exc:
                await backoff.wait(exc)

    async def _wait_until_may_claim(self) -> None:
        """Wait for a free slot; while a suspect runs, claim nothing; while suspects wait
        somewhere, let running jobs drain so the next claim can take one alone."""
        while (
            self._free <= 0
            or self._isolated is not None
            or (self._suspect_queues and self._running)
        ):
            self._slot_freed.clear()
            if self._suspect_queues and self._isolated is None and self._free > 0:
                # Re-check now and then: another worker may have taken the suspects.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), IDLE_BLOCK_S)
                return
            await self._slot_freed.wait()

    async def _claim(self, queue: QueueName) -> ClaimBatch:
        """One claim, started jobs included (under the claim lock, so `idle` stays true)."""
        draining = bool(self._suspect_queues and self._running)
        batch = await self.backend.claim_jobs(
            queue,
            self.worker_id,
            0 if draining else min(self._free, BATCH),
            self.lease.lease_ms,
            self.clock.now_ms(),
            idle=not self._running,
        )
        if batch.lost:
            return batch
        self._note_due(queue, batch.next_due_ms)
        if batch.suspects:
            self._suspect_queues.add(queue)
        else:
            self._suspect_queues.discard(queue)
        for job in batch.jobs:
            running = self._start(job)
            if batch.isolated:
                log.warning(
                    "job %s (%s) died with %d worker(s) already: running it alone",
                    job.id,
                    job.task,
                    job.deaths,
                )
                running.isolated = True
                self._isolated = running
        return batch

    def _check_burst_done(self, queue: QueueName) -> None:
        self._idle.add(queue)
        self._stop_if_burst_done()

    def _stop_if_burst_done(self) -> None:
        """In burst mode, stop once every queue was seen empty and nothing runs."""
        if self.burst and not self._running and self._idle.issuperset(self.queues):
            log.info("burst: queues empty, stopping")
            self.request_stop()

    def _start(self, job: ClaimedJob) -> Running:
        self._free -= 1
        running = Running(job)
        self._running[job.id] = running
        running.task = asyncio.create_task(self._execute(running))
        return running

    async def _execute(self, running: Running) -> None:
        try:
            outcome = await self.runner.run(running)
        finally:
            self._running.pop(running.job.id, None)
            if self._isolated is running:
                self._isolated = None
            self._free += 1
            self._slot_freed.set()
            self._stop_if_burst_done()
        if outcome is not None:
            self._outcomes.put_nowait(outcome)

    async def _report_progress(self, job: ClaimedJob, progress: float) -> bool:
        return await self.backend.set_progress(
            job.id, job.queue, self.worker_id, job.fence, progress
        )

    def _lost_from_thread(self, queues: list[QueueName]) -> None:
        """Called on the heartbeat thread; hands the news to the worker's loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(
            lambda: self._keep(asyncio.ensure_future(self._recover_lost(queues)))
        )

    def _keep(self, task: asyncio.Future[None]) -> None:
        """Hold a reference to a fire-and-forget task until it is done."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recover_lost(self, queues: list[QueueName]) -> None:
        """Our lease expired and our jobs were taken back: stop running them, register again."""
        for running in list(self._running.values()):
            if running.job.queue in queues and running.task is not None:
                running.cancel_reason = "lost"
                running.task.cancel()
        log.warning("re-registering in queue(s) %s after losing the lease", ", ".join(queues))
        await self.backend.register_worker(self.lease, self.clock.now_ms())

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
            now = self.clock.now_ms()
            try:
                for queue, due in list(self._next_due.items()):
                    if due is not None and due <= now:
                        self._next_due[queue] = await self.backend.promote_due_jobs(queue, now)
                backoff.reset()
            except BrokerError as exc:
                await backoff.wait(exc)

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
        await OutcomeWriter(
            self.backend,
            self.worker_id,
            self.app.settings.result_ttl_s,
            self.counts,
        ).run(self._outcomes)

    # -- recovery of dead workers ----------------------------------------------------
    async def _reclaim_loop(self) -> None:
        settings = self.app.settings
        # After an outage longer than a lease every lease has passed, though the workers
        # live: reclaim only once we have been in touch for a whole lease, by which time
        # every live worker has renewed its own.
        in_touch_since: int | None = self.clock.now_ms()
        while True:
            await self.clock.sleep(settings.reclaim_s)
            try:
                # Renew our own lease first, so a fast-forwarded clock never makes us
                # reclaim our own jobs.
                lost = await self.backend.heartbeat(self.lease, self.clock.now_ms())
                if lost:
                    await self._recover_lost(lost)
                in_touch_since = in_touch_since or self.clock.now_ms()
                if self.clock.now_ms() - in_touch_since >= self.lease.lease_ms:
                    await self._reclaim_all()
            except BrokerError as exc:
                reraise_if_cancelling()
                in_touch_since = None
                log.warning("reclaim skipped: %s", exc)

    async def _reclaim_all(self) -> None:
        for queue in self.queues:
            reclaimed = await self.backend.reclaim_stalled_jobs(
                queue, self.clock.now_ms(), self.app.settings.max_deaths
            )
            for r in reclaimed:
                log.warning(
                    "job %s taken back from dead worker %s%s",
                    r.job_id,
                    r.worker_id,
                    " and sent to the dead letters (poison)" if r.dead else "",
                )

    async def _tick_loop(self) -> None:
        while True:
            if self._heartbeat is not None:
                self._heartbeat.tick()
            await asyncio.sleep(0.02)
