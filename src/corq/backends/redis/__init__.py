"""The Redis broker (redis-py asyncio, one Lua script per atomic step)."""

from __future__ import annotations

from corq.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
