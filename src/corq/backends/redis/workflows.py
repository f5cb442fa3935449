"""Writing workflows (the Workflows port, with ``settle.py`` and ``workflow_reads.py``):
create, add to an open batch, close, cancel.

A workflow spans its own slot and its jobs' queues, so a creation is several steps, each
one atomic in one slot, in an order that never lets a job run early (see keys.py): the
tend index first, then the graph (state creating), the jobs as waiting records, the
watches of external parents, the open step, and the release of what it decided. A crash
anywhere leaves either nothing runnable (tend_workflows deletes it after the grace) or an
open workflow whose decisions the tend index has maintenance release.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corq.backends.base import (
    BATCH,
    CANCELLED_TTL_MS,
    WORKFLOW_CREATE_GRACE_MS,
    NewWorkflow,
    WorkflowJob,
)
from corq.backends.redis.calls import ScriptCall, batches, by_queue, chunks
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.producer import check_new_job
from corq.backends.redis.replies import decode_id
from corq.backends.redis.settle import (
    RELEASE_GRACE_MS,
    RedisWorkflowSteps,
    new_token,
    tend_member,
)
from corq.backends.redis.workflow_replies import pack_job, pack_outputs, unpack_node
from corq.backends.workflow_graph import CheckedGraph, check_jobs, check_workflow
from corq.errors import WorkflowError, WorkflowNotFoundError
from corq.types import JobId, QueueName

#: EXISTS commands per pipeline round trip when checking ids.
_CHECKS_PER_TRIP = 10_000


class RedisWorkflows(RedisWorkflowSteps):
    """Workflows as producers and operators write them."""

    async def enqueue_workflow(self, workflow: NewWorkflow, now_ms: int | None) -> bool:
        graph = check_workflow(workflow)
        for wf_job in workflow.jobs:
            check_new_job(wf_job.job)
        wk = self._wf(workflow.id)
        with broker_errors("enqueue_workflow"):
            state = await self._redis.hget(wk.meta, "state")
            if state is not None and state != b"creating":
                # Exists: release what a creation that died after opening it left decided.
                await self._settle_queues(await self._release_todo(workflow.id, now_ms), now_ms)
                return False
            fresh = state is None
            if fresh:
                # A job id taken already is found by the write itself (see _write).
                await self._check_parents(workflow.id, graph.outside)
            queues = list(dict.fromkeys(j.job.queue for j in workflow.jobs))
            await self._registry.touch(self._scripts, queues, workflow.created_at_ms)
            member = tend_member("create", workflow.id)
            if not await self._write(workflow, graph, member, fresh, now_ms):
                return False
            await self._open(workflow.id, graph.outside, member, now_ms)
            return True

    async def _write(
        self,
        workflow: NewWorkflow,
        graph: CheckedGraph,
        member: str,
        fresh: bool,
        now_ms: int | None,
    ) -> bool:
        """The tend mark, the graph and the waiting records, in one round trip; False when
        another creation of the same id got there first. A job id that is taken already is
        found here, by the record it could not write: the workflow, still creating and
        nothing of it runnable, is dropped again and refused (so a refusal costs one write
        and its undoing, not a read of every id beforehand)."""
        wk = self._wf(workflow.id)
        queue_of = {j.job.id: j.job.queue for j in workflow.jobs}
        outputs = pack_outputs([(o, queue_of[o]) for o in workflow.outputs])
        calls: list[ScriptCall[Any]] = [
            self._mark(member, WORKFLOW_CREATE_GRACE_MS, now_ms),
            self._scripts.create_workflow(
                wk,
                kind=workflow.kind,
                shape=workflow.shape.value,
                outputs=outputs,
                created_at_ms=workflow.created_at_ms,
                open=workflow.open,
            ),
        ]
        calls += self._node_calls(workflow.id, workflow.jobs, graph, token=None)
        waiting = self._waiting_calls(workflow.jobs)
        replies = await self._scripts.run_all([*calls, *waiting])
        if fresh and replies[1] != "new":
            return False  # a concurrent creation of the same id: it is that one's
        flags = [flag for reply in replies[len(calls) :] for flag in reply]
        taken = self._taken(workflow.jobs, flags)
        if fresh and taken is not None:
            await self._drop_creating(workflow.id)
            await self._unmark(member)
            raise WorkflowError(f"workflow {workflow.id}: job {taken!r} exists already")
        return True

    async def _open(
        self,
        workflow_id: str,
        outside: Sequence[tuple[JobId, QueueName]],
        member: str,
        now_ms: int | None,
    ) -> None:
        """Watch the external parents, take in those ended already, open the workflow and
        release what it decided."""
        wk = self._wf(workflow_id)
        try:
            ends = await self._watch(workflow_id, outside)
        except WorkflowError:
            await self._drop_creating(workflow_id)
            await self._unmark(member)
            raise
        calls: list[ScriptCall[Any]] = [
            self._scripts.apply_workflow_ends(wk, ends=chunk, now_ms=now_ms)
            for chunk in chunks(ends, BATCH)
        ]
        calls.append(self._scripts.open_workflow(wk, now_ms=now_ms))
        step = (await self._scripts.run_all(calls))[-1]
        noted = await self._release({workflow_id: step.todo}, now_ms)
        await self._settle_queues(noted, now_ms)
        await self._unmark(member)

    async def _watch(
        self, workflow_id: str, outside: Sequence[tuple[JobId, QueueName]]
    ) -> list[tuple[JobId, str, str]]:
        """Watch each external parent (one round trip); returns the ends of those that had
        ended. A parent gone since it was checked raises WorkflowError."""
        groups = by_queue(outside, lambda parent: parent[1])
        calls, asked = [], []
        for queue, indices in groups.items():
            for chunk in chunks(indices, BATCH):
                ids = [outside[i][0] for i in chunk]
                calls.append(
                    self._scripts.watch_jobs(self._q(queue), workflow_id=workflow_id, job_ids=ids)
                )
                asked.append((queue, ids))
        ends: list[tuple[JobId, str, str]] = []
        for (queue, ids), states in zip(asked, await self._scripts.run_all(calls), strict=True):
            for job_id, (state, error) in zip(ids, states, strict=True):
                if state == "":
                    raise WorkflowError(
                        f"workflow {workflow_id}: parent {job_id!r} is not a job of queue {queue!r}"
                    )
                if state != "waiting":
                    ends.append((job_id, state, error))
        return ends

    # -- checks and packing ---------------------------------------------------------------
    async def _exists(self, keys: Sequence[str]) -> list[bool]:
        found: list[bool] = []
        for chunk in chunks(keys, _CHECKS_PER_TRIP):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.exists(key)
                found += [bool(n) for n in await pipe.execute()]
        return found

    async def _check_parents(
        self, workflow_id: str, outside: Sequence[tuple[JobId, QueueName]]
    ) -> None:
        keys = [self._q(queue).job(job_id) for job_id, queue in outside]
        for (job_id, queue), found in zip(outside, await self._exists(keys), strict=True):
            if not found:
                raise WorkflowError(
                    f"workflow {workflow_id}: parent {job_id!r} is not a job of queue {queue!r}"
                )

    def _node_calls(
        self,
        workflow_id: str,
        jobs: Sequence[WorkflowJob],
        graph: CheckedGraph,
        token: str | None,
    ) -> list[ScriptCall[int]]:
        outside = {job_id for job_id, _ in graph.outside}
        packed = [
            pack_job(
                j.job.id,
                (j.job.queue, j.job.task, j.callback),
                [
                    (e.parent, e.queue, int(e.allow_failed), int(e.parent in outside))
                    for e in j.parents
                ],
            )
            for j in jobs
        ]
        wk = self._wf(workflow_id)
        return [
            self._scripts.add_workflow_nodes(wk, jobs=[packed[i] for i in chunk], token=token)
            for chunk in batches(list(range(len(packed))), lambda i: len(packed[i]))
        ]

    def _waiting_calls(self, jobs: Sequence[WorkflowJob]) -> list[ScriptCall[list[bool]]]:
        groups = by_queue(jobs, lambda j: j.job.queue)
        calls = []
        for queue, indices in groups.items():
            for chunk in batches(indices, lambda i: len(jobs[i].job.payload)):
                batch = [jobs[i].job for i in chunk]
                calls.append(self._scripts.enqueue_waiting_jobs(self._q(queue), jobs=batch))
        return calls

    @staticmethod
    def _taken(jobs: Sequence[WorkflowJob], flags: Sequence[bool]) -> JobId | None:
        """The first job whose record was not written (its id taken meanwhile), in the
        order the waiting calls wrote them."""
        groups = by_queue(jobs, lambda j: j.job.queue)
        order = [i for indices in groups.values() for i in indices]
        for i, flag in zip(order, flags, strict=True):
            if not flag:
                return jobs[i].job.id
        return None

    # -- open batches ---------------------------------------------------------------------
    async def add_to_workflow(
        self, workflow_id: str, jobs: Sequence[WorkflowJob], now_ms: int | None
    ) -> None:
        wk = self._wf(workflow_id)
        with broker_errors("add_to_workflow"):
            state, is_open, total = await self._redis.hmget(wk.meta, ["state", "open", "total"])
            if state is None:
                raise WorkflowNotFoundError(f"no workflow {workflow_id!r}")
            if state != b"live" or is_open != b"1":
                raise WorkflowError(f"workflow {workflow_id} is not an open batch")
            new = await self._new_jobs(workflow_id, jobs)
            if not new:
                return
            graph = check_jobs(workflow_id, new, existing=int(total or 0))
            for wf_job in new:
                check_new_job(wf_job.job)
            external = await self._external(workflow_id, graph)
            await self._check_parents(workflow_id, external)
            await self._registry.touch(
                self._scripts, list(dict.fromkeys(j.job.queue for j in new)), None
            )
            await self._add(workflow_id, new, graph, external, now_ms)

    async def _new_jobs(self, workflow_id: str, jobs: Sequence[WorkflowJob]) -> list[WorkflowJob]:
        """The jobs not among the workflow's nodes yet (a retried call adds nothing twice)."""
        if not jobs:
            return []
        raw = await self._redis.hmget(self._wf(workflow_id).nodes, [j.job.id for j in jobs])
        return [j for j, node in zip(jobs, raw, strict=True) if node is None]

    async def _external(
        self, workflow_id: str, graph: CheckedGraph
    ) -> list[tuple[JobId, QueueName]]:
        """The parents outside the addition that are not jobs of the workflow either; a job
        of the workflow named under another queue is refused."""
        if not graph.outside:
            return []
        ids = [job_id for job_id, _ in graph.outside]
        raw = await self._redis.hmget(self._wf(workflow_id).nodes, ids)
        external = []
        for (job_id, queue), value in zip(graph.outside, raw, strict=True):
            node = unpack_node(value)
            if node is None:
                external.append((job_id, queue))
            elif node.queue != queue:
                raise WorkflowError(
                    f"workflow {workflow_id}: parent {job_id!r} is named in queue {queue!r}, "
                    f"but it is in queue {node.queue!r}"
                )
        return external

    async def _add(
        self,
        workflow_id: str,
        jobs: Sequence[WorkflowJob],
        graph: CheckedGraph,
        external: Sequence[tuple[JobId, QueueName]],
        now_ms: int | None,
    ) -> None:
        token = new_token()
        member = tend_member(f"add.{token}", workflow_id)
        wk = self._wf(workflow_id)
        outside = CheckedGraph(outside=tuple(external), children=graph.children)
        calls: list[ScriptCall[Any]] = [self._mark(member, WORKFLOW_CREATE_GRACE_MS, now_ms)]
        calls += self._node_calls(workflow_id, jobs, outside, token=token)
        written = len(calls)
        replies = await self._scripts.run_all([*calls, *self._waiting_calls(jobs)])
        if any(reply == -1 for reply in replies[1:written]):
            await self._drop_addition(workflow_id, token)
            await self._unmark(member)
            raise WorkflowError(f"workflow {workflow_id} is not an open batch")
        taken = self._taken(jobs, [flag for reply in replies[written:] for flag in reply])
        if taken is not None:
            await self._drop_addition(workflow_id, token)
            await self._unmark(member)
            raise WorkflowError(f"workflow {workflow_id}: job {taken!r} exists already")
        try:
            ends = await self._watch(workflow_id, external)
        except WorkflowError:
            await self._drop_addition(workflow_id, token)
            await self._unmark(member)
            raise
        commit: list[ScriptCall[Any]] = [
            self._scripts.apply_workflow_ends(wk, ends=chunk, now_ms=now_ms)
            for chunk in chunks(ends, BATCH)
        ]
        commit.append(self._scripts.commit_workflow_addition(wk, token=token, now_ms=now_ms))
        committed, step = (await self._scripts.run_all(commit))[-1]
        if not committed:
            await self._unmark(member)
            raise WorkflowError(f"workflow {workflow_id}: the addition was dropped (too slow)")
        await self._settle_queues(await self._release({workflow_id: step.todo}, now_ms), now_ms)
        await self._unmark(member)

    async def close_workflow(self, workflow_id: str, now_ms: int | None) -> bool:
        wk = self._wf(workflow_id)
        member = tend_member(f"release.{new_token()}", workflow_id)
        with broker_errors("close_workflow"):
            calls: list[ScriptCall[Any]] = [
                self._mark(member, RELEASE_GRACE_MS, now_ms),
                self._scripts.close_workflow(wk, now_ms=now_ms),
            ]
            closed, step = (await self._scripts.run_all(calls))[1]
            if step.state == "gone":
                await self._unmark(member)
                raise WorkflowNotFoundError(f"no workflow {workflow_id!r}")
            await self._settle_queues(await self._release({workflow_id: step.todo}, now_ms), now_ms)
            await self._unmark(member)
            return bool(closed)

    async def cancel_workflow(self, workflow_id: str, now_ms: int | None) -> int:
        wk = self._wf(workflow_id)
        with broker_errors("cancel_workflow"):
            if await self._redis.exists(wk.meta) == 0:
                raise WorkflowNotFoundError(f"no workflow {workflow_id!r}")
            member = tend_member(f"release.{new_token()}", workflow_id)
            await self._scripts.run(self._mark(member, RELEASE_GRACE_MS, now_ms))
            cancelled, queues = 0, set()
            offset = 0
            while ids := await self._redis.lrange(wk.order, offset, offset + BATCH - 1):
                offset += BATCH
                job_ids = [decode_id(i) for i in ids]
                nodes = [unpack_node(raw) for raw in await self._redis.hmget(wk.nodes, job_ids)]
                calls = [
                    self._scripts.cancel_job(
                        self._q(node.queue), job_id=job_id, now_ms=now_ms, ttl_ms=CANCELLED_TTL_MS
                    )
                    for job_id, node in zip(job_ids, nodes, strict=True)
                    if node is not None
                ]
                results = await self._scripts.run_all(calls)
                cancelled += sum(results)
                queues |= {node.queue for node in nodes if node is not None}
            await self._settle_queues(queues, now_ms)
            await self._settle_queues(await self._release_todo(workflow_id, now_ms), now_ms)
            await self._unmark(member)
            return cancelled
