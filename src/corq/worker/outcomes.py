"""Turning what happened to an attempt into what the broker records.

Every builder here is total: whatever a task raised or returned, the result is an outcome
the broker can store (text made valid UTF-8 and cut to size, delays clamped), so no job is
ever left running because its outcome could not be built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from corq.backends.base import ClaimedJob, Completion, Failure, Release
from corq.limits import (
    MAX_DELAY_S,
    MAX_ERROR_CHARS,
    MAX_TRACEBACK_CHARS,
    clamp_delay_s,
    safe_text,
)
from corq.retry import RetryPolicy
from corq.types import Clock, WorkerId

log = logging.getLogger(__name__)

Outcome = Completion | Failure | Release


@dataclass(frozen=True, kw_only=True, slots=True)
class Raised:
    """What an attempt raised, as plain data (it may come from a child process)."""

    #: ``Type: message`` (already safe to store, see corq.limits.error_line).
    error: str
    #: Formatted traceback, if any.
    traceback: str | None = None
    #: The task raised corq.Retry: retry regardless of retry_on.
    retry_requested: bool = False
    #: The delay corq.Retry asked for (None: the task's backoff policy).
    retry_delay_s: float | None = None
    #: The exception is one the task's retry_on names (or retry_on is empty).
    retry_on_matched: bool = True
    #: The task raised corq.Snooze with a valid delay (seconds); `error` is its reason.
    snooze_s: float | None = None


class Outcomes:
    """Builds outcomes with the worker's clock and limits."""

    def __init__(self, clock: Clock, *, max_deaths: int, max_result_bytes: int) -> None:
        self.clock = clock
        self.max_deaths = max_deaths
        self.max_result_bytes = max_result_bytes

    def succeeded(self, job: ClaimedJob, result: bytes) -> Completion | Failure:
        """A result, or a dead letter when it is over the size limit (it would be every time)."""
        if len(result) > self.max_result_bytes:
            return self.dead(
                job,
                f"ResultTooLargeError: the result is {len(result):,} bytes, over the limit of "
                f"{self.max_result_bytes:,} (settings.max_result_bytes / CORQ_MAX_RESULT_BYTES)",
                counted=True,
            )
        return Completion(
            job_id=job.id,
            queue=job.queue,
            fence=job.fence,
            result=result,
            finished_at_ms=self.clock.now_ms(),
        )

    def failed(self, job: ClaimedJob, policy: RetryPolicy, raised: Raised) -> Failure:
        """A counted failure: retried by the policy (or as corq.Retry asked), else dead; or
        the snooze the task asked for."""
        if raised.snooze_s is not None:
            now = self.clock.now_ms()
            return self.snoozed(job, now + round(raised.snooze_s * 1000), raised.error)
        failures = job.failures + 1
        retry = failures <= policy.max_retries and (
            raised.retry_requested or not policy.retry_on or raised.retry_on_matched
        )
        error = safe_text(raised.error, MAX_ERROR_CHARS)
        now = self.clock.now_ms()
        retry_at = None
        if retry:
            delay = raised.retry_delay_s
            delay = policy.next_delay_s(failures) if delay is None else delay
            delay = clamp_delay_s(delay)
            retry_at = now + round(delay * 1000)
            log.warning(
                "job %s (%s) attempt %d failed: %s; retry in %.2fs",
                job.id,
                job.task,
                job.attempt,
                error,
                delay,
            )
        else:
            log.error(
                "job %s (%s) attempt %d failed: %s; no retries left, now dead",
                job.id,
                job.task,
                job.attempt,
                error,
            )
        return Failure(
            job_id=job.id,
            queue=job.queue,
            fence=job.fence,
            error=error,
            traceback=_traceback(raised.traceback),
            retry_at_ms=retry_at,
            finished_at_ms=now,
        )

    def snoozed(self, job: ClaimedJob, until_ms: int, reason: str) -> Failure:
        """Run again at `until_ms` (kept within now .. now + MAX_DELAY_S) as if this attempt
        never started (nothing counted)."""
        now = self.clock.now_ms()
        until_ms = max(now, min(until_ms, now + round(MAX_DELAY_S * 1000)))
        reason = safe_text(reason, MAX_ERROR_CHARS)
        log.info("job %s (%s) snoozed until %d: %s", job.id, job.task, until_ms, reason)
        return Failure(
            job_id=job.id,
            queue=job.queue,
            fence=job.fence,
            error=reason,
            traceback=None,
            retry_at_ms=until_ms,
            finished_at_ms=now,
            counted=False,
            snoozed=True,
        )

    def dead(self, job: ClaimedJob, error: str, *, counted: bool = False) -> Failure:
        """Straight to the dead letters (unknown task, bad payload, result too large)."""
        error = safe_text(error, MAX_ERROR_CHARS)
        log.error("job %s (%s) sent to the dead letters: %s", job.id, job.task, error)
        return self._to_dead(job, error, counted=counted, died=False)

    def _to_dead(self, job: ClaimedJob, error: str, *, counted: bool, died: bool) -> Failure:
        return Failure(
            job_id=job.id,
            queue=job.queue,
            fence=job.fence,
            error=error,
            traceback=None,
            retry_at_ms=None,
            finished_at_ms=self.clock.now_ms(),
            counted=counted,
            died=died,
        )

    def crashed(self, job: ClaimedJob, holder: WorkerId, detail: str) -> Release | Failure:
        """The job's own process died under our eyes: a death that is surely its own.

        At max_deaths it is a poison job; one short of it, a suspect (it will run in a
        sandbox); else it goes back to the head of its queue.
        """
        deaths = job.deaths + 1
        detail = safe_text(detail, MAX_ERROR_CHARS // 2)
        if deaths >= self.max_deaths:
            error = (
                f"poison job: its worker died {deaths} times while running it, the last time "
                f"in a process of its own ({detail}; worker {holder})"
            )
            log.error("job %s (%s) is a poison job: %s", job.id, job.task, error)
            return self._to_dead(job, error, counted=False, died=True)
        log.warning("job %s (%s) crashed its process (%s)", job.id, job.task, detail)
        return Release(
            job_id=job.id,
            queue=job.queue,
            fence=job.fence,
            died=True,
            suspect=deaths >= self.max_deaths - 1,
        )

    @staticmethod
    def released(job: ClaimedJob, *, unstarted: bool) -> Release:
        """Back to the head of its queue (shutdown); an attempt that never began is uncounted."""
        return Release(job_id=job.id, queue=job.queue, fence=job.fence, unstarted=unstarted)


def _traceback(text: str | None) -> str | None:
    return None if text is None else safe_text(text, MAX_TRACEBACK_CHARS)
