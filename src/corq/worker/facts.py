"""What a worker tells the cluster about itself: its `WorkerInfo`, once per heartbeat.

`Facts` is an observer (a job's start and end only touch memory: the start time, a
duration sample) and a loop that publishes the whole picture every `heartbeat_s` from the
event loop: one broker write per heartbeat whatever the number of jobs. A timer on the
same loop measures how late the loop runs it (the lag). At a clean shutdown the worker
says it is stopping, then forgets its facts; a killed worker's are shown as lost by
readers, then removed when their ttl passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import psutil

from corq.aio import OutageLog
from corq.backends.base import ClaimedJob, Completion, Failure, Release, WorkerFacts
from corq.errors import BrokerDataError, BrokerError
from corq.types import Clock, JobId, QueueName, TaskName
from corq.worker.observer import JobCounts, WorkerObserver
from corq.worker.registry import Registry, Running
from corq.worker_info import (
    MAX_RUNNING_LISTED,
    RunningJob,
    TaskDurations,
    WorkerInfo,
    WorkerState,
)

if TYPE_CHECKING:
    from corq.task import Task

log = logging.getLogger(__name__)

#: A worker's facts are removed this many leases after its last heartbeat: a lost worker is
#: shown as lost for the leases between (about 50 s by default), then disappears.
TTL_LEASES = 6
#: How often the lag timer fires; its lateness is the loop's lag.
LAG_PROBE_S = 0.1
#: Run times kept per task (the latest), and tasks measured at most (~70 bytes each in the
#: published facts; a task beyond them is judged stuck by its timeout alone).
SAMPLES_PER_TASK = 256
MAX_TASKS = 200


def _corq_version() -> str:
    try:
        return metadata.version("corq")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


VERSION = _corq_version()


class Durations:
    """Per task, how many runs were measured and the latest SAMPLES_PER_TASK of them."""

    def __init__(self) -> None:
        self._samples: dict[TaskName, deque[float]] = {}
        self._counts: dict[TaskName, int] = {}

    def add(self, task: TaskName, ms: float) -> None:
        samples = self._samples.get(task)
        if samples is None:
            if len(self._samples) >= MAX_TASKS:
                return
            samples = self._samples[task] = deque(maxlen=SAMPLES_PER_TASK)
        samples.append(ms)
        self._counts[task] = self._counts.get(task, 0) + 1

    def summary(self) -> dict[TaskName, TaskDurations]:
        return {
            task: _summarise(self._counts[task], sorted(samples))
            for task, samples in self._samples.items()
        }


def _summarise(count: int, ordered: list[float]) -> TaskDurations:
    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return TaskDurations(count=count, p50_ms=rank(0.5), p95_ms=rank(0.95))


class Facts(WorkerObserver):
    """One worker's facts, kept up to date by its jobs and published by `run`."""

    def __init__(
        self,
        *,
        worker_id: str,
        weights: Mapping[QueueName, int],
        concurrency: int,
        registry: Registry,
        counts: JobCounts,
        tasks: Mapping[TaskName, Task[Any, Any]],
        clock: Clock,
    ) -> None:
        self.worker_id = worker_id
        self.weights = dict(weights)
        self.concurrency = concurrency
        self.registry = registry
        self.counts = counts
        self.tasks = tasks
        self.clock = clock
        self.state = WorkerState.ALIVE
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at_ms = clock.now_ms()
        self.durations = Durations()
        #: When each job this worker runs was started (by this worker's clock).
        self._starts: dict[tuple[QueueName, JobId], int] = {}
        self._lag_s = 0.0
        #: Queue -> [succeeded, failed attempts] recorded here.
        self._by_queue: dict[QueueName, list[int]] = {q: [0, 0] for q in self.weights}
        self._wake = asyncio.Event()
        self._process = psutil.Process()
        self._process.cpu_percent()  # the first call only starts the measurement
        self._outage = OutageLog("publishing this worker's facts", log)

    # -- observer hooks (per job: memory only) ----------------------------------------
    def job_started(self, job: ClaimedJob) -> None:
        self._starts[(job.queue, job.id)] = self.clock.now_ms()

    def job_succeeded(self, job: ClaimedJob, completion: Completion) -> None:
        self._ended(job, completion.finished_at_ms, 0)

    def job_retried(self, job: ClaimedJob, failure: Failure) -> None:
        if failure.snoozed:  # it waited, it did not run
            self._starts.pop((job.queue, job.id), None)
        else:
            self._ended(job, failure.finished_at_ms, 1)

    def job_dead(self, job: ClaimedJob, failure: Failure) -> None:
        self._ended(job, failure.finished_at_ms, 1)

    def job_released(self, job: ClaimedJob, release: Release) -> None:
        self._starts.pop((job.queue, job.id), None)

    def job_lost(self, job: ClaimedJob) -> None:
        self._starts.pop((job.queue, job.id), None)

    def job_cancelled(self, job: ClaimedJob) -> None:
        self._starts.pop((job.queue, job.id), None)

    def _ended(self, job: ClaimedJob, finished_at_ms: int, failed: int) -> None:
        """`failed` 1 for a failed attempt, 0 for a success."""
        counts = self._by_queue.get(job.queue)
        if counts is not None:
            counts[failed] += 1
        started = self._starts.pop((job.queue, job.id), None)
        if started is not None:
            self.durations.add(job.task, max(0, finished_at_ms - started))

    # -- the picture ------------------------------------------------------------------
    def snapshot(self) -> WorkerInfo:
        """The facts as of now (the lag and CPU since the last snapshot)."""
        now = self.clock.now_ms()
        lag_ms, self._lag_s = self._lag_s * 1000, 0.0
        self._forget_stale_starts()
        listed, in_flight = self._oldest_running()
        with self._process.oneshot():
            cpu, rss = self._process.cpu_percent(), self._process.memory_info().rss
        return WorkerInfo(
            worker_id=self.worker_id,
            host=self.host,
            pid=self.pid,
            version=VERSION,
            queues=self.weights,
            concurrency=self.concurrency,
            started_at_ms=self.started_at_ms,
            heartbeat_at_ms=now,
            running=tuple(self._running(r, now) for r in listed),
            in_flight=in_flight,
            cpu_percent=cpu,
            rss_bytes=rss,
            loop_lag_ms=round(lag_ms, 3),
            state=self.state,
            counts=self._counts(),
            queue_counts={
                q: {"succeeded": ok, "failed": failed} for q, (ok, failed) in self._by_queue.items()
            },
            durations=self.durations.summary(),
        )

    def _forget_stale_starts(self) -> None:
        """Every way a job leaves is a hook that drops its start; should one be missed
        (a hook added later), the starts never outgrow the registry by much."""
        if len(self._starts) > 2 * len(self.registry) + 100:
            held = {r.key for r in self.registry}
            self._starts = {k: v for k, v in self._starts.items() if k in held}

    def _oldest_running(self) -> tuple[list[Running], int]:
        """The first MAX_RUNNING_LISTED executing jobs (the registry keeps claim order, so
        the longest running), and how many jobs the worker holds (claimed, outcome not yet
        recorded: what the broker counts in flight). No pass over 100,000 jobs."""
        listed: list[Running] = []
        for running in self.registry:
            if running.executing:
                listed.append(running)
                if len(listed) == MAX_RUNNING_LISTED:
                    break
        return listed, len(self.registry)

    def _running(self, running: Running, now_ms: int) -> RunningJob:
        job = running.job
        task = self.tasks.get(job.task)
        timeout_s = None if task is None else task.options.timeout_s
        return RunningJob(
            job_id=job.id,
            queue=job.queue,
            task=job.task,
            started_at_ms=self._starts.get((job.queue, job.id), now_ms),
            attempt=job.attempt,
            timeout_ms=None if timeout_s is None else round(timeout_s * 1000),
            executor=_executor(job, task),
        )

    def _counts(self) -> dict[str, int]:
        c = self.counts
        return {
            "started": c.started,
            "succeeded": c.succeeded,
            "retried": c.retried,
            "dead": c.dead,
            "released": c.released,
            "lost": c.lost,
            "cancelled": c.cancelled,
        }

    # -- publishing -------------------------------------------------------------------
    def stopping(self) -> None:
        """The worker began to stop: say so at once (and at every heartbeat while it drains)."""
        self.state = WorkerState.STOPPING
        self._wake.set()

    async def run(self, backend: WorkerFacts, *, interval_s: float, lease_ms: int) -> None:
        """Publish now, then every `interval_s` (and at once when stopping), until cancelled."""
        self.started_at_ms = self.clock.now_ms()  # serving from now on
        probe = asyncio.create_task(self._probe_lag(), name="corq-lag-probe")
        try:
            while True:
                await self.publish(backend, ttl_ms=TTL_LEASES * lease_ms)
                await self._pause(interval_s)
        finally:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe

    async def publish(self, backend: WorkerFacts, *, ttl_ms: int) -> None:
        """One write; an outage is logged once and the next heartbeat tries again."""
        try:
            await backend.publish_worker_info(self.snapshot(), ttl_ms)
        except (BrokerError, BrokerDataError) as exc:
            self._outage.failed(exc)
        else:
            self._outage.ok()

    async def forget(self, backend: WorkerFacts) -> None:
        """A clean shutdown: the worker leaves the registry now, not a ttl later."""
        try:
            await backend.forget_worker_info(self.worker_id)
        except (BrokerError, BrokerDataError) as exc:
            log.warning("could not remove this worker's facts (%s); they expire", exc)

    async def _pause(self, interval_s: float) -> None:
        wake = asyncio.ensure_future(self._wake.wait())
        sleep = asyncio.ensure_future(self.clock.sleep(interval_s))
        try:
            await asyncio.wait([wake, sleep], return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            sleep.cancel()
        self._wake.clear()

    async def _probe_lag(self) -> None:
        """How late a timer fires is how long the loop was busy with something else."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            self._lag_s = max(self._lag_s, loop.time() - due)


def _executor(job: ClaimedJob, task: Task[Any, Any] | None) -> str:
    """Where the job's body runs: async (the loop), thread, or process (a child)."""
    if task is None:
        return "async"
    if job.suspect or task.options.process:
        return "process"
    return "async" if task.is_async else "thread"
