"""The Breakers port on Redis: every task's circuit in the ``{breakers}`` slot, one script
per call (see ``lua/breaker_*.lua`` and keys.py)."""

from __future__ import annotations

from collections.abc import Sequence

from corq.backends.base import BATCH, Breaker, BreakerPermit, BreakerState
from corq.backends.redis.calls import chunks
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.types import TaskName


class RedisBreakers(RedisContext):
    """Circuit breakers per task, shared by every worker."""

    async def breaker_permit(
        self, task: TaskName, rule: Breaker, now_ms: int | None
    ) -> BreakerPermit:
        with broker_errors("breaker_permit"):
            call = self._scripts.breaker_permit(
                self._keys.breakers, task=task, rule=rule, now_ms=now_ms
            )
            return await self._scripts.run(call)

    async def breaker_outcome(
        self, task: TaskName, rule: Breaker, ok: bool, probe: bool, now_ms: int | None
    ) -> BreakerState:
        with broker_errors("breaker_outcome"):
            call = self._scripts.breaker_outcome(
                self._keys.breakers, task=task, rule=rule, ok=ok, probe=probe, now_ms=now_ms
            )
            return await self._scripts.run(call)

    async def breaker_states(
        self, tasks: Sequence[TaskName] | None = None, *, now_ms: int | None = None
    ) -> list[BreakerState]:
        keys = self._keys.breakers
        with broker_errors("breaker_states"):
            if tasks is None:
                members = await self._redis.smembers(keys.tasks)
                tasks = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
            calls = [
                self._scripts.breaker_states(keys, tasks=list(chunk), now_ms=now_ms)
                for chunk in chunks(list(tasks), BATCH)
            ]
            pages = await self._scripts.run_all(calls)
        return [state for page in pages for state in page]

    async def reset_breaker(self, task: TaskName) -> bool:
        with broker_errors("reset_breaker"):
            return await self._scripts.run(
                self._scripts.reset_breaker(self._keys.breakers, task=task)
            )
