"""Typed wrappers of the workers' facts scripts (``lua/*worker_info.lua``), mixed into
:class:`~corq.backends.redis.scripts.Scripts`: one method per script, named like its file."""

from __future__ import annotations

from typing import Any

from corq.backends.redis.calls import ScriptCall, ScriptRunner, now_arg
from corq.backends.redis.keys import WorkersKeys
from corq.types import WorkerId

#: What list_worker_info returns: the time it judged by, and (worker id, facts) pairs.
FactsReply = tuple[int, list[tuple[bytes, bytes]]]


def _listed(reply: list[Any]) -> FactsReply:
    now, flat = reply
    return int(now), [(flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2)]


class WorkerFactsScripts(ScriptRunner):
    """The scripts of the ``{workers}`` slot."""

    def publish_worker_info(
        self, keys: WorkersKeys, *, worker_id: WorkerId, facts: bytes, expires_at_ms: int
    ) -> ScriptCall[int]:
        return self._call(
            "publish_worker_info",
            [keys.info, keys.expiry],
            [worker_id, facts, expires_at_ms],
            int,
        )

    def list_worker_info(self, keys: WorkersKeys, *, now_ms: int | None) -> ScriptCall[FactsReply]:
        """The time it used, and (worker id, encoded facts) of every worker left."""
        return self._call("list_worker_info", [keys.info, keys.expiry], [now_arg(now_ms)], _listed)

    def forget_worker_info(self, keys: WorkersKeys, *, worker_id: WorkerId) -> ScriptCall[int]:
        return self._call("forget_worker_info", [keys.info, keys.expiry], [worker_id], int)
