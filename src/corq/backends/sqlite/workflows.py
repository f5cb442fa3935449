"""The Workflows port on SQLite: graphs of jobs released inside the ends' own transactions.

Every step is one transaction: ``enqueue_workflow`` writes the graph and every job at once
(workflow_create.py), and each job's end is applied to its workflows inside the
transaction that ends it (ends.py). So there is never an outbox to settle nor a half
written workflow to tend: ``settle_workflows`` returns 0 at once, and ``tend_workflows``
only deletes what another writer could have left ``creating``. The tables are described
in schema.sql and docs/design.md ("Data model (SQLite)").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from corq.backends.base import (
    BATCH,
    BatchSummary,
    NewWorkflow,
    ParentOutcome,
    WorkflowJob,
    WorkflowNode,
    WorkflowRecord,
)
from corq.backends.sqlite import workflow_create, workflow_expiry, workflow_rows
from corq.backends.sqlite.ends import End, apply_ends, decide_callbacks, end_of, finish
from corq.backends.sqlite.producer import cancelled_expiry, check_new_job
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, advance_clock
from corq.backends.sqlite.thread import ConnectionThread, Tx
from corq.backends.sqlite.workflow_rows import workflow_row
from corq.backends.workflow_graph import check_workflow
from corq.errors import WorkflowNotFoundError
from corq.job import JobStatus
from corq.types import JobId, QueueName


class SqliteWorkflows:
    """The Workflows methods of SqliteBackend, on its connection thread."""

    _thread: ConnectionThread

    async def enqueue_workflow(self, workflow: NewWorkflow, now_ms: int | None) -> bool:
        """The graph and every job are checked before the transaction begins (no store
        needed for that); what the store knows (parents, free ids) inside it."""
        graph = check_workflow(workflow)
        for wf_job in workflow.jobs:
            check_new_job(wf_job.job)
        return await self._thread.run(
            partial(workflow_create.enqueue_workflow, workflow=workflow, graph=graph, now_ms=now_ms)
        )

    async def add_to_workflow(
        self, workflow_id: str, jobs: Sequence[WorkflowJob], now_ms: int | None
    ) -> None:
        for wf_job in jobs:
            check_new_job(wf_job.job)
        await self._thread.run(
            partial(
                workflow_create.add_to_workflow,
                workflow_id=workflow_id,
                jobs=list(jobs),
                now_ms=now_ms,
            )
        )

    async def close_workflow(self, workflow_id: str, now_ms: int | None) -> bool:
        return await self._thread.run(
            partial(close_workflow, workflow_id=workflow_id, now_ms=now_ms)
        )

    async def settle_workflows(
        self, queue: QueueName, now_ms: int | None, *, older_than_ms: int = 0
    ) -> int:
        """Nothing to settle: every end was applied in its own transaction."""
        return 0

    async def tend_workflows(self, now_ms: int | None) -> int:
        return await self._thread.run(partial(workflow_expiry.tend_workflows, now_ms=now_ms))

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        return await self._thread.run(
            partial(workflow_rows.get_workflow, workflow_id=workflow_id), Tx.READ
        )

    async def workflow_nodes(
        self, workflow_id: str, offset: int = 0, limit: int = BATCH
    ) -> list[WorkflowNode]:
        """At most BATCH jobs per call (a larger `limit` gets a full page of BATCH)."""
        return await self._thread.run(
            partial(
                workflow_rows.workflow_nodes, workflow_id=workflow_id, offset=offset, limit=limit
            ),
            Tx.READ,
        )

    async def parent_outcomes(
        self,
        job_id: JobId,
        queue: QueueName,
        offset: int = 0,
        limit: int = BATCH,
        *,
        workflow_id: str | None = None,
    ) -> list[ParentOutcome]:
        """At most BATCH parents per call (a larger `limit` gets a full page of BATCH)."""
        return await self._thread.run(
            partial(
                workflow_rows.parent_outcomes,
                job_id=job_id,
                queue=queue,
                offset=offset,
                limit=limit,
                workflow_id=workflow_id,
            ),
            Tx.READ,
        )

    async def output_outcomes(
        self, workflow_id: str, offset: int = 0, limit: int = BATCH
    ) -> list[ParentOutcome]:
        """At most BATCH outputs per call (a larger `limit` gets a full page of BATCH)."""
        return await self._thread.run(
            partial(
                workflow_rows.output_outcomes,
                workflow_id=workflow_id,
                offset=offset,
                limit=limit,
            ),
            Tx.READ,
        )

    async def batch_summary(self, workflow_id: str) -> BatchSummary | None:
        return await self._thread.run(
            partial(workflow_rows.batch_summary, workflow_id=workflow_id), Tx.READ
        )

    async def cancel_workflow(self, workflow_id: str, now_ms: int | None) -> int:
        return await self._thread.run(
            partial(cancel_workflow, workflow_id=workflow_id, now_ms=now_ms)
        )

    async def _expire_workflows(self) -> None:
        """Delete the workflows kept long enough, in transactions of BATCH rows a table."""
        while await self._thread.run(workflow_expiry.expire_workflows):
            pass


def close_workflow(conn: Conn, workflow_id: str, now_ms: int | None) -> bool:
    """Close an open batch, then decide its callbacks and its finish from the counts."""
    now, _ = advance_clock(conn, now_ms)
    row = workflow_row(conn, workflow_id)
    if row is None:
        raise WorkflowNotFoundError(f"no workflow {workflow_id!r}")
    if conn.execute(Q["wf_close"], {"workflow": workflow_id}).rowcount == 0:
        return False
    apply_ends(conn, decide_callbacks(conn, workflow_id, now), now)
    closed = workflow_row(conn, workflow_id)
    if closed is not None and closed.ended >= closed.total and closed.finished_at_ms is None:
        finish(conn, workflow_id, now)
    return True


def cancel_workflow(conn: Conn, workflow_id: str, now_ms: int | None) -> int:
    """Cancel every job of the workflow that has not started (BATCH a statement), then
    apply their ends: so each such job ends cancelled, not upstream_failed by a parent
    cancelled first, and the workflows watching them see their dependents fail. Returns
    how many it cancelled."""
    now, _ = advance_clock(conn, now_ms)
    if workflow_row(conn, workflow_id) is None:
        raise WorkflowNotFoundError(f"no workflow {workflow_id!r}")
    (last,) = conn.execute(Q["wf_last_position"], {"workflow": workflow_id}).fetchone()
    expires = cancelled_expiry(conn, now)
    ends: list[End] = []
    for offset in range(0, last + 1 if type(last) is int else 0, BATCH):
        params = {
            "workflow": workflow_id,
            "offset": offset,
            "limit": BATCH,
            "now": now,
            "expires_at_ms": expires,
        }
        for job_id, queue, *row in conn.execute(Q["wf_cancel_page"], params).fetchall():
            ends.append(end_of(job_id, queue, JobStatus.CANCELLED, tuple(row)))
    apply_ends(conn, ends, now)
    return len(ends)
