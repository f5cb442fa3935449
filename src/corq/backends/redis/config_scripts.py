"""Typed wrappers of the runtime configuration's scripts (``change_config`` in the
``{config}`` slot, ``set_queue_paused`` in a queue's, and ``adopt_ready_jobs``, which a
task's first rules, set at runtime, need), mixed into
:class:`~corq.backends.redis.scripts.Scripts`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from corq.backends.base import BATCH, CONFIG_HISTORY_KEEP
from corq.backends.redis.calls import WAKE_CAP, Arg, ScriptCall, ScriptRunner, now_arg
from corq.backends.redis.keys import ConfigKeys, QueueKeys


class ConfigScripts(ScriptRunner):
    """The runtime configuration's scripts."""

    def change_config(
        self,
        keys: ConfigKeys,
        *,
        scope: str,
        name: str,
        values: Mapping[str, str | None],
        who: str,
        now_ms: int | None,
    ) -> ScriptCall[int]:
        args: list[Arg] = [scope, name, who, now_arg(now_ms), CONFIG_HISTORY_KEEP]
        for field, value in values.items():
            args += [field, 0, ""] if value is None else [field, 1, value]
        entry_keys = [keys.entries, keys.version, keys.history]
        return self._call("change_config", entry_keys, args, int)

    def set_queue_paused(self, keys: QueueKeys, *, paused: bool, version: int) -> ScriptCall[int]:
        queue_keys = [keys.paused, keys.idle, keys.wake, keys.workers]
        args: list[Arg] = [keys.inbox_prefix, int(paused), version, WAKE_CAP]
        return self._call("set_queue_paused", queue_keys, args, int)

    def adopt_ready_jobs(
        self, keys: QueueKeys, *, tasks: Sequence[str], cursor: str
    ) -> ScriptCall[tuple[int, str | None]]:
        args: list[Arg] = [keys.job_prefix, *keys.flow_prefixes, cursor, BATCH, *tasks]
        return self._call("adopt_ready_jobs", [keys.ready, *keys.flow_keys], args, _adopted)


def _adopted(reply: list[Any]) -> tuple[int, str | None]:
    moved, after = reply
    return int(moved), None if not after else (
        after.decode() if isinstance(after, bytes) else str(after)
    )
