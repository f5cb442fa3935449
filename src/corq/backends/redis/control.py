"""The ControlChannel port on Redis: pub/sub for messages, a list per reply.

A listener has a pub/sub connection of its own (a worker's subscription must not share the
done signals' connection, whose resets would drop it), subscribed to its worker's channel
and to the channel for all. It PINGs when it has heard nothing for a while and replaces a
connection that errors or does not answer, counting each replacement in ``reconnects``:
messages published meanwhile are lost, so the worker reconciles at once (the broker's state
is the durable path). A reply is RPUSHed to a list with a PEXPIRE; the asker BLPOPs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from corq.backends.base import ControlMessage
from corq.backends.control_wire import decode_message, encode_message
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.keys import RedisKeys
from corq.control import ALL_WORKERS
from corq.errors import BrokerError
from corq.types import WorkerId

log = logging.getLogger(__name__)

#: How long a listener waits on its socket per read, so idle checks run.
_READ_S = 0.5


class RedisControlListener:
    """One worker's subscription: its own connection, made again when lost."""

    def __init__(self, url: str, keys: RedisKeys, worker_id: WorkerId, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._channels = [keys.control(worker_id), keys.control(ALL_WORKERS)]
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._heard = 0.0
        self._pinged: float | None = None
        self._lost = False
        self.reconnects = 0

    async def subscribe(self) -> None:
        if self._pubsub is not None:
            return
        client = Redis.from_url(
            self._url,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self._timeout_s,
            decode_responses=False,
        )
        pubsub = client.pubsub()
        try:
            with broker_errors("control subscribe"):
                await pubsub.subscribe(*self._channels)
                await self._confirm(pubsub)
        except BaseException:
            await _close(pubsub, client)
            raise
        self._client, self._pubsub = client, pubsub
        self._heard, self._pinged = _now(), None
        if self._lost:
            self._lost = False
            self.reconnects += 1

    async def _confirm(self, pubsub: PubSub) -> None:
        """Wait for the server to confirm every channel (a message sent after is heard)."""
        waiting = {c.encode() for c in self._channels}
        deadline = _now() + self._timeout_s
        while waiting:
            if _now() > deadline:
                raise BrokerError("the control subscription was not confirmed in time")
            reply: dict[str, Any] | None = await pubsub.get_message(timeout=_READ_S)
            if reply is not None and reply.get("type") == "subscribe":
                waiting.discard(reply.get("channel"))

    async def next_message(self, timeout_s: float) -> ControlMessage | None:
        deadline = _now() + max(0.0, timeout_s)
        while True:
            await self.subscribe()
            remaining = deadline - _now()
            if remaining <= 0:
                return None
            try:
                raw = await self._read(min(remaining, _READ_S))
            except (RedisError, OSError, BrokerError) as exc:
                log.info("control channel connection lost (%s); subscribing again", exc)
                await self._reset()
                continue
            if raw is not None:
                return raw

    async def _read(self, wait_s: float) -> ControlMessage | None:
        pubsub = self._pubsub
        assert pubsub is not None
        now = _now()
        if self._pinged is not None and now - self._pinged > self._timeout_s:
            raise BrokerError("the control connection did not answer a PING")
        if self._pinged is None and now - self._heard > self._timeout_s:
            await pubsub.ping()
            self._pinged = now
        reply: dict[str, Any] | None = await pubsub.get_message(timeout=wait_s)
        if reply is None:
            return None
        self._heard, self._pinged = _now(), None
        if reply.get("type") != "message" or not isinstance(reply.get("data"), bytes):
            return None
        return decode_message(reply["data"])

    async def _reset(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        self._lost = True
        if pubsub is not None and client is not None:
            await _close(pubsub, client)

    async def close(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        if pubsub is not None and client is not None:
            await _close(pubsub, client)


async def _close(pubsub: PubSub, client: Redis) -> None:
    with contextlib.suppress(RedisError, OSError):
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: unannotated
    with contextlib.suppress(RedisError, OSError):
        await client.aclose()


def _now() -> float:
    return asyncio.get_running_loop().time()


class RedisControl(RedisContext):
    """The ControlChannel methods of RedisBackend."""

    async def send_control(self, message: ControlMessage) -> int:
        with broker_errors("send_control"):
            heard = await self._redis.publish(
                self._keys.control(message.worker_id), encode_message(message)
            )
        return int(heard)

    def control_listener(self, worker_id: WorkerId) -> RedisControlListener:
        return RedisControlListener(self._url, self._keys, worker_id, self._socket_timeout_s)

    async def put_reply(self, request_id: str, body: bytes, ttl_ms: int) -> None:
        key = self._keys.reply(request_id)
        with broker_errors("put_reply"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, body)
                pipe.pexpire(key, max(1, ttl_ms))
                await pipe.execute()

    async def take_reply(self, request_id: str, timeout_s: float) -> bytes | None:
        key = self._keys.reply(request_id)
        wait_s = max(0.01, timeout_s)
        with broker_errors("take_reply"):
            got = await self._conn().blocking(wait_s).blpop([key], timeout=wait_s)
        if got is None:
            return None
        body = got[1]
        return body if isinstance(body, bytes) else None
