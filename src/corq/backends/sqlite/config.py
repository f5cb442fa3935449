"""Runtime configuration (the RuntimeConfig port) on SQLite: ``config_entries``,
``config_history`` and meta ``config_version``, each change one transaction.

A queue's ``paused`` needs no copy: the claim transaction and the wait probe read the
entry itself (``queue_paused``), so a pause is in force from the commit on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any

from corq.backends.base import CONFIG_HISTORY_KEEP, ConfigChange, ConfigScope, ConfigSnapshot
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, machine_now_ms
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.errors import ConfigError
from corq.types import QueueName

_INT64_MAX = 2**63 - 1


class SqliteConfig:
    """The RuntimeConfig methods of SqliteBackend, on its connection thread."""

    _thread: ConnectionThread

    async def change_config(
        self,
        scope: ConfigScope,
        name: str,
        values: Mapping[str, str | None],
        who: str,
        now_ms: int | None,
    ) -> int:
        check_values(name, values)
        change = partial(
            change_config, scope=scope, name=name, values=dict(values), who=who, now_ms=now_ms
        )
        return await self._thread.run(change)

    async def read_config(self) -> ConfigSnapshot:
        return await self._thread.run(read_config, Tx.READ)

    async def config_version(self) -> int:
        return await self._thread.run(version_of, Tx.READ)

    async def config_history(
        self,
        limit: int = 100,
        before_version: int | None = None,
        scope: ConfigScope | None = None,
        name: str | None = None,
    ) -> list[ConfigChange]:
        page = partial(config_history, limit=limit, before=before_version, scope=scope, name=name)
        return await self._thread.run(page, Tx.READ)


def check_values(name: str, values: Mapping[str, str | None]) -> None:
    """Names must be non-empty; values JSON texts."""
    for part in (name, *values):
        if not part:
            raise ConfigError("a configuration name or field must be non-empty")
    for field, value in values.items():
        if value is not None:
            try:
                json.loads(value)
            except ValueError as exc:
                raise ConfigError(f"field {field!r}: {value!r} is not a JSON text") from exc


def version_of(conn: Conn) -> int:
    row = conn.execute(Q["config_version"]).fetchone()
    return row[0] if row is not None and type(row[0]) is int else 0


def change_config(
    conn: Conn,
    scope: ConfigScope,
    name: str,
    values: dict[str, str | None],
    who: str,
    now_ms: int | None,
) -> int:
    """The fields, one history row per field changed, and the version, in one transaction."""
    version = version_of(conn)
    at = {"scope": scope.value, "name": name}
    changes: list[tuple[str, Any, str | None]] = []
    for field, value in values.items():
        row = conn.execute(Q["config_entry_get"], {**at, "field": field}).fetchone()
        old = None if row is None else row[0]
        if old == value:
            continue
        if value is None:
            conn.execute(Q["config_entry_delete"], {**at, "field": field})
        else:
            conn.execute(Q["config_entry_put"], {**at, "field": field, "value": value})
        changes.append((field, old, value))
    if not changes:
        return version
    version += 1
    conn.execute(Q["config_version_set"], {"version": version})
    when = machine_now_ms() if now_ms is None else now_ms
    for field, old, new in changes:
        row = {**at, "version": version, "at_ms": when, "who": who, "field": field}
        conn.execute(Q["config_history_add"], {**row, "old": _text(old), "new": new})
    conn.execute(Q["config_history_trim"], {"keep": CONFIG_HISTORY_KEEP})
    return version


def _text(value: object) -> str | None:
    return value if value is None or isinstance(value, str) else str(value)


def read_config(conn: Conn) -> ConfigSnapshot:
    entries: dict[tuple[ConfigScope, str], dict[str, str]] = {}
    for scope, name, field, value in conn.execute(Q["config_entries_all"]):
        if scope not in ConfigScope._value2member_map_ or not isinstance(value, str):
            continue  # written by another program: not an entry of ours
        entries.setdefault((ConfigScope(scope), str(name)), {})[str(field)] = value
    return ConfigSnapshot(version=version_of(conn), entries=entries)


def config_history(
    conn: Conn,
    limit: int,
    before: int | None,
    scope: ConfigScope | None,
    name: str | None,
) -> list[ConfigChange]:
    params = {
        "before": _INT64_MAX if before is None else before,
        "scope": None if scope is None else scope.value,
        "name": name,
        "limit": max(0, limit),
    }
    out: list[ConfigChange] = []
    for version, at_ms, who, row_scope, row_name, field, old, new in conn.execute(
        Q["config_history_page"], params
    ):
        if row_scope not in ConfigScope._value2member_map_:
            continue
        out.append(
            ConfigChange(
                version=int(version),
                at_ms=int(at_ms),
                who=str(who),
                scope=ConfigScope(row_scope),
                name=str(row_name),
                field=str(field),
                old=_text(old),
                new=_text(new),
            )
        )
    return out


def queue_paused(conn: Conn, queue: QueueName) -> bool:
    """Whether the queue's claims are closed (read inside the claim's transaction)."""
    (paused,) = conn.execute(Q["queue_paused"], {"queue": queue}).fetchone()
    return bool(paused)
