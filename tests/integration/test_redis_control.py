"""Redis control channel: a listener whose connection is killed subscribes again."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from corq.backends.base import ControlMessage
from corq.backends.redis import RedisBackend
from corq.control import ControlKind


async def kill_subscribers(url: str) -> int:
    """CLIENT KILL every connection in pub/sub mode; how many were killed."""
    admin = aioredis.Redis.from_url(url)
    try:
        killed = 0
        for client in await admin.client_list():
            if client.get("flags", "").find("P") >= 0 or int(client.get("sub", 0)) > 0:
                killed += int(await admin.client_kill_filter(_id=client["id"]))
        return killed
    finally:
        await admin.aclose()


async def test_a_killed_subscription_is_made_again_and_counted(redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, socket_timeout_s=1.0)
    listener = backend.control_listener("w1")
    await listener.subscribe()
    try:
        assert await kill_subscribers(redis_url) >= 1
        message = ControlMessage(kind=ControlKind.CANCEL, worker_id="w1", job_id="j")

        # The listener notices the loss, subscribes again and counts it
        got = None
        for _ in range(50):
            got = await listener.next_message(0.1)
            if listener.reconnects:
                break
        assert got is None
        assert listener.reconnects == 1
        # and hears what is sent from then on
        assert await backend.send_control(message) == 1
        assert await listener.next_message(5) == message
    finally:
        await listener.close()
        await backend.close()


async def test_send_control_says_how_many_heard_it(redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix)
    listener = backend.control_listener("w1")
    try:
        message = ControlMessage(kind=ControlKind.CANCEL, worker_id="w1", job_id="j")
        assert await backend.send_control(message) == 0
        await listener.subscribe()
        assert await backend.send_control(message) == 1
        assert await asyncio.wait_for(listener.next_message(5), 6) == message
    finally:
        await listener.close()
        await backend.close()
