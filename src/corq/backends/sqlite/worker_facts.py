"""The WorkerFacts port on SQLite: one ``worker_info`` row per worker (see schema.sql)."""

from __future__ import annotations

from functools import partial

from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock
from corq.backends.sqlite.thread import ConnectionThread
from corq.backends.worker_facts import decode_worker_info, encode_worker_info, judge
from corq.types import WorkerId
from corq.worker_info import WorkerInfo


class SqliteWorkerFacts:
    """The WorkerFacts methods of SqliteBackend, on its connection thread."""

    _thread: ConnectionThread

    async def publish_worker_info(self, info: WorkerInfo, ttl_ms: int) -> None:
        await self._thread.run(partial(publish_worker_info, info=info, ttl_ms=ttl_ms))

    async def list_worker_info(self, now_ms: int | None, lost_after_ms: int) -> list[WorkerInfo]:
        return await self._thread.run(
            partial(list_worker_info, now_ms=now_ms, lost_after_ms=lost_after_ms)
        )

    async def forget_worker_info(self, worker_id: WorkerId) -> None:
        await self._thread.run(partial(forget_worker_info, worker_id=worker_id))


def publish_worker_info(conn: Conn, info: WorkerInfo, ttl_ms: int) -> None:
    params = {
        "worker": info.worker_id,
        "info": encode_worker_info(info),
        "heartbeat": info.heartbeat_at_ms,
        "expires": info.heartbeat_at_ms + max(0, ttl_ms),
    }
    conn.execute(Q["worker_info_put"], params)


def list_worker_info(conn: Conn, now_ms: int | None, lost_after_ms: int) -> list[WorkerInfo]:
    """Remove the expired rows, then read the rest (rows that do not decode are skipped)."""
    now, _ = advance_clock(conn, now_ms)
    conn.execute(Q["worker_info_prune"], {"now": now})
    infos = []
    for (data,) in conn.execute(Q["worker_info_list"]):
        info = decode_worker_info(data) if isinstance(data, bytes | str) else None
        if info is not None:
            infos.append(info)
    return judge(infos, now, lost_after_ms)


def forget_worker_info(conn: Conn, worker_id: WorkerId) -> None:
    conn.execute(Q["worker_info_forget"], {"worker": worker_id})
