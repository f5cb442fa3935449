"""Connections of one event loop, and the translation of redis-py failures to BrokerError."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from corq.backends.redis.scripts import Scripts
from corq.backends.redis.waiters import DoneSignals
from corq.errors import BrokerError

#: Connections per pool. Callers beyond that wait for a free one (up to the socket
#: timeout) instead of failing, so a thousand concurrent ``wait_for_job`` calls just queue.
POOL_SIZE = 64
#: BLPOP holds its connection for the whole wait: one per queue being waited on.
BLOCKING_POOL_SIZE = 256


@contextmanager
def broker_errors(operation: str) -> Iterator[None]:
    """Re-raise redis-py (and socket) failures as BrokerError, so callers never see redis.

    Also re-raises a cancellation redis-py swallowed: it sends every command through
    ``asyncio.wait_for``, which on Python 3.11 drops a cancel that lands just as the send
    completes. A worker cancelling its fetch loop would otherwise loop on forever.
    """
    task = asyncio.current_task()
    cancels_before = task.cancelling() if task is not None else 0
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BrokerError(f"redis {operation} failed: {type(exc).__name__}: {exc}") from exc
    if cancel_was_swallowed(task, cancels_before):
        raise asyncio.CancelledError


def cancel_was_swallowed(task: asyncio.Task[object] | None, cancels_before: int) -> bool:
    """True when `task` was asked to cancel since `cancels_before` yet nothing was raised."""
    return task is not None and task.cancelling() > cancels_before


class Connections:
    """What one event loop uses: the command client, its scripts, done signals, BLPOP clients."""

    def __init__(self, url: str, socket_timeout_s: float) -> None:
        #: The loop these connections belong to (asyncio streams cannot change loops).
        self.loop = asyncio.get_running_loop()
        self._url = url
        self._socket_timeout_s = socket_timeout_s
        self.client = self._connect(socket_timeout_s, POOL_SIZE)
        self.scripts = Scripts(self.client)
        self.signals = DoneSignals(self.client, socket_timeout_s)
        self._blocking: dict[float, Redis] = {}

    def _connect(self, socket_timeout_s: float, pool_size: int) -> Redis:
        # No automatic retries: a script whose reply was lost may have run, and running a
        # claim twice would hold jobs nobody works on. Callers retry at their own level.
        pool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=pool_size,
            timeout=self._socket_timeout_s,
            decode_responses=False,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=self._socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return Redis.from_pool(pool)

    def blocking(self, timeout_s: float) -> Redis:
        """A client for BLPOP: its socket timeout must outlast the command's own timeout."""
        socket_timeout_s = round(timeout_s + self._socket_timeout_s, 3)
        client = self._blocking.get(socket_timeout_s)
        if client is None:
            client = self._connect(socket_timeout_s, BLOCKING_POOL_SIZE)
            self._blocking[socket_timeout_s] = client
        return client

    async def close(self) -> None:
        await self.signals.close()
        for client in (self.client, *self._blocking.values()):
            await client.aclose()
        self._blocking.clear()
