"""What a scheduler fired and skipped while it led (``Scheduler.counts``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from corq.scheduler.decide import SkipReason


@dataclass
class SchedulerCounts:
    """Ticks this scheduler fired or skipped (as the broker confirmed), since it started."""

    #: Jobs enqueued for ticks (regular and buffered).
    fired: int = 0
    #: Ticks passed over without a job.
    skipped: int = 0
    #: `skipped`, by reason.
    by_reason: dict[SkipReason, int] = field(default_factory=dict)

    def add_skips(self, why: SkipReason, count: int) -> None:
        self.skipped += count
        self.by_reason[why] = self.by_reason.get(why, 0) + count
