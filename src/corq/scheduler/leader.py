"""The scheduler lease: who fires ticks, and for how long it may believe it does.

One holder leads at a time; every change of holder raises the fence, and each step the
leader sends carries it, so a deposed leader is refused at its first write after its
successor's. Besides that, a leader stops firing on its own as soon as its lease may have
passed (its last renewal is older than the lease, counted from before that call was
sent), so a leader cut off from the broker does not go on believing it leads.
"""

from __future__ import annotations

import logging

from corq.backends.base import ScheduleStore
from corq.types import Clock

log = logging.getLogger(__name__)


class Leadership:
    """Acquires, renews and releases the scheduler lease for one holder."""

    def __init__(self, store: ScheduleStore, clock: Clock, holder: str, lease_ms: int) -> None:
        self.store = store
        self.clock = clock
        self.holder = holder
        self.lease_ms = lease_ms
        #: The fence of the current term (None: not leading).
        self.fence: int | None = None
        self._valid_until_ms = 0

    @property
    def leading(self) -> bool:
        """True while the lease is held and cannot have passed yet."""
        return self.fence is not None and self.clock.now_ms() < self._valid_until_ms

    async def acquire(self) -> bool:
        """Take or renew the lease; True when this holder leads. A new term (a fence other
        than the current one) is seen by the caller through `fence`. Raises BrokerError."""
        sent_ms = self.clock.now_ms()
        lease = await self.store.acquire_scheduler_lease(
            self.holder, self.lease_ms, self.clock.broker_now_ms()
        )
        if lease is None or lease.holder != self.holder:
            if self.fence is not None:
                log.warning("scheduler %s lost the lead", self.holder)
            self.fence = None
            return False
        if lease.fence != self.fence:
            log.info("scheduler %s leads (fence %d)", self.holder, lease.fence)
        self.fence = lease.fence
        self._valid_until_ms = sent_ms + self.lease_ms
        return True

    def drop(self, why: str) -> None:
        """Stop leading at once (a step was fenced, the lease may have passed)."""
        if self.fence is not None:
            log.warning("scheduler %s stops leading: %s", self.holder, why)
        self.fence = None

    async def release(self) -> None:
        """Give the lease up so a standby takes over at once. Raises BrokerError."""
        if self.fence is None:
            return
        self.fence = None
        await self.store.release_scheduler_lease(self.holder)
        log.info("scheduler %s released the lead", self.holder)
