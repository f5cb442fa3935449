"""The worker runtime."""

from __future__ import annotations

from corq.worker.worker import Worker

__all__ = ["Worker"]
