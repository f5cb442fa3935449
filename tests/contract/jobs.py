"""What the contract tests share: a fixed clock origin, the queue, a lease, a job maker."""

from __future__ import annotations

from corq.backends.base import NewJob

T0 = 1_700_000_000_000
Q = "default"
LEASE_MS = 30_000


def new_job(
    job_id: str, *, queue: str = Q, priority: int = 0, delay_ms: int = 0, payload: bytes = b"{}"
) -> NewJob:
    """A job enqueued at T0, due `delay_ms` later."""
    return NewJob(
        id=job_id,
        task="tasks.add",
        queue=queue,
        payload=payload,
        priority=priority,
        enqueued_at_ms=T0,
        run_at_ms=T0 + delay_ms,
    )
