"""The registry of queue names: a ZSET name -> last used (ms), global to the prefix.

Enqueue and register touch the names they use. A backend remembers what it touched and
touches a name again only after :data:`TOUCH_EVERY_S`, so the registry costs a round trip
per queue per hour, not one per call. As a consequence a queue is seen as used at most
that long after its last touch, so ``prune_queues`` with an idle time below it may forget
the name of a queue a producer still uses between bursts (never its jobs: a queue is only
forgotten while it holds nothing); the name comes back at that producer's next touch.

Members that are not queue names (not UTF-8, or not a name corq makes: another program's)
are skipped: never listed, never pruned, since no queue corq serves can be under them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from corq.backends.base import BATCH
from corq.backends.redis.keys import RedisKeys
from corq.backends.redis.scripts import Scripts
from corq.errors import ArgumentError
from corq.names import check_queue_name
from corq.types import QueueName

#: How often one backend notes again that it uses a queue.
TOUCH_EVERY_S = 3600.0


def queue_name(raw: bytes) -> QueueName | None:
    """The name a registry member stands for, or None when it is not a queue name (not
    UTF-8, or not a name corq would make: written by another program)."""
    try:
        return check_queue_name(raw.decode("utf-8"))
    except (UnicodeDecodeError, ArgumentError):
        return None


class QueueRegistry:
    """Touches, lists and prunes the names under one prefix (for one backend)."""

    def __init__(self, keys: RedisKeys) -> None:
        self._keys = keys
        #: When this backend last touched each name (time.monotonic()).
        self._touched: dict[QueueName, float] = {}
        #: True once a SET left by an older corq is known to be migrated.
        self._migrated = False

    async def touch(self, scripts: Scripts, names: Sequence[QueueName], now_ms: int | None) -> None:
        """Note `names` as used at `now_ms` (None: the broker's clock), unless done within
        the hour."""
        now = time.monotonic()
        due = [
            n
            for n in dict.fromkeys(names)
            if now - self._touched.get(n, -TOUCH_EVERY_S) >= TOUCH_EVERY_S
        ]
        if not due:
            return
        await scripts.run(scripts.touch_queues(self._keys.queues, names=due, now_ms=now_ms))
        self._migrated = True
        self._touched.update(dict.fromkeys(due, now))

    def forget_touches(self, names: Sequence[QueueName]) -> None:
        """Names pruned: the next use must register them again."""
        for name in names:
            self._touched.pop(name, None)

    async def _migrate(self, scripts: Scripts) -> None:
        if not self._migrated:
            await scripts.run(scripts.touch_queues(self._keys.queues, names=(), now_ms=None))
            self._migrated = True

    async def names(self, client: Redis, scripts: Scripts) -> list[QueueName]:
        """Every registered queue name, sorted; members that are not queue names skipped."""
        await self._migrate(scripts)
        raw = cast(list[bytes], await client.zrange(self._keys.queues, 0, -1))
        return sorted(name for name in map(queue_name, raw) if name is not None)

    async def idle(self, client: Redis, scripts: Scripts, cutoff_ms: int) -> list[bytes]:
        """At most BATCH names last used before `cutoff_ms` (as stored)."""
        await self._migrate(scripts)
        raw = await client.zrangebyscore(
            self._keys.queues, "-inf", f"({cutoff_ms}", start=0, num=BATCH
        )
        return cast(list[bytes], raw)
