"""The worker runtime."""

from __future__ import annotations

from corq.worker.observer import JobCounts, WorkerObserver
from corq.worker.worker import Worker

__all__ = ["JobCounts", "Worker", "WorkerObserver"]
