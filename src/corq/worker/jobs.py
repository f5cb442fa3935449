"""The jobs a worker runs, from claim to recorded outcome.

`Jobs.start` enters a claimed job in the registry, takes its slot and runs it on a task of
its own; its outcome goes to the writer, and once the broker has it (or refused it) the job
leaves the registry and the observers hear what happened. At shutdown `stop` gives running
jobs the grace period, then cancels what still runs (released to the head of its queue).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

from corq.backends.base import Backend, ClaimedJob, Completion, Failure
from corq.context import JobTuple
from corq.errors import BrokerDataError, BrokerError
from corq.types import WorkerId
from corq.worker.batches import Batches, call_batch
from corq.worker.fetch import Admission
from corq.worker.gates import Gates
from corq.worker.inputs import ParentReader
from corq.worker.observer import Observers
from corq.worker.outcomes import Outcome, Outcomes
from corq.worker.registry import CancelReason, Registry, Running
from corq.worker.runner import Runner
from corq.worker.settling import Settler
from corq.worker.writer import OutcomeWriter, Pending

if TYPE_CHECKING:
    from corq.app import App

log = logging.getLogger(__name__)


class Jobs:
    """Starts claimed jobs, hands their outcomes to the writer, settles them."""

    def __init__(
        self,
        app: App,
        backend: Backend,
        registry: Registry,
        admission: Admission,
        observers: Observers,
        settler: Settler,
        gates: Gates | None = None,
    ) -> None:
        settings = app.settings
        self.backend = backend
        self.registry = registry
        self.admission = admission
        self.observers = observers
        self.settler = settler
        self.result_ttl_s = settings.result_ttl_s
        self.cancel_grace_s = settings.cancel_grace_s
        #: Outcomes waiting for the writer (None: no more, stop writing).
        self.outcomes: asyncio.Queue[Pending | None] = asyncio.Queue()
        self.runner = Runner(
            app.registry,
            app.serializer,
            Outcomes(
                app.clock,
                max_deaths=settings.max_deaths,
                max_result_bytes=settings.max_result_bytes,
            ),
            threads=settings.threads,
            processes=settings.process_pool,
            sandboxes=settings.sandboxes,
            report=self._report_progress,
            parents=ParentReader(backend, app.serializer, settings.max_payload_bytes),
            gates=gates,
        )
        self.batches = Batches(app.registry, self._run_batch)

    def start(self, job: ClaimedJob, holder: WorkerId) -> None:
        """Run a job just claimed under `holder` (a batched task's: into its batch)."""
        self.admission.claimed(job)
        self.admission.pending(+1)  # until its outcome is recorded (see _settled)
        running = Running(job, holder)
        self.registry.add(running)
        self.observers.started(job)
        if self.batches.batched(running):
            running.withdraw = self._withdraw
            self.batches.add(running)
        else:
            task = running.task = asyncio.create_task(self._execute(running))
            task.add_done_callback(functools.partial(self._never_ran, running))
        if self.admission.claimable <= 0:
            self.batches.flush_all()  # no slot left to claim more: waiting only delays them

    def _never_ran(self, running: Running, _: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never entered _execute (whose finally
        settles the job): settle it here, or it would stay in the registry for ever."""
        if not running.finished:
            self._finish(running, self.runner.cancelled(running))

    async def _execute(self, running: Running) -> None:
        outcome: Outcome | None = None
        try:
            outcome = await self.runner.run(running)
        finally:
            self._finish(running, outcome)

    def _run_batch(self, batch: list[Running]) -> None:
        """Call a full batch on a task of its own (each of its jobs names that task)."""
        task = asyncio.create_task(self._execute_batch(batch))
        for running in batch:
            running.withdraw = None
            running.task = task

    def _withdraw(self, running: Running) -> None:
        """A buffered job was cancelled: it leaves its batch at once and its slot is free
        again; given back unstarted at shutdown, else (its claim lost) nothing is written."""
        if self.batches.remove(running):
            running.withdraw = None
            shutdown = running.cancel_reason is CancelReason.SHUTDOWN
            self._finish(
                running, Outcomes.released(running.job, unstarted=True) if shutdown else None
            )

    async def _execute_batch(self, batch: list[Running]) -> None:
        outcomes: list[Outcome | None] = [None] * len(batch)
        try:
            outcomes = await call_batch(self.runner, batch)
        finally:
            for running, outcome in zip(batch, outcomes, strict=True):
                self._finish(running, outcome)

    def cancel(self, job_id: str, queue: str | None) -> bool:
        """Stop a job an operator cancelled (the broker ended it already); False when this
        worker does not run it."""
        running = self.registry.find(job_id, queue)
        if running is None:
            return False
        log.info("job %s was cancelled: stopping it", job_id)
        task = running.task
        if task is not None and any(
            r is not running and r.task is task for r in self.registry.executing()
        ):
            # One call runs its whole batch: the others go on, this one's outcome is dropped.
            running.cancel_reason = CancelReason.OPERATOR
            running.cancel_flag.raised = True
            return True
        self.registry.cancel(running, CancelReason.OPERATOR, self.cancel_grace_s)
        return True

    def _finish(self, running: Running, outcome: Outcome | None) -> None:
        """Its task ended: free the slot, hand the outcome to the writer (None: nothing to
        write, the job leaves the registry)."""
        self.registry.finished(running)
        self.admission.finished(running.job)
        cancelled = running.cancel_reason is CancelReason.OPERATOR
        if outcome is not None and not cancelled:  # a cancelled job's outcome is refused
            self.outcomes.put_nowait((running.holder, outcome))
            return
        if cancelled:
            self.observers.cancelled(running.job)
        else:
            self.observers.lost(running.job)
        if not (running.unstoppable and running.cancel_reason is CancelReason.SHUTDOWN):
            # (A plain function still running at shutdown stays held: its holder departs.)
            job = running.job
            if self.registry.remove(job.queue, job.id, job.fence) is not None:
                self.admission.pending(-1)

    async def write(self) -> None:
        """Record outcomes until `flush` (the writer loop)."""
        writer = OutcomeWriter(self.backend, self.result_ttl_s, self._settled)
        await writer.run(self.outcomes)

    def _settled(self, holder: WorkerId, outcome: Outcome, recorded: bool) -> None:
        """The writer is done with an outcome: the job leaves the registry."""
        running = self.registry.remove(outcome.queue, outcome.job_id, outcome.fence)
        if running is None:
            return
        if recorded and _ends_for_a_workflow(running.job, outcome):
            self.settler.note(outcome.queue)  # pending until settled, taken over here
        self.admission.pending(-1)
        if recorded:
            self.observers.recorded(running.job, outcome)
        else:
            self.observers.lost(running.job)

    async def stop(self, grace_s: float, *, immediate: bool) -> None:
        """Give running jobs `grace_s`, then cancel what still runs: released at shutdown,
        given up without a word when `immediate`."""
        self._release_buffered(immediate=immediate)
        jobs = list({r.task for r in self.registry.executing() if r.task is not None})
        if jobs and not immediate and grace_s > 0:
            log.info("waiting up to %.1fs for %d running job(s)", grace_s, len(jobs))
            await asyncio.wait(jobs, timeout=grace_s)
        reason = CancelReason.LOST if immediate else CancelReason.SHUTDOWN
        for running in self.registry.executing():
            self.registry.cancel(running, reason)
        await asyncio.gather(*jobs, return_exceptions=True)

    def _release_buffered(self, *, immediate: bool) -> None:
        """Jobs still waiting in a batch go back unstarted (nothing written when
        `immediate`: the broker gives them back once the lease ends)."""
        for running in self.batches.drain():
            release = None if immediate else Outcomes.released(running.job, unstarted=True)
            self._finish(running, release)

    async def _report_progress(self, job: JobTuple, progress: float) -> bool:
        """Progress is telemetry: a broker blip must never fail the job."""
        job_id, _, queue, attempt = job[:4]
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

    async def close(self) -> int:
        """Stop the thread and process slots; how many threads still run abandoned bodies."""
        abandoned = self.runner.abandoned_threads()
        await self.runner.close()
        return abandoned


def _ends_for_a_workflow(job: ClaimedJob, outcome: Outcome) -> bool:
    """True when recording `outcome` ended a job some workflow waits on: its end is in the
    outbox, to settle (a retried failure or a release ends nothing)."""
    if job.workflow is None and not job.notify:
        return False
    return isinstance(outcome, Completion) or (
        isinstance(outcome, Failure) and outcome.retry_at_ms is None
    )
