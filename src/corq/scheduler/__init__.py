"""The scheduler: fires every schedule's ticks, once each, from the elected leader."""

from __future__ import annotations

from corq.scheduler.counts import SchedulerCounts
from corq.scheduler.decide import SkipReason
from corq.scheduler.scheduler import Scheduler

__all__ = ["Scheduler", "SchedulerCounts", "SkipReason"]
