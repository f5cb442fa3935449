"""Reading workflows (the Workflows port, with ``workflows.py`` and ``settle.py``): a
workflow's record, its nodes, a job's parents' outcomes, its outputs' outcomes, a batch's
summary.

Each read is a few round trips whatever the workflow's size: one slot's keys, then the job
records it names read with one pipelined HMGET per record (only the fields needed, never
a payload), a page at a time. Records are read without ever failing: one that is gone reads
as status None, one that is not a hash as dead, an unknown status as dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis

from corq.backends.base import (
    BATCH,
    BatchSummary,
    Edge,
    ParentOutcome,
    ResultShape,
    WorkflowNode,
    WorkflowRecord,
    damaged_error,
)
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.replies import decode_id, text
from corq.backends.redis.workflow_replies import unpack_edge, unpack_node, unpack_outputs
from corq.job import TERMINAL_STATES, JobStatus
from corq.types import JobId

_STATES = tuple(state.value for state in TERMINAL_STATES)
#: How a record that is not a hash reads (its status dead).
_NOT_A_HASH = damaged_error("the key is not a job hash")


def _status(raw: bytes | None) -> JobStatus | None:
    if raw is None:
        return None
    try:
        return JobStatus(text(raw))
    except ValueError:
        return JobStatus.DEAD


def _int(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


async def read_fields(
    client: Redis, keys: Sequence[str], fields: Sequence[str]
) -> list[tuple[bool, list[bytes | None]]]:
    """Per record key: (is a hash or absent, the fields' values), in one round trip."""
    if not keys:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, list(fields))
        replies = await pipe.execute(raise_on_error=False)
    out: list[tuple[bool, list[bytes | None]]] = []
    for reply in replies:
        if isinstance(reply, BaseException):
            if "WRONGTYPE" not in str(reply):
                raise reply
            out.append((False, [None] * len(fields)))
        else:
            out.append((True, cast(list[bytes | None], reply)))
    return out


class RedisWorkflowReads(RedisContext):
    """What a workflow holds, read."""

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        with broker_errors("get_workflow"):
            raw: dict[Any, Any] = await self._redis.hgetall(self._keys.workflow(workflow_id).meta)
        meta = {text(k): v for k, v in raw.items()}
        if "state" not in meta:
            return None
        counts = {s: n for s in _STATES if (n := _int(meta.get(f"c:{s}"))) > 0}
        finished = meta.get("finished_at_ms")
        failure = meta.get("first_failure")
        try:
            shape = ResultShape(text(meta.get("shape", b"one")))
        except ValueError:
            shape = ResultShape.ONE
        return WorkflowRecord(
            id=workflow_id,
            kind=text(meta.get("kind", b"")),
            total=_int(meta.get("total")),
            ended=_int(meta.get("ended")),
            counts=counts,
            open=meta.get("open") == b"1",
            creating=meta["state"] == b"creating",
            outputs=unpack_outputs(meta.get("outputs")),
            shape=shape,
            created_at_ms=_int(meta.get("created_at_ms")),
            finished_at_ms=None if finished is None else _int(finished),
            first_failure=None
            if failure is None
            else (decode_id(failure), text(meta.get("first_error", b""))),
        )

    async def workflow_nodes(
        self, workflow_id: str, offset: int = 0, limit: int = BATCH
    ) -> list[WorkflowNode]:
        if limit <= 0:
            return []
        wk = self._keys.workflow(workflow_id)
        with broker_errors("workflow_nodes"):
            raw_ids = await self._redis.lrange(wk.order, max(0, offset), max(0, offset) + limit - 1)
            if not raw_ids:
                return []
            ids = [decode_id(i) for i in raw_ids]
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hmget(wk.nodes, ids)
                for job_id in ids:
                    pipe.lrange(wk.parents(job_id), 0, -1)
                replies = await pipe.execute()
            nodes = [unpack_node(raw) for raw in replies[0]]
            keys = [
                self._q(node.queue).job(job_id) if node else wk.nodes
                for job_id, node in zip(ids, nodes, strict=True)
            ]
            records = await read_fields(self._redis, keys, ["status", "error"])
        out = []
        for at, (job_id, node) in enumerate(zip(ids, nodes, strict=True)):
            if node is None:
                continue
            is_hash, (status, error) = records[at]
            out.append(
                WorkflowNode(
                    job_id=job_id,
                    queue=node.queue,
                    task=node.task,
                    status=_status(status) if is_hash else JobStatus.DEAD,
                    parents=_edges(replies[1 + at]),
                    callback=node.callback,
                    error=(None if error is None else text(error)) if is_hash else _NOT_A_HASH,
                )
            )
        return out

    async def parent_outcomes(
        self,
        job_id: JobId,
        queue: str,
        offset: int = 0,
        limit: int = BATCH,
        *,
        workflow_id: str | None = None,
    ) -> list[ParentOutcome]:
        if limit <= 0:
            return []
        with broker_errors("parent_outcomes"):
            if workflow_id is None:
                ((is_hash, (found,)),) = await read_fields(
                    self._redis, [self._q(queue).job(job_id)], ["workflow"]
                )
                if not is_hash or found is None:
                    return []
                workflow_id = text(found)
            wk = self._keys.workflow(workflow_id)
            start = max(0, offset)
            edges = _edges(await self._redis.lrange(wk.parents(job_id), start, start + limit - 1))
            return await self._outcomes([(e.parent, e.queue) for e in edges])

    async def output_outcomes(
        self, workflow_id: str, offset: int = 0, limit: int = BATCH
    ) -> list[ParentOutcome]:
        if limit <= 0:
            return []
        with broker_errors("output_outcomes"):
            raw = await self._redis.hget(self._keys.workflow(workflow_id).meta, "outputs")
            start = max(0, offset)
            return await self._outcomes(unpack_outputs(raw)[start : start + limit])

    async def _outcomes(self, jobs: Sequence[tuple[JobId, str]]) -> list[ParentOutcome]:
        """Each job (id, queue) as its record now says, in one round trip."""
        keys = [self._q(queue).job(job_id) for job_id, queue in jobs]
        records = await read_fields(self._redis, keys, ["status", "result", "error"])
        return [_outcome(job, record) for job, record in zip(jobs, records, strict=True)]

    async def batch_summary(self, workflow_id: str) -> BatchSummary | None:
        wk = self._keys.workflow(workflow_id)
        fields = ["state", "members", "m:failed", *(f"m:{s}" for s in _STATES)]
        with broker_errors("batch_summary"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hmget(wk.meta, fields)
                pipe.lrange(wk.failed, 0, BATCH - 1)
                values, failed_ids = await pipe.execute()
        if values[0] is None:
            return None
        counts = {s: n for s, raw in zip(_STATES, values[3:], strict=True) if (n := _int(raw)) > 0}
        return BatchSummary(
            total=_int(values[1]),
            counts=counts,
            failed_ids=tuple(decode_id(i) for i in failed_ids),
            failed=_int(values[2]),
        )


def _edges(raw: Sequence[bytes | str]) -> tuple[Edge, ...]:
    return tuple(edge for entry in raw if (edge := unpack_edge(entry)) is not None)


def _outcome(job: tuple[JobId, str], record: tuple[bool, list[bytes | None]]) -> ParentOutcome:
    job_id, queue = job
    is_hash, (status, result, error) = record
    if not is_hash:
        return ParentOutcome(
            job_id=job_id,
            queue=queue,
            status=JobStatus.DEAD,
            result=None,
            error=_NOT_A_HASH,
        )
    job_status = _status(status)
    return ParentOutcome(
        job_id=job_id,
        queue=queue,
        status=job_status,
        result=result if job_status is JobStatus.SUCCEEDED else None,
        error=None if error is None else text(error),
    )
