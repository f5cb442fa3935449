"""Runtime configuration (the RuntimeConfig port) on Redis: one versioned document in the
``{config}`` slot, and each queue's pause flag in the queue's own slot.

A change is one script in ``{config}`` (fields, history, version together). A queue's
``paused`` is enforced by its claims, so it is also written to ``{q}:paused``: pausing after
the change, resuming before it, so a crash between the two leaves the queue paused, and a
worker (which stops fetching a queue its configuration calls paused) holds it too;
repeating the call writes the flag again. See docs/design.md, "Runtime configuration".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import cast

import msgspec

from corq.backends.base import ConfigChange, ConfigScope, ConfigSnapshot
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.replies import text
from corq.errors import ConfigError
from corq.types import QueueName

#: Separates scope, name and field in an entry's hash field.
SEP = "\x1f"
#: History changes read per round trip while filtering.
HISTORY_PAGE = 500
_DECODER = msgspec.msgpack.Decoder()


def paused_value(values: Mapping[str, str | None]) -> bool | None:
    """The pause a change sets: True, False (set false or removed), None (not touched)."""
    if "paused" not in values:
        return None
    raw = values["paused"]
    return raw is not None and json.loads(raw) is True


def check_change(name: str, values: Mapping[str, str | None]) -> None:
    """Names must not hold the separator; values must be JSON texts."""
    for part in (name, *values):
        if not part or SEP in part:
            raise ConfigError(f"a configuration name or field must be non-empty, got {part!r}")
    for field, value in values.items():
        if value is not None:
            try:
                json.loads(value)
            except ValueError as exc:
                raise ConfigError(f"field {field!r}: {value!r} is not a JSON text") from exc


class RedisConfig(RedisContext):
    """The RuntimeConfig methods of RedisBackend."""

    async def change_config(
        self,
        scope: ConfigScope,
        name: str,
        values: Mapping[str, str | None],
        who: str,
        now_ms: int | None,
    ) -> int:
        check_change(name, values)
        paused = paused_value(values) if scope is ConfigScope.QUEUE else None
        queue = QueueName(name)
        if paused is False:  # the flag first: a crash now leaves the config saying paused
            await self._set_paused(queue, False, 0)
        call = self._scripts.change_config(
            self._keys.config, scope=scope.value, name=name, values=values, who=who,
            now_ms=now_ms,
        )  # fmt: skip
        with broker_errors("change_config"):
            version = await self._scripts.run(call)
        if paused is True:  # after: a crash before this leaves the config saying paused
            await self._set_paused(queue, True, version)
        return version

    async def _set_paused(self, queue: QueueName, paused: bool, version: int) -> None:
        call = self._scripts.set_queue_paused(self._q(queue), paused=paused, version=version)
        with broker_errors("set_queue_paused"):
            await self._scripts.run(call)

    async def read_config(self) -> ConfigSnapshot:
        keys = self._keys.config
        with broker_errors("read_config"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(keys.version)
                pipe.hgetall(keys.entries)
                version, raw = await pipe.execute()
        entries: dict[tuple[ConfigScope, str], dict[str, str]] = {}
        for key, value in cast(dict[bytes, bytes], raw).items():
            parts = text(key).split(SEP)
            if len(parts) != 3 or parts[0] not in ConfigScope._value2member_map_:
                continue  # written by another program: not an entry of ours
            scope, name, field = ConfigScope(parts[0]), parts[1], parts[2]
            entries.setdefault((scope, name), {})[field] = text(value)
        return ConfigSnapshot(version=_int(version), entries=entries)

    async def config_version(self) -> int:
        with broker_errors("config_version"):
            return _int(await self._redis.get(self._keys.config.version))

    async def config_history(
        self,
        limit: int = 100,
        before_version: int | None = None,
        scope: ConfigScope | None = None,
        name: str | None = None,
    ) -> list[ConfigChange]:
        top: str | int = "+inf" if before_version is None else f"({before_version}"
        out: list[ConfigChange] = []
        offset = 0
        while len(out) < limit:
            with broker_errors("config_history"):
                page = await self._redis.zrevrangebyscore(
                    self._keys.config.history, top, "-inf", start=offset, num=HISTORY_PAGE
                )
            for raw in page:
                change = _change(raw)
                if change is None or (scope is not None and change.scope is not scope):
                    continue
                if name is None or change.name == name:
                    out.append(change)
            if len(page) < HISTORY_PAGE:
                break
            offset += HISTORY_PAGE
        return out[: max(0, limit)]


def _int(value: object) -> int:
    try:
        return int(cast(bytes, value) or 0)
    except (ValueError, TypeError):
        return 0


def _change(raw: object) -> ConfigChange | None:
    """One history record; None for one that does not read (written by another program)."""
    try:
        version, at_ms, who, scope, name, field, old, new = _DECODER.decode(cast(bytes, raw))
        return ConfigChange(
            version=int(version),
            at_ms=int(at_ms),
            who=str(who),
            scope=ConfigScope(scope),
            name=str(name),
            field=str(field),
            old=None if old is False else str(old),
            new=None if new is False else str(new),
        )
    except (ValueError, TypeError, msgspec.DecodeError):
        return None
