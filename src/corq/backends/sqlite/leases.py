"""The WorkerRegistry port: holder registrations, heartbeats, departures, ended leases.

Taking jobs back from holders whose lease passed is a Claims call (reclaim.py).
"""

from __future__ import annotations

from corq.backends.base import HOLDER_SEPARATOR, WorkerLease
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock
from corq.types import QueueName


def register_worker(conn: Conn, lease: WorkerLease, now_ms: int | None) -> None:
    """(Re-)add each holder to its queue with a lease ending `lease_ms` from now."""
    now, _ = advance_clock(conn, now_ms)
    for queue in lease.queues:
        conn.execute(Q["queue_touch"], {"queue": queue, "now": now})
        params = {"queue": queue, "worker": lease.holder(queue), "deadline": now + lease.lease_ms}
        conn.execute(Q["worker_register"], params)


def deregister_worker(conn: Conn, lease: WorkerLease, now_ms: int | None, linger_ms: int) -> None:
    """Remove each holder that holds nothing; one that still holds jobs departs instead
    (lease ending `linger_ms` from now), so reclaim later gives its jobs back as releases.
    Deleting it would leave those jobs running under nobody for ever."""
    now, _ = advance_clock(conn, now_ms)
    for queue in lease.queues:
        holder = lease.holder(queue)
        params = {"queue": queue, "worker": holder, "deadline": now + max(0, linger_ms)}
        (holding,) = conn.execute(Q["held_count"], params).fetchone()
        conn.execute(Q["worker_depart" if holding else "worker_delete"], params)


def end_leases(conn: Conn, lease: WorkerLease) -> int:
    """End every other incarnation's lease of this worker id in its queues."""
    prefix = lease.worker_id + HOLDER_SEPARATOR
    ended = 0
    for queue in lease.queues:
        params = {"queue": queue, "prefix": prefix, "holder": lease.holder(queue)}
        ended += conn.execute(Q["workers_end"], params).rowcount
    return ended


def heartbeat(conn: Conn, lease: WorkerLease, now_ms: int | None) -> list[QueueName]:
    """Renew every registration still there; report (and do not re-add) the missing ones
    (reclaimed, being reclaimed, or departed)."""
    now, _ = advance_clock(conn, now_ms)
    lost = []
    for queue in lease.queues:
        params = {"queue": queue, "worker": lease.holder(queue), "deadline": now + lease.lease_ms}
        if conn.execute(Q["worker_renew"], params).rowcount == 0:
            lost.append(queue)
    return lost
