"""What every role of the Redis broker shares: its settings, keys, connections and scripts.

Each role file (``producer.py``, ``claims.py``, ``outcomes.py``, ``leases.py``, ``admin.py``,
``schedules.py``, ``ticks.py``)
holds a class of that role's methods on top of :class:`RedisContext`; ``backend.py``
composes them into :class:`~corq.backends.redis.backend.RedisBackend`. Connections are made
lazily in the event loop that first uses the backend; another loop or thread takes a clone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis

from corq.backends.base import EVENTS_MAX
from corq.backends.redis.calls import DeadBounds, ScriptCall, batches
from corq.backends.redis.connections import Connections
from corq.backends.redis.keys import QueueKeys, RedisKeys
from corq.backends.redis.registry import QueueRegistry
from corq.backends.redis.scripts import Scripts
from corq.types import QueueName

R = TypeVar("R")


class RedisContext:
    """The state the roles share, and the plumbing they run scripts through.

    `dead_max` and `dead_ttl_ms` bound each queue's dead letters (0: unbounded), `events_max`
    its events stream (0: no events).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "corq",
        socket_timeout_s: float = 5.0,
        dead_max: int = 0,
        dead_ttl_ms: int = 0,
        events_max: int = EVENTS_MAX,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._socket_timeout_s = socket_timeout_s
        self._dead = DeadBounds(max_count=max(0, dead_max), ttl_ms=max(0, dead_ttl_ms))
        self._events_max = max(0, events_max)
        self._keys = RedisKeys(prefix)
        self._conns: Connections | None = None
        self._registry = QueueRegistry(self._keys)

    def _conn(self) -> Connections:
        conns = self._conns
        if conns is None:
            conns = self._conns = Connections(
                self._url, self._socket_timeout_s, self._dead, self._events_max
            )
        elif conns.loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "this RedisBackend belongs to another event loop; use backend.clone() here"
            )
        return conns

    @property
    def _redis(self) -> Redis:
        return self._conn().client

    @property
    def _scripts(self) -> Scripts:
        return self._conn().scripts

    def _q(self, queue: QueueName) -> QueueKeys:
        return self._keys.queue(queue)

    async def _run_grouped(
        self,
        total: int,
        groups: dict[QueueName, list[int]],
        make: Callable[[QueueKeys, Sequence[int]], ScriptCall[list[R]]],
        size_of: Callable[[int], int] = lambda _: 0,
        missing: R | bool = False,
    ) -> list[R]:
        """Run `make(queue, indices)` per queue and batch in one round trip; the replies in
        the order of the items (`missing` stands for none, and every item has one)."""
        calls: list[ScriptCall[list[R]]] = []
        order: list[Sequence[int]] = []
        for queue, indices in groups.items():
            for chunk in batches(indices, size_of):
                calls.append(make(self._q(queue), chunk))
                order.append(chunk)
        out: list[Any] = [missing] * total
        for batch, replies in zip(order, await self._scripts.run_all(calls), strict=True):
            for index, reply in zip(batch, replies, strict=True):
                out[index] = reply
        return out
