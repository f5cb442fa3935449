"""Done signals: one pub/sub connection per backend, shared by every ``wait_for_job``.

A waiter subscribes to its job's done channel *before* it reads the record, so a job that
ends between the read and the wait still wakes it. Subscribing is confirmed by the server
(the reader task matches each ``subscribe`` reply to the SUBSCRIBE it answers), so a
waiter never reads the record while its subscription is still in flight.

A thousand waiters cost one connection and one reader task. If that connection breaks,
every watch is marked broken and woken: waiters read the record again and re-subscribe on
a fresh connection, so a lost message costs a re-read, never a hang.

A connection can also die silently (an idle NAT or load-balancer timeout: no FIN, no RST,
bytes just stop). So the reader sends a PING whenever it has heard nothing for `idle_s`,
and resets the connection when no reply comes within the confirm timeout; a SUBSCRIBE not
confirmed in time resets it too. Either way the next wait runs on a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from corq.errors import BrokerError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(eq=False)
class Watch:
    """One waiter's view of a channel: `event` is set on a message or a broken connection."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    #: True once the shared connection broke; the waiter must subscribe again.
    broken: bool = False


@dataclass(eq=False)
class _Channel:
    #: Resolved by the server's reply to the SUBSCRIBE this entry sent (or a reset).
    confirmed: asyncio.Future[None]
    watches: set[Watch] = field(default_factory=set)


class DoneSignals:
    """Fan-out of done-channel messages to the waiters of one backend."""

    def __init__(self, client: Redis, confirm_timeout_s: float, idle_s: float) -> None:
        self._client = client
        self._confirm_timeout_s = confirm_timeout_s
        self._idle_s = idle_s
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._channels: dict[bytes, _Channel] = {}
        #: Per channel, the futures of the SUBSCRIBEs sent and not yet answered, in order.
        self._pending: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._send_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def watch(self, channel: str) -> AsyncIterator[Watch]:
        """Subscribe to `channel` (sharing the subscription with other waiters) until exit.

        On entry the subscription is confirmed, or the watch is already broken (the
        connection failed or did not confirm in time; the caller should read the record and
        watch again, on a fresh connection).
        """
        name = channel.encode("utf-8")
        watch = Watch()
        entry = self._channels.get(name)
        if entry is None:
            loop = asyncio.get_running_loop()
            entry = self._channels[name] = _Channel(confirmed=loop.create_future())
            entry.watches.add(watch)
            await self._subscribe(name, entry.confirmed)
        entry.watches.add(watch)
        try:
            await self._confirmation(entry.confirmed)
            yield watch
        finally:
            entry.watches.discard(watch)
            if not entry.watches and self._channels.get(name) is entry:
                del self._channels[name]
                await self._unsubscribe(name)

    async def wait_until(
        self,
        channel: str,
        read: Callable[[], Awaitable[T]],
        finished: Callable[[T], bool],
        timeout_s: float,
    ) -> T:
        """`read()` once `finished` says so, or when `timeout_s` is up (the latest either way).

        Subscribed before each read, so an end between the read and the wait still wakes
        it; a broken watch (a lost or silent connection) costs one more read.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        while True:
            async with self.watch(channel) as watch:
                while not watch.broken:
                    watch.event.clear()
                    value = await read()
                    remaining = deadline - loop.time()
                    if finished(value) or remaining <= 0:
                        return value
                    try:
                        async with asyncio.timeout(remaining):
                            await watch.event.wait()
                    except TimeoutError:
                        return await read()
            value = await read()  # the connection broke or went silent: watch on a fresh one
            if finished(value) or loop.time() >= deadline:
                return value

    async def _confirmation(self, confirmed: asyncio.Future[None]) -> None:
        try:
            async with asyncio.timeout(self._confirm_timeout_s):
                await asyncio.shield(confirmed)
        except TimeoutError:
            # A silent connection: drop it, which breaks (and so releases) this watch too,
            # unless a reset meanwhile already did (a reset resolves every pending SUBSCRIBE).
            if not confirmed.done():
                await self._reset(TimeoutError("redis did not confirm a SUBSCRIBE in time"))

    async def _subscribe(self, name: bytes, confirmed: asyncio.Future[None]) -> None:
        async with self._send_lock:
            if self._pubsub is None:
                self._pubsub = self._client.pubsub()
            pubsub = self._pubsub
            self._pending.setdefault(name, deque()).append(confirmed)
            try:
                await pubsub.subscribe(name)
            except (RedisError, OSError) as exc:
                if self._pubsub is pubsub:
                    await self._reset(exc)
                raise BrokerError(f"redis SUBSCRIBE failed: {exc}") from exc
            if self._pubsub is not pubsub:
                return  # reset meanwhile: the watch is broken, its waiter starts again
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(pubsub))

    async def _unsubscribe(self, name: bytes) -> None:
        async with self._send_lock:
            if self._pubsub is None:
                return
            try:
                await self._pubsub.unsubscribe(name)
            except (RedisError, OSError) as exc:
                # The reader sees the same broken connection and resets everything.
                log.debug("UNSUBSCRIBE %r failed: %s", name, exc)

    async def _read(self, pubsub: PubSub) -> None:
        """Dispatch messages until the connection breaks, goes silent, or the task is
        cancelled."""
        try:
            while True:
                message = await pubsub.get_message(timeout=self._idle_s)
                if message is None:
                    message = await self._ping(pubsub)
                self._dispatch(message["type"], message["channel"])
        except Exception as exc:  # any failure means the connection is gone
            if self._pubsub is pubsub:
                await self._reset(exc)

    async def _ping(self, pubsub: PubSub) -> dict[str, Any]:
        """After `idle_s` of silence: PING, and return the next message (the PONG, or one
        that crossed it); raise when nothing comes within the confirm timeout."""
        async with self._send_lock:
            await pubsub.ping()
        message = await pubsub.get_message(timeout=self._confirm_timeout_s)
        if message is None:
            raise TimeoutError(f"no reply to PING within {self._confirm_timeout_s} s")
        return cast(dict[str, Any], message)

    def _dispatch(self, kind: str, name: bytes) -> None:
        if kind == "subscribe":
            pending = self._pending.get(name)
            if pending:
                future = pending.popleft()
                if not future.done():
                    future.set_result(None)
                if not pending:
                    del self._pending[name]
        elif kind == "message":
            entry = self._channels.get(name)
            if entry is not None:
                for watch in entry.watches:
                    watch.event.set()

    async def _reset(self, exc: BaseException) -> None:
        """Forget the broken connection; wake every waiter so it re-reads and re-subscribes."""
        log.debug("done-signal connection lost: %s", exc)
        pubsub, self._pubsub = self._pubsub, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        for entry in self._channels.values():
            for watch in entry.watches:
                watch.broken = True
                watch.event.set()
        for pending in self._pending.values():
            for future in pending:
                if not future.done():
                    future.set_result(None)  # the watch is broken: its waiter re-reads
        self._channels.clear()
        self._pending.clear()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: unannotated

    async def close(self) -> None:
        """Stop the reader and drop the connection."""
        reader = self._reader
        await self._reset(ConnectionError("closed"))
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader
