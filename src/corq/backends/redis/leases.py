"""Holder registrations, heartbeats and departures: the WorkerRegistry port."""

from __future__ import annotations

from corq.backends.base import HOLDER_SEPARATOR, WorkerLease
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.types import QueueName


class RedisLeases(RedisContext):
    """Leases of holders on queues."""

    async def register_worker(self, lease: WorkerLease, now_ms: int | None) -> None:
        calls = [
            self._scripts.register_worker(
                self._q(q), holder=lease.holder(q), now_ms=now_ms, lease_ms=lease.lease_ms
            )
            for q in lease.queues
        ]
        with broker_errors("register_worker"):
            await self._scripts.run_all(calls)
            await self._registry.touch(self._scripts, lease.queues, now_ms)

    async def deregister_worker(
        self, lease: WorkerLease, now_ms: int | None, linger_ms: int = 0
    ) -> None:
        calls = [
            self._scripts.deregister_worker(
                self._q(q), holder=lease.holder(q), now_ms=now_ms, linger_ms=linger_ms
            )
            for q in lease.queues
        ]
        with broker_errors("deregister_worker"):
            await self._scripts.run_all(calls)

    async def end_leases(self, lease: WorkerLease) -> int:
        prefix = lease.worker_id + HOLDER_SEPARATOR
        calls = [
            self._scripts.end_leases(self._q(q), worker_prefix=prefix, holder=lease.holder(q))
            for q in lease.queues
        ]
        with broker_errors("end_leases"):
            return sum(await self._scripts.run_all(calls))

    async def heartbeat(self, lease: WorkerLease, now_ms: int | None) -> list[QueueName]:
        calls = [
            self._scripts.heartbeat_worker(
                self._q(q), holder=lease.holder(q), now_ms=now_ms, lease_ms=lease.lease_ms
            )
            for q in lease.queues
        ]
        with broker_errors("heartbeat"):
            renewed = await self._scripts.run_all(calls)
        return [q for q, ok in zip(lease.queues, renewed, strict=True) if not ok]
