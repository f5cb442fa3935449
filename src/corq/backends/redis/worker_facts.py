"""Workers' facts, one cluster-wide hash and its expiry set: the WorkerFacts port."""

from __future__ import annotations

from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.worker_facts import decode_worker_info, encode_worker_info, judge
from corq.types import WorkerId
from corq.worker_info import WorkerInfo


class RedisWorkerFacts(RedisContext):
    """What each worker publishes about itself (see ``keys.py``, ``{workers}``)."""

    async def publish_worker_info(self, info: WorkerInfo, ttl_ms: int) -> None:
        call = self._scripts.publish_worker_info(
            self._keys.workers,
            worker_id=info.worker_id,
            facts=encode_worker_info(info),
            expires_at_ms=info.heartbeat_at_ms + max(0, ttl_ms),
        )
        with broker_errors("publish_worker_info"):
            await self._scripts.run(call)

    async def list_worker_info(self, now_ms: int | None, lost_after_ms: int) -> list[WorkerInfo]:
        call = self._scripts.list_worker_info(self._keys.workers, now_ms=now_ms)
        with broker_errors("list_worker_info"):
            now, pairs = await self._scripts.run(call)
        infos = [decode_worker_info(facts) for _, facts in pairs]
        return judge((i for i in infos if i is not None), now, lost_after_ms)

    async def forget_worker_info(self, worker_id: WorkerId) -> None:
        call = self._scripts.forget_worker_info(self._keys.workers, worker_id=worker_id)
        with broker_errors("forget_worker_info"):
            await self._scripts.run(call)
