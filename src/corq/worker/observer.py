"""Observers: what a worker tells the outside about the jobs it runs.

A `WorkerObserver` has one no-op hook per thing that happens to a job; subclass it and
override the hooks you need (metrics, lifecycle events and dashboards plug in here). Hooks
are called on the worker's event loop, synchronously: keep them quick, and hand any I/O to a
task or queue of your own. A hook that raises is logged once (per observer and hook) and
ignored: an observer never breaks the worker.

When each hook runs:

- `job_started`: the worker claimed the job and is about to run it (its body may still
  wait for a thread or a child process);
- `job_succeeded`, `job_retried`, `job_dead`, `job_released`, `job_snoozed`: the broker
  recorded that outcome of the attempt (a snooze: the job waits again, no attempt used);
- `job_cancelled`: an operator cancelled the job while this worker ran it (the broker
  ended it already; the worker stopped it and wrote nothing);
- `job_lost`: the attempt ended and nothing was recorded: the claim was gone (lease lost,
  the broker refused the outcome), the worker stopped at once, or a plain function was
  still running on its thread at shutdown (its job comes back when this worker departs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from corq.backends.base import ClaimedJob, Completion, Failure, Release

log = logging.getLogger(__name__)


class WorkerObserver:
    """No-op hooks for what happens to a worker's jobs; override what you need."""

    def job_started(self, job: ClaimedJob) -> None:
        """The job was claimed and is handed to be run."""

    def job_succeeded(self, job: ClaimedJob, completion: Completion) -> None:
        """Its result was recorded."""

    def job_retried(self, job: ClaimedJob, failure: Failure) -> None:
        """A failed attempt was recorded; the job runs again at ``failure.retry_at_ms``."""

    def job_dead(self, job: ClaimedJob, failure: Failure) -> None:
        """The job went to the dead letters (no retries left, or it cannot run)."""

    def job_released(self, job: ClaimedJob, release: Release) -> None:
        """The job went back to its queue (shutdown, or its process crashed)."""

    def job_snoozed(self, job: ClaimedJob, failure: Failure) -> None:
        """The job waits until ``failure.retry_at_ms`` without using an attempt
        (``corq.Snooze``, a struck task, an open circuit); ``failure.error`` says why."""

    def job_lost(self, job: ClaimedJob) -> None:
        """The attempt ended with nothing recorded (see the module docstring)."""

    def job_cancelled(self, job: ClaimedJob) -> None:
        """An operator cancelled the job while it ran here; the worker stopped it."""


@dataclass
class JobCounts(WorkerObserver):
    """Counts what happened to a worker's jobs (`Worker.counts`)."""

    started: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    lost: int = 0
    snoozed: int = 0
    cancelled: int = 0

    @property
    def failed(self) -> int:
        """Failed attempts recorded, retried or dead."""
        return self.retried + self.dead

    def job_started(self, job: ClaimedJob) -> None:
        self.started += 1

    def job_succeeded(self, job: ClaimedJob, completion: Completion) -> None:
        self.succeeded += 1

    def job_retried(self, job: ClaimedJob, failure: Failure) -> None:
        self.retried += 1

    def job_dead(self, job: ClaimedJob, failure: Failure) -> None:
        self.dead += 1

    def job_released(self, job: ClaimedJob, release: Release) -> None:
        self.released += 1

    def job_lost(self, job: ClaimedJob) -> None:
        self.lost += 1

    def job_snoozed(self, job: ClaimedJob, failure: Failure) -> None:
        self.snoozed += 1

    def job_cancelled(self, job: ClaimedJob) -> None:
        self.cancelled += 1


class Observers:
    """Calls every observer's hook in turn; one that raises is logged once and skipped."""

    def __init__(self, observers: Sequence[WorkerObserver]) -> None:
        self._observers = tuple(observers)
        self._reported: set[tuple[int, str]] = set()

    # One loop per hook, no closures: these run for every job.
    def started(self, job: ClaimedJob) -> None:
        for observer in self._observers:
            try:
                observer.job_started(job)
            except Exception:
                self._failed(observer, "job_started")

    def recorded(self, job: ClaimedJob, outcome: Completion | Failure | Release) -> None:
        """The broker recorded `outcome`: the hook of its kind."""
        if isinstance(outcome, Completion):
            for observer in self._observers:
                try:
                    observer.job_succeeded(job, outcome)
                except Exception:
                    self._failed(observer, "job_succeeded")
        elif isinstance(outcome, Release):
            for observer in self._observers:
                try:
                    observer.job_released(job, outcome)
                except Exception:
                    self._failed(observer, "job_released")
        else:
            self._failure(job, outcome)

    def _failure(self, job: ClaimedJob, outcome: Failure) -> None:
        if outcome.snoozed:
            for observer in self._observers:
                try:
                    observer.job_snoozed(job, outcome)
                except Exception:
                    self._failed(observer, "job_snoozed")
        elif outcome.retry_at_ms is not None:
            for observer in self._observers:
                try:
                    observer.job_retried(job, outcome)
                except Exception:
                    self._failed(observer, "job_retried")
        else:
            for observer in self._observers:
                try:
                    observer.job_dead(job, outcome)
                except Exception:
                    self._failed(observer, "job_dead")

    def lost(self, job: ClaimedJob) -> None:
        for observer in self._observers:
            try:
                observer.job_lost(job)
            except Exception:
                self._failed(observer, "job_lost")

    def cancelled(self, job: ClaimedJob) -> None:
        for observer in self._observers:
            try:
                observer.job_cancelled(job)
            except Exception:
                self._failed(observer, "job_cancelled")

    def _failed(self, observer: WorkerObserver, hook: str) -> None:
        key = (id(observer), hook)
        if key in self._reported:
            return
        self._reported.add(key)
        log.exception(
            "observer %s raised in %s; ignored (not logged again for this hook)",
            type(observer).__name__,
            hook,
        )
