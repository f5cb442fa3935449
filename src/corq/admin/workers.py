"""The workers part of the operator API: who runs, how loaded, and which jobs look stuck.

Workers publish their facts every heartbeat (see corq/worker/facts.py); this part only
reads them. A job is *stuck* when it runs far beyond what its task usually takes on that
worker, or near its timeout (`stuck_reason`, plain data, no I/O).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from corq.admin.base import AdminBase
from corq.types import TaskName, WorkerId
from corq.worker_info import RunningJob, TaskDurations, WorkerInfo, WorkerState

#: A task's usual duration is trusted once this many of its runs were measured.
STUCK_MIN_SAMPLES = 20
#: Stuck beyond max(FACTOR x p95, p95 + MARGIN): far beyond, for quick and slow tasks alike.
STUCK_P95_FACTOR = 3.0
STUCK_P95_MARGIN_MS = 60_000
#: Stuck once this share of the task's timeout has gone by.
STUCK_TIMEOUT_SHARE = 0.8


@dataclass(frozen=True, kw_only=True, slots=True)
class RunningJobView:
    """A job running now, on which worker, for how long, and whether it looks stuck."""

    worker_id: WorkerId
    host: str
    job: RunningJob
    #: How long it has run (ms), by the reader's clock.
    run_ms: int
    #: Why it looks stuck; None when it does not.
    stuck: str | None = None

    @property
    def is_stuck(self) -> bool:
        return self.stuck is not None


def stuck_reason(
    job: RunningJob, durations: Mapping[TaskName, TaskDurations], run_ms: int
) -> str | None:
    """Why a job that has run `run_ms` looks stuck, or None."""
    if job.timeout_ms is not None and run_ms > STUCK_TIMEOUT_SHARE * job.timeout_ms:
        return (
            f"ran {format_ms(run_ms)} of its {format_ms(job.timeout_ms)} timeout "
            f"(over {STUCK_TIMEOUT_SHARE:.0%})"
        )
    usual = durations.get(job.task)
    if usual is None or usual.count < STUCK_MIN_SAMPLES:
        return None
    limit = max(STUCK_P95_FACTOR * usual.p95_ms, usual.p95_ms + STUCK_P95_MARGIN_MS)
    if run_ms > limit:
        return (
            f"ran {format_ms(run_ms)}; its task's p95 here is {format_ms(usual.p95_ms)} "
            f"({usual.count} runs)"
        )
    return None


def running_jobs(infos: list[WorkerInfo], now_ms: int) -> list[RunningJobView]:
    """The jobs the workers that are not lost run, longest first, stuck ones flagged (a
    lost worker's jobs are being taken back: they run elsewhere next)."""
    views = []
    for info in infos:
        if info.state is WorkerState.LOST:
            continue
        for job in info.running:
            run_ms = max(0, now_ms - job.started_at_ms)
            stuck = stuck_reason(job, info.durations, run_ms)
            views.append(
                RunningJobView(
                    worker_id=info.worker_id, host=info.host, job=job, run_ms=run_ms, stuck=stuck
                )
            )
    views.sort(key=lambda v: (-v.run_ms, v.worker_id, v.job.job_id))
    return views


def format_ms(ms: float) -> str:
    """A duration the way people read it: 850ms, 4.2s, 3m05s, 2h07m."""
    if ms < 1000:
        return f"{ms:.0f}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    minutes, seconds = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class WorkersAdmin(AdminBase):
    """The registry of workers, and the jobs they run."""

    @property
    def lost_after_ms(self) -> int:
        """A worker not heard from for a lease is lost (its jobs are reclaimed)."""
        return round(self.app.settings.lease_s * 1000)

    async def workers(self) -> list[WorkerInfo]:
        """Every registered worker, by id; those not heard from for a lease are LOST
        (shown for a while, then removed)."""
        return await self.backend.list_worker_info(
            self.app.clock.broker_now_ms(), self.lost_after_ms
        )

    async def running(self) -> list[RunningJobView]:
        """Jobs running now across the workers, longest first, stuck ones flagged."""
        return running_jobs(await self.workers(), self.app.clock.now_ms())
