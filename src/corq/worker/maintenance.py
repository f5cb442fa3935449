"""Tidying the broker, now and then, so it does not grow without bound.

A worker forgets queue names that hold nothing and were unused for longer than results
live, and takes back the jobs of dead workers in a few queues nobody here serves: a queue
nobody serves any more has no one else to do it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Container

from corq.backends.base import Backend
from corq.types import Clock, QueueName

log = logging.getLogger(__name__)

#: How often a worker tidies the broker.
MAINTAIN_EVERY_S = 300.0
#: Queues not served by this worker that one round of maintenance reclaims in.
MAINTAIN_QUEUES = 100


async def maintain(
    backend: Backend,
    clock: Clock,
    served: Container[QueueName],
    *,
    max_deaths: int,
    result_ttl_s: float,
) -> None:
    """One round: prune unused queue names, reclaim in some queues not `served` here."""
    idle_ms = round((result_ttl_s + 3600) * 1000)
    pruned = await backend.prune_queues(clock.broker_now_ms(), idle_ms)
    if pruned:
        log.info("forgot %d unused queue name(s)", len(pruned))
    others = [q for q in await backend.list_queues() if q not in served]
    for queue in random.sample(others, min(len(others), MAINTAIN_QUEUES)):
        await backend.reclaim_stalled_jobs(queue, clock.broker_now_ms(), max_deaths)
