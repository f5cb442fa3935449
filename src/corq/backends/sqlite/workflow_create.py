"""Writing a workflow's graph and jobs: enqueue_workflow and add_to_workflow, each one
transaction (so nothing of it is visible, let alone runnable, before the commit).

The graph itself is checked first, in pure code shared with the Redis broker
(corq/backends/workflow_graph.py); what only the store knows is checked here, inside the
transaction: each parent outside the call exists (and how it ended, when it has), each job
id is free. Any refusal raises before the commit, so the transaction is rolled back whole.

Roots (and jobs whose every parent already succeeded) are written ready at once; the other
jobs ``waiting``. A parent that had already ended is taken in at once: a satisfied edge is
not pending, an unsatisfied one ends the child upstream_failed (through ends.py, so its
descendants follow). A parent that has not ended is watched: its record gets ``notify``,
and its end finds the edge through the ``workflow_dependents`` index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from corq.backends.base import NewJob, NewWorkflow, WorkflowJob
from corq.backends.sqlite.columns import NEW_COLUMNS
from corq.backends.sqlite.ends import apply_ends, decide_callbacks, fail_waiting, upstream_error
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock, take_numbers
from corq.backends.sqlite.workflow_expiry import drop_workflow
from corq.backends.sqlite.workflow_rows import workflow_row
from corq.backends.workflow_graph import CheckedGraph, check_jobs
from corq.errors import WorkflowError, WorkflowNotFoundError
from corq.job import TERMINAL_STATES, JobStatus
from corq.types import JobId, QueueName

#: A parent outside the call: (id, queue) -> its terminal state and error, None while it
#: has not ended (it is watched), or _EARLIER for a job of the batch not ended yet.
Outside = dict[tuple[JobId, QueueName], tuple[JobStatus, object] | str | None]
_EARLIER = "earlier"


@dataclass(slots=True)
class _Plan:
    """What one call writes, worked out before the first write."""

    workflow_id: str
    #: Position of the call's first job in the workflow.
    first_position: int
    outside: Outside
    #: Each job, and whether it is ready at once (else waiting).
    jobs: list[tuple[NewJob, bool]] = field(default_factory=list)
    nodes: list[dict[str, object]] = field(default_factory=list)
    edges: list[dict[str, object]] = field(default_factory=list)
    #: Children failed at once by a parent that had ended: (child, the cause's message).
    failed: list[tuple[JobId, str]] = field(default_factory=list)


def enqueue_workflow(
    conn: Conn, workflow: NewWorkflow, graph: CheckedGraph, now_ms: int | None
) -> bool:
    """Write a whole checked workflow; False (nothing written) when its id exists."""
    now, clock = advance_clock(conn, now_ms)
    if conn.execute(Q["wf_get"], {"workflow": workflow.id}).fetchone() is not None:
        if workflow_row(conn, workflow.id) is not None or not _expired(conn, workflow.id, clock):
            return False
        drop_workflow(conn, workflow.id)  # expired: its id is free again
    outside = _outside(conn, workflow.id, graph.outside, clock)
    plan = _plan(conn, workflow.id, workflow.jobs, outside, first_position=0)
    members = sum(1 for j in workflow.jobs if j.callback is None)
    queues = {j.job.id: j.job.queue for j in workflow.jobs}
    conn.execute(
        Q["wf_insert"],
        {
            "workflow": workflow.id,
            "kind": workflow.kind,
            "state": "open" if workflow.open else "closed",
            "shape": workflow.shape.value,
            "total": len(workflow.jobs),
            "members": members,
            "created_at_ms": workflow.created_at_ms,
        },
    )
    conn.executemany(
        Q["wf_output_insert"],
        [
            {"workflow": workflow.id, "position": n, "job": job, "queue": queues[job]}
            for n, job in enumerate(workflow.outputs)
        ],
    )
    _write(conn, plan, now, clock)
    if not workflow.open:
        apply_ends(conn, decide_callbacks(conn, workflow.id, now), now)
    return True


def _expired(conn: Conn, workflow_id: str, clock: int) -> bool:
    row = conn.execute(Q["wf_get"], {"workflow": workflow_id}).fetchone()
    return row is not None and type(row[12]) is int and row[12] <= clock


def add_to_workflow(
    conn: Conn, workflow_id: str, jobs: Sequence[WorkflowJob], now_ms: int | None
) -> None:
    """Add jobs to an open batch; jobs already in it (a retried call) are left as they
    are."""
    now, clock = advance_clock(conn, now_ms)
    row = workflow_row(conn, workflow_id)
    if row is None:
        raise WorkflowNotFoundError(f"no workflow {workflow_id!r}")
    if row.state != "open":
        raise WorkflowError(f"workflow {workflow_id}: it is closed; no jobs can be added")
    new = [j for j in jobs if not _in_graph(conn, workflow_id, j.job.id)]
    if not new:
        return
    graph = check_jobs(workflow_id, new, existing=row.total)
    outside = _outside(conn, workflow_id, graph.outside, clock, earlier=True)
    plan = _plan(conn, workflow_id, new, outside, first_position=row.total)
    members = sum(1 for j in new if j.callback is None)
    conn.execute(
        Q["wf_grow"],
        {
            "workflow": workflow_id,
            "total_now": row.total,
            "total": len(new),
            "members_now": row.members,
            "members": members,
        },
    )
    _write(conn, plan, now, clock)


def _in_graph(conn: Conn, workflow_id: str, job_id: JobId) -> bool:
    return (
        conn.execute(Q["wf_node_get"], {"workflow": workflow_id, "job": job_id}).fetchone()
        is not None
    )


def _outside(
    conn: Conn,
    workflow_id: str,
    parents: Sequence[tuple[JobId, QueueName]],
    clock: int,
    *,
    earlier: bool = False,
) -> Outside:
    """How each parent outside the call stands; refuses one that does not exist in its
    queue (with `earlier`, a job of the batch named under another queue too)."""
    found: Outside = {}
    for parent, queue in parents:
        known = None
        if earlier:
            node = conn.execute(Q["wf_node_get"], {"workflow": workflow_id, "job": parent})
            known = node.fetchone()
            if known is not None and known[1] != queue:
                raise WorkflowError(
                    f"workflow {workflow_id}: parent {parent!r} is in queue {known[1]!r}, "
                    f"not {queue!r}"
                )
        row = conn.execute(
            Q["wf_parent_state"], {"queue": queue, "id": parent, "clock": clock}
        ).fetchone()
        if row is None:
            raise WorkflowError(
                f"workflow {workflow_id}: parent {parent!r} does not exist in queue {queue!r}"
            )
        status, error = row
        if status in TERMINAL_STATES:
            found[(parent, queue)] = (JobStatus(status), error)
        else:  # an earlier job of the batch needs no watch: its end finds the edge anyway
            found[(parent, queue)] = None if known is None else _EARLIER
    return found


def _plan(
    conn: Conn,
    workflow_id: str,
    jobs: Sequence[WorkflowJob],
    outside: Outside,
    *,
    first_position: int,
) -> _Plan:
    """The rows to write: each job ready at once when nothing is pending for it."""
    plan = _Plan(workflow_id, first_position, outside)
    for position, wf_job in enumerate(jobs, start=first_position):
        pending, failure = len(wf_job.parents), None
        for edge_position, edge in enumerate(wf_job.parents):
            stands = outside.get((edge.parent, edge.queue))
            ended = None if isinstance(stands, str) else stands
            plan.edges.append(
                {
                    "workflow": workflow_id,
                    "child": wf_job.job.id,
                    "position": edge_position,
                    "parent": edge.parent,
                    "parent_queue": edge.queue,
                    "allow_failed": int(edge.allow_failed),
                    "applied": int(ended is not None),
                }
            )
            if ended is None:
                continue
            pending -= 1
            state, error = ended
            if state != JobStatus.SUCCEEDED and not edge.allow_failed and failure is None:
                failure = upstream_error(edge.parent, state, error)
        ready = pending == 0 and failure is None and wf_job.callback is None
        plan.jobs.append((wf_job.job, ready))
        plan.nodes.append(
            {
                "workflow": workflow_id,
                "job": wf_job.job.id,
                "queue": wf_job.job.queue,
                "task": wf_job.job.task,
                "callback": None if wf_job.callback is None else wf_job.callback.value,
                "position": position,
                "pending": pending,
                "decided": int(ready),
            }
        )
        if failure is not None:
            plan.failed.append((wf_job.job.id, failure))
    return plan


def _write(conn: Conn, plan: _Plan, now_ms: int, clock: int) -> None:
    """Write the plan's jobs, graph and watches, then fail at once the children of parents
    that had ended badly (their descendants follow)."""
    for queue in dict.fromkeys(job.queue for job, _ in plan.jobs):
        conn.execute(Q["queue_touch"], {"queue": queue, "now": now_ms})
    base = take_numbers(conn, len(plan.jobs))
    rows = [
        _job_params(job, ready, base + offset, clock)
        for offset, (job, ready) in enumerate(plan.jobs, start=1)
    ]
    if conn.executemany(Q["job_insert"], rows).rowcount != len(rows):
        _refuse_existing(conn, plan, base)
    conn.executemany(Q["wf_node_insert"], plan.nodes)
    conn.executemany(Q["wf_edge_insert"], plan.edges)
    for (parent, queue), ended in plan.outside.items():
        if ended is None:
            conn.execute(Q["wf_watch"], {"queue": queue, "id": parent})
    failed = [
        fail_waiting(conn, plan.workflow_id, child, JobStatus.UPSTREAM_FAILED, error, now_ms)
        for child, error in plan.failed
    ]
    apply_ends(conn, [end for end in failed if end is not None], now_ms)


def _job_params(job: NewJob, ready: bool, seq: int, clock: int) -> dict[str, object]:
    """job_insert's parameters ({new_values}, the status of its lane, its seq)."""
    params: dict[str, object] = {name: getattr(job, name) for name in NEW_COLUMNS}
    if not ready:
        params["status"] = JobStatus.WAITING
    elif job.run_at_ms > job.enqueued_at_ms:
        params["status"] = JobStatus.SCHEDULED
    else:
        params["status"] = JobStatus.QUEUED
    params["seq"] = seq
    params["clock"] = clock
    return params


def _refuse_existing(conn: Conn, plan: _Plan, base: int) -> None:
    """Some job id of the call existed already (its insert changed nothing, so its row
    has another seq than the one handed out): name the first such job (the transaction is
    then rolled back)."""
    for offset, (job, _) in enumerate(plan.jobs, start=1):
        row = conn.execute(Q["wf_job_seq"], {"queue": job.queue, "id": job.id}).fetchone()
        if row is None or row[0] != base + offset:
            raise WorkflowError(
                f"workflow {plan.workflow_id}: job {job.id!r} exists already in queue {job.queue!r}"
            )
    raise WorkflowError(f"workflow {plan.workflow_id}: a job id exists already")
