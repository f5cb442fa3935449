"""Recovery of dead workers' jobs, from the worker's own loop.

Every `reclaim_s` the reclaimer renews this worker's lease (so a fast-forwarded clock never
makes it reclaim its own jobs), then takes back the jobs of workers whose lease passed, and
now and then tidies the broker (`maintenance`).

After an outage longer than a lease every lease has passed, though the workers live: it
reclaims only once it has been in touch for a whole lease, by which time every live worker
has renewed its own. This holds from start-up too: a worker that starts right after an
outage must not take live workers' jobs. Until then only leases that were *ended* (by a
supervisor that saw its child die) are taken back.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from corq.aio import OutageLog, reraise_if_cancelling
from corq.backends.base import Backend
from corq.errors import BrokerDataError, BrokerError
from corq.types import Clock, QueueName
from corq.worker.leases import Leases
from corq.worker.maintenance import MAINTAIN_EVERY_S, maintain

log = logging.getLogger(__name__)


class Reclaimer:
    """Takes back the jobs of dead workers in the worker's queues."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        leases: Leases,
        queues: Sequence[QueueName],
        *,
        interval_s: float,
        max_deaths: int,
        result_ttl_s: float,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.leases = leases
        self.queues = tuple(queues)
        self.interval_s = interval_s
        self.max_deaths = max_deaths
        self.result_ttl_s = result_ttl_s
        self._outage = OutageLog("reclaim", log)

    async def run(self) -> None:
        """Reclaim every `interval_s` until cancelled."""
        in_touch_since: int | None = self.clock.now_ms()
        next_maintenance = self.clock.now_ms() + round(
            random.uniform(0.5, 1.0) * MAINTAIN_EVERY_S * 1000
        )
        while True:
            await self.clock.sleep(self.interval_s)
            try:
                lease = self.leases.lease
                lost = await self.backend.heartbeat(lease, self.clock.broker_now_ms())
                if lost:
                    await self.leases.recover_lost([(q, lease.holder(q)) for q in lost])
                in_touch_since = in_touch_since or self.clock.now_ms()
                whole_lease = self.clock.now_ms() - in_touch_since >= lease.lease_ms
                await self.reclaim_all(ended_only=not whole_lease)
                if whole_lease and self.clock.now_ms() >= next_maintenance:
                    next_maintenance = self.clock.now_ms() + round(MAINTAIN_EVERY_S * 1000)
                    await maintain(
                        self.backend,
                        self.clock,
                        self.leases.lease.holders,
                        max_deaths=self.max_deaths,
                        result_ttl_s=self.result_ttl_s,
                    )
            except BrokerError as exc:
                reraise_if_cancelling()
                in_touch_since = None
                self._outage.failed(exc)
            except BrokerDataError as exc:
                log.error("reclaim refused by the broker: %s", exc)
            else:
                self._outage.ok()

    async def reclaim_all(self, *, ended_only: bool) -> None:
        """One pass over the worker's queues (raises BrokerError)."""
        for queue in self.queues:
            reclaimed = await self.backend.reclaim_stalled_jobs(
                queue, self.clock.broker_now_ms(), self.max_deaths, ended_only=ended_only
            )
            for r in reclaimed:
                how = (
                    "given back from stopped worker"
                    if r.released
                    else "taken back from dead worker"
                )
                log.warning(
                    "job %s %s %s%s",
                    r.job_id,
                    how,
                    r.worker_id,
                    " and sent to the dead letters (poison)" if r.dead else "",
                )
