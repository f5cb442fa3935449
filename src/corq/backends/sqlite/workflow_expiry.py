"""Deleting workflows: finished ones once WORKFLOW_KEEP_MS passed (in bounded steps, as
results expire), and any left ``creating`` (which this broker never commits: only another
writer could leave one) once WORKFLOW_CREATE_GRACE_MS passed.

A workflow's job records are not deleted with it: each expires on its own (at least
WORKFLOW_KEEP_MS after its end, see ends.py), as on Redis.
"""

from __future__ import annotations

from corq.backends.base import BATCH, WORKFLOW_CREATE_GRACE_MS
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock, read_clock

_INT64_MIN = -(2**63)


def drop_step(conn: Conn, workflow_id: object) -> int:
    """Delete at most BATCH rows of each of a workflow's tables, its own row last (once
    the rest is gone); returns how many rows went (0: it is gone)."""
    params = {"workflow": workflow_id, "limit": BATCH}
    dropped = 0
    for statement in ("wf_edges_drop", "wf_nodes_drop", "wf_failed_drop", "wf_outputs_drop"):
        dropped += conn.execute(Q[statement], params).rowcount
    if dropped == 0:
        dropped += conn.execute(Q["wf_counts_drop"], params).rowcount
        dropped += conn.execute(Q["wf_drop"], params).rowcount
    return dropped


def drop_workflow(conn: Conn, workflow_id: object) -> None:
    """Delete a workflow whole (an expired one whose id is taken again: at most
    WORKFLOW_MAX_JOBS nodes and their edges, in statements of BATCH rows)."""
    while drop_step(conn, workflow_id):
        pass


def expire_workflows(conn: Conn) -> int:
    """One bounded step of deleting the workflows kept long enough after their end (by the
    latest time any call brought); returns how many rows went (0: nothing left to do)."""
    row = conn.execute(Q["wf_expired"], {"clock": read_clock(conn)}).fetchone()
    return 0 if row is None else max(1, drop_step(conn, row[0]))


def tend_workflows(conn: Conn, now_ms: int | None) -> int:
    """Delete at most BATCH workflows left ``creating`` longer than the grace, with their
    jobs (still waiting: nothing of such a workflow ever ran); returns how many."""
    now, _ = advance_clock(conn, now_ms)
    before = max(now - WORKFLOW_CREATE_GRACE_MS, _INT64_MIN)
    stale = conn.execute(Q["wf_stale_creating"], {"before": before, "limit": BATCH}).fetchall()
    for (workflow_id,) in stale:
        (last,) = conn.execute(Q["wf_last_position"], {"workflow": workflow_id}).fetchone()
        for offset in range(0, last + 1 if type(last) is int else 0, BATCH):
            params = {"workflow": workflow_id, "offset": offset, "limit": BATCH}
            rowids = conn.execute(Q["wf_unwritten_jobs"], params).fetchall()
            conn.executemany(Q["wf_job_drop"], [{"rowid": rowid} for (rowid,) in rowids])
        drop_workflow(conn, workflow_id)
    return len(stale)
