"""Reading the workflow tables without trusting them: get_workflow, workflow_nodes,
parent_outcomes, output_outcomes, batch_summary (read transactions).

A row another program wrote may hold anything. A workflow row (or one of its outputs) that
cannot be read reads as absent (as a schedule row does); a job of the graph whose key
cannot be read is left out of the nodes; an edge or an output that cannot be read reads as
a parent whose record is gone, with an error naming the damage, so a chord callback is
never handed a shorter list in silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corq.backends.base import (
    BATCH,
    BatchEvent,
    BatchSummary,
    Edge,
    ParentOutcome,
    ResultShape,
    WorkflowNode,
    WorkflowRecord,
)
from corq.backends.sqlite.ends import FAILED_STATES
from corq.backends.sqlite.records import shown
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, read_clock
from corq.job import TERMINAL_STATES, JobStatus
from corq.types import JobId, QueueName

_STATES = {"open", "closed", "creating"}
_STATUSES = {status.value: status for status in JobStatus}
_EVENTS = {event.value: event for event in BatchEvent}
_SHAPES = {shape.value: shape for shape in ResultShape}


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """A workflows row that reads (every field checked)."""

    id: str
    kind: str
    state: str
    shape: ResultShape
    total: int
    members: int
    ended: int
    members_ended: int
    first_failure: tuple[JobId, str] | None
    created_at_ms: int
    finished_at_ms: int | None


def workflow_row(conn: Conn, workflow_id: str) -> WorkflowRow | None:
    """The workflow's row, or None when there is none, it cannot be read, or it expired
    by the latest time any call brought."""
    row = conn.execute(Q["wf_get"], {"workflow": workflow_id}).fetchone()
    if row is None:
        return None
    (
        wid,
        kind,
        state,
        shape,
        total,
        members,
        ended,
        members_ended,
        failure,
        failure_error,
        created,
        finished,
        expires,
    ) = row
    if type(expires) is int and expires <= read_clock(conn):
        return None
    texts_ok = isinstance(wid, str) and isinstance(kind, str) and state in _STATES
    counts_ok = all(type(v) is int and v >= 0 for v in (total, members, ended, members_ended))
    times_ok = type(created) is int and (finished is None or type(finished) is int)
    if not (texts_ok and counts_ok and times_ok and shape in _SHAPES):
        return None
    first = None
    if isinstance(failure, str):
        first = (failure, failure_error if isinstance(failure_error, str) else "")
    return WorkflowRow(
        wid,
        kind,
        state,
        _SHAPES[shape],
        total,
        members,
        ended,
        members_ended,
        first,
        created,
        finished,
    )


def _outputs(conn: Conn, workflow_id: str) -> tuple[tuple[JobId, QueueName], ...] | None:
    """The workflow's outputs in order (read BATCH at a time), or None when one cannot be
    read (the record then reads as absent, as a damaged row does)."""
    outputs: list[tuple[JobId, QueueName]] = []
    offset = 0
    while True:
        params = {"workflow": workflow_id, "offset": offset, "limit": BATCH}
        rows = conn.execute(Q["wf_outputs_page"], params).fetchall()
        for _, job, queue in rows:
            if not (isinstance(job, str) and isinstance(queue, str)):
                return None
            outputs.append((job, queue))
        if len(rows) < BATCH:
            return tuple(outputs)
        if type(rows[-1][0]) is not int:
            return None
        offset = rows[-1][0] + 1


def counts(conn: Conn, workflow_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """Ends taken in by state: (every job, members only); unreadable rows left out."""
    every: dict[str, int] = {}
    members: dict[str, int] = {}
    for member, state, n in conn.execute(Q["wf_counts"], {"workflow": workflow_id}):
        if state not in TERMINAL_STATES or type(n) is not int or n <= 0 or member not in (0, 1):
            continue
        every[state] = every.get(state, 0) + n
        if member == 1:
            members[state] = n
    return every, members


def get_workflow(conn: Conn, workflow_id: str) -> WorkflowRecord | None:
    row = workflow_row(conn, workflow_id)
    outputs = None if row is None else _outputs(conn, workflow_id)
    if row is None or outputs is None:
        return None
    every, _ = counts(conn, workflow_id)
    return WorkflowRecord(
        id=row.id,
        kind=row.kind,
        total=row.total,
        ended=row.ended,
        counts=every,
        open=row.state == "open",
        creating=row.state == "creating",
        outputs=outputs,
        shape=row.shape,
        created_at_ms=row.created_at_ms,
        finished_at_ms=row.finished_at_ms,
        first_failure=row.first_failure,
    )


def workflow_nodes(conn: Conn, workflow_id: str, offset: int, limit: int) -> list[WorkflowNode]:
    """At most `limit` (and BATCH) jobs from `offset` on, each with its edges."""
    if workflow_row(conn, workflow_id) is None:
        return []
    params = _page(conn, workflow_id, offset, limit)
    nodes = []
    for job, queue, task, callback, _, status, error in conn.execute(Q["wf_nodes_page"], params):
        if not (isinstance(job, str) and isinstance(queue, str)):
            continue
        nodes.append(
            WorkflowNode(
                job_id=job,
                queue=queue,
                task=task if isinstance(task, str) else "",
                status=_STATUSES.get(status) if isinstance(status, str) else None,
                parents=_edges(conn, workflow_id, job),
                callback=_EVENTS.get(callback) if isinstance(callback, str) else None,
                error=error if isinstance(error, str) else None,
            )
        )
    return nodes


def _edges(conn: Conn, workflow_id: str, job: str) -> tuple[Edge, ...]:
    """Every readable edge of a job, in order (read BATCH at a time)."""
    edges: list[Edge] = []
    offset = 0
    while True:
        params = {"workflow": workflow_id, "job": job, "offset": offset, "limit": BATCH}
        rows = conn.execute(Q["wf_edges_of"], params).fetchall()
        for _, parent, queue, allow_failed in rows:
            if isinstance(parent, str) and isinstance(queue, str):
                edges.append(Edge(parent=parent, queue=queue, allow_failed=allow_failed == 1))
        if len(rows) < BATCH or type(rows[-1][0]) is not int:
            return tuple(edges)
        offset = rows[-1][0] + 1


def parent_outcomes(
    conn: Conn,
    job_id: JobId,
    queue: QueueName,
    offset: int,
    limit: int,
    workflow_id: str | None = None,
) -> list[ParentOutcome]:
    """A page of the job's parents in edge order, each as its record now says. With
    `workflow_id` (the job's own workflow, as its claim said) the job's record is not
    read: the edges are keyed by workflow and child, so a wrong hint finds none."""
    if workflow_id is None:
        row = conn.execute(Q["wf_job_workflow"], {"queue": queue, "id": job_id}).fetchone()
        if row is None or not isinstance(row[0], str):
            return []
        workflow_id = row[0]
    params = {**_page(conn, workflow_id, offset, limit), "job": job_id}
    return [_outcome(*r) for r in conn.execute(Q["wf_parent_outcomes"], params)]


def output_outcomes(conn: Conn, workflow_id: str, offset: int, limit: int) -> list[ParentOutcome]:
    """A page of the workflow's outputs in order, each as its record now says; empty when
    the workflow is gone, expired or cannot be read."""
    if workflow_row(conn, workflow_id) is None:
        return []
    params = _page(conn, workflow_id, offset, limit)
    return [_outcome(*r) for r in conn.execute(Q["wf_output_outcomes"], params)]


def _page(conn: Conn, workflow_id: str, offset: int, limit: int) -> dict[str, object]:
    """The parameters of a paged read of a workflow's rows: at most BATCH from `offset`,
    records judged by the latest clock seen (as every read of a result is)."""
    return {
        "workflow": workflow_id,
        "offset": max(0, offset),
        "limit": max(0, min(limit, BATCH)),
        "clock": read_clock(conn),
    }


def _outcome(
    _position: object, parent: Any, parent_queue: Any, status: Any, result: Any, error: Any
) -> ParentOutcome:
    if not (isinstance(parent, str) and isinstance(parent_queue, str)):
        damage = (
            f"damaged workflow record: edge parent={shown(parent)}, queue={shown(parent_queue)}"
        )
        return ParentOutcome(
            job_id=str(parent), queue=str(parent_queue), status=None, result=None, error=damage
        )
    state = _STATUSES.get(status) if isinstance(status, str) else None
    return ParentOutcome(
        job_id=parent,
        queue=parent_queue,
        status=state,
        result=result if state == JobStatus.SUCCEEDED and isinstance(result, bytes) else None,
        error=error if isinstance(error, str) else None,
    )


def batch_summary(conn: Conn, workflow_id: str) -> BatchSummary | None:
    row = workflow_row(conn, workflow_id)
    if row is None:
        return None
    _, members = counts(conn, workflow_id)
    params = {"workflow": workflow_id, "limit": BATCH}
    failed_ids = tuple(
        job for (job,) in conn.execute(Q["wf_failed_list"], params) if isinstance(job, str)
    )
    return BatchSummary(
        total=row.members,
        counts=members,
        failed_ids=failed_ids,
        failed=sum(members.get(state, 0) for state in FAILED_STATES),
    )
