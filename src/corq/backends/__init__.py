"""Brokers: open one from a URL. Only this package knows Redis or SQLite."""

from __future__ import annotations

from corq.backends.base import EVENTS_MAX, Backend
from corq.errors import ConfigError

__all__ = ["Backend", "open_backend"]


def open_backend(
    url: str,
    *,
    prefix: str = "corq",
    socket_timeout_s: float = 5.0,
    dead_max: int = 0,
    dead_ttl_ms: int = 0,
    events_max: int = EVENTS_MAX,
) -> Backend:
    """Open the broker a URL names: ``redis://``, ``rediss://``, ``unix://`` or ``sqlite:///path``.

    Connections are made lazily, on first use, in the event loop that uses them. `dead_max`
    and `dead_ttl_ms` bound each queue's dead letters (0: unbounded), `events_max` its events
    log (0: no events are written).
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from corq.backends.redis import RedisBackend

        return RedisBackend(
            url,
            prefix=prefix,
            socket_timeout_s=socket_timeout_s,
            dead_max=dead_max,
            dead_ttl_ms=dead_ttl_ms,
            events_max=events_max,
        )
    if scheme == "sqlite":
        from corq.backends.sqlite import SqliteBackend

        return SqliteBackend(
            url,
            socket_timeout_s=socket_timeout_s,
            dead_max=dead_max,
            dead_ttl_ms=dead_ttl_ms,
            events_max=events_max,
        )
    raise ConfigError(
        f"unsupported broker URL {url!r}: use redis://host:port/db or sqlite:///path/to/corq.db"
    )
