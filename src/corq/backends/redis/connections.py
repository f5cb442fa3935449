"""Connections of one event loop, and the translation of redis-py failures to corq errors.

An outage (the broker cannot be reached, or cannot serve for now) becomes BrokerError,
which callers retry; a refusal (a key of the wrong type, a script error, a value Redis or
redis-py cannot take) becomes BrokerDataError at once, since retrying would only repeat it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as rx
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from corq.backends.redis.calls import DeadBounds
from corq.backends.redis.scripts import Scripts
from corq.backends.redis.waiters import DoneSignals
from corq.errors import BrokerDataError, BrokerError

#: Connections per pool. Callers beyond that wait for a free one (up to the socket
#: timeout) instead of failing, so a thousand concurrent ``wait_for_job`` calls just queue.
POOL_SIZE = 64
#: BLPOP holds its connection for the whole wait: one per queue being waited on.
BLOCKING_POOL_SIZE = 256


#: Failures of a broker that is out (or busy, loading, read-only, full) for now.
OUTAGES: tuple[type[BaseException], ...] = (
    rx.ConnectionError,  # BusyLoadingError (LOADING) is one
    rx.TimeoutError,
    rx.ReadOnlyError,
    rx.OutOfMemoryError,
    rx.TryAgainError,
    rx.ClusterDownError,  # MasterDownError is one
    OSError,  # asyncio's TimeoutError too
)
#: Error replies that mean "not now" rather than "never": a script running too long
#: (BUSY), failing persistence (MISCONF), too few replicas (NOREPLICAS).
TRANSIENT_REPLIES = ("BUSY ", "MISCONF ", "NOREPLICAS ")


def is_outage(exc: BaseException) -> bool:
    """True for a failure worth retrying (the broker is unreachable or cannot serve now)."""
    if isinstance(exc, OUTAGES):
        return True
    if isinstance(exc, rx.ResponseError):
        return str(exc).startswith(TRANSIENT_REPLIES)
    # Protocol and pool failures (a stream cut mid-reply): the connection, not the request.
    return isinstance(exc, rx.RedisError) and not isinstance(exc, rx.DataError)


@contextmanager
def broker_errors(operation: str) -> Iterator[None]:
    """Re-raise redis-py (and socket) failures as BrokerError or BrokerDataError (see the
    module docstring), so callers never see redis.

    Also re-raises a cancellation redis-py swallowed: it sends every command through
    ``asyncio.wait_for``, which on Python 3.11 drops a cancel that lands just as the send
    completes. A worker cancelling its fetch loop would otherwise loop on forever.
    """
    task = asyncio.current_task()
    cancels_before = task.cancelling() if task is not None else 0
    try:
        yield
    except (rx.RedisError, OSError, UnicodeError) as exc:
        message = f"redis {operation} failed: {type(exc).__name__}: {exc}"
        if is_outage(exc):
            raise BrokerError(message) from exc
        raise BrokerDataError(message) from exc
    if cancel_was_swallowed(task, cancels_before):
        raise asyncio.CancelledError


def cancel_was_swallowed(task: asyncio.Task[object] | None, cancels_before: int) -> bool:
    """True when `task` was asked to cancel since `cancels_before` yet nothing was raised."""
    return task is not None and task.cancelling() > cancels_before


class Connections:
    """What one event loop uses: the command client, its scripts, done signals, BLPOP clients."""

    def __init__(
        self, url: str, socket_timeout_s: float, dead: DeadBounds, events_max: int
    ) -> None:
        #: The loop these connections belong to (asyncio streams cannot change loops).
        self.loop = asyncio.get_running_loop()
        self._url = url
        self._socket_timeout_s = socket_timeout_s
        self.client = self._connect(socket_timeout_s, POOL_SIZE)
        self.scripts = Scripts(self.client, dead, events_max)
        self.signals = DoneSignals(self.client, socket_timeout_s, idle_s=socket_timeout_s)
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
