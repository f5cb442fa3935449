"""Settling workflows (the Workflows port, with ``workflows.py`` and ``workflow_reads.py``):
ends taken from a queue's outbox into their workflows, what those decide released, and the
maintenance that finishes or drops what a dead writer left half-done.

One settle round over a batch of outbox entries is four round trips whatever the batch
holds: read the entries (one script in the queue's slot), apply them (one script per
workflow, all pipelined), release the decisions (one script per queue and 1,000 jobs,
pipelined), then clear the todo entries released and the outbox entries settled (one
pipeline). Each step is idempotent, so a settle that dies after any of them is finished by
the next one to read the outbox (see base.Workflows).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from corq.backends.base import BATCH, damaged_error
from corq.backends.redis.calls import ScriptCall, chunks
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.keys import WorkflowKeys
from corq.backends.redis.replies import decode_id, text
from corq.backends.redis.workflow_replies import Decision, OutboxEntry, unpack_node
from corq.job import TERMINAL_STATES
from corq.types import JobId, QueueName

#: How long a release step (of a create, a close, a cancel) has before maintenance repeats
#: it for a writer that may have died: long enough never to race a live one.
RELEASE_GRACE_MS = 10_000
#: Rounds of settling queues where releases noted more ends (watched jobs failed in turn).
SETTLE_ROUNDS = 10
#: Outbox batches one settle of a queue takes at most (the rest waits for the next one).
SETTLE_BATCHES = 100
_TERMINAL = frozenset(state.value for state in TERMINAL_STATES)
#: The end taken in for a decided job whose record could not be read when released.
UNREADABLE_ERROR = damaged_error("the record is gone or not a hash")

#: Ends per workflow: (job id, as stored or given, terminal state, error).
Ends = dict[str, list[tuple[JobId | bytes, str, str]]]


def tend_member(operation: str, workflow_id: str) -> str:
    """A member of the tend index: ``<operation>/<workflow id>`` (operations hold no '/')."""
    return f"{operation}/{workflow_id}"


def new_token() -> str:
    return uuid.uuid4().hex[:16]


class RedisWorkflowSteps(RedisContext):
    """The steps every workflow operation is built of, settling and maintenance."""

    def _wf(self, workflow_id: str) -> WorkflowKeys:
        return self._keys.workflow(workflow_id)

    # -- marks in the tend index ----------------------------------------------------------
    def _mark(self, member: str, delay_ms: int, now_ms: int | None) -> ScriptCall[int]:
        return self._scripts.mark_workflows_due(
            self._keys.tend, members=[member], delay_ms=delay_ms, now_ms=now_ms
        )

    async def _unmark(self, member: str) -> None:
        await self._redis.zrem(self._keys.tend, member)

    # -- apply and release ----------------------------------------------------------------
    async def _apply(
        self, ends: Ends, now_ms: int | None, then: Sequence[ScriptCall[Any]] = (), depth: int = 0
    ) -> set[QueueName]:
        """Apply `ends` (per workflow), release what the workflows decide, then run `then`
        (with the clearing of the todo, in one round trip); returns the queues whose outbox
        got new ends meanwhile."""
        calls = [
            self._scripts.apply_workflow_ends(self._wf(wf), ends=chunk, now_ms=now_ms)
            for wf, wf_ends in ends.items()
            for chunk in chunks(wf_ends, BATCH)
        ]
        owners = [wf for wf, wf_ends in ends.items() for _ in chunks(wf_ends, BATCH)]
        decided: dict[str, dict[bytes, Decision]] = {}
        for wf, step in zip(owners, await self._scripts.run_all(calls), strict=True):
            decided.setdefault(wf, {}).update((d.job_id, d) for d in step.todo)
        todo = {wf: list(decisions.values()) for wf, decisions in decided.items()}
        return await self._release(todo, now_ms, then, depth)

    async def _release(
        self,
        decided: Mapping[str, Sequence[Decision]],
        now_ms: int | None,
        then: Sequence[ScriptCall[Any]] = (),
        depth: int = 0,
    ) -> set[QueueName]:
        """Apply decisions in their jobs' queues (a job whose record cannot be read is taken
        in as dead), then clear them from the todo and run `then`, in one round trip.
        Returns the queues with new ends."""
        by_queue: dict[QueueName, list[tuple[JobId | bytes, str, bytes]]] = {}
        for wf, decisions in decided.items():
            for d in decisions:
                by_queue.setdefault(d.queue, []).append((d.job_id, wf, d.value))
        calls, queues = [], []
        for queue, jobs in by_queue.items():
            for chunk in chunks(jobs, BATCH):
                calls.append(
                    self._scripts.release_workflow_jobs(self._q(queue), jobs=chunk, now_ms=now_ms)
                )
                queues.append(queue)
        noted: set[QueueName] = set()
        unreadable: Ends = {}
        owner = {(q, job_id): wf for q, jobs in by_queue.items() for job_id, wf, _ in jobs}
        for queue, result in zip(queues, await self._scripts.run_all(calls), strict=True):
            if result.noted:
                noted.add(queue)
            for job_id in result.unreadable:
                wf = owner[(queue, job_id)]
                unreadable.setdefault(wf, []).append((job_id, "dead", UNREADABLE_ERROR))
        if unreadable and depth < SETTLE_ROUNDS:
            # Taken in before the end that led here is cleared: a crash leaves it to replay.
            noted |= await self._apply(unreadable, now_ms, depth=depth + 1)
        await self._clear_todo(decided, then)
        return noted

    async def _clear_todo(
        self, decided: Mapping[str, Sequence[Decision]], then: Sequence[ScriptCall[Any]]
    ) -> None:
        """HDEL the released decisions, then run `then`, in one round trip."""
        if not then and not any(decided.values()):
            return

        def clear(pipe: Any) -> None:
            for wf, decisions in decided.items():
                for chunk in chunks([d.job_id for d in decisions], BATCH):
                    pipe.hdel(self._wf(wf).todo, *chunk)

        await self._scripts.run_all(then, first=clear)

    async def _release_todo(self, workflow_id: str, now_ms: int | None) -> set[QueueName]:
        """Release whatever the workflow decided and nobody released (a dead writer's)."""
        call = self._scripts.apply_workflow_ends(self._wf(workflow_id), ends=[], now_ms=now_ms)
        step = await self._scripts.run(call)
        return await self._release({workflow_id: step.todo}, now_ms)

    # -- settle ---------------------------------------------------------------------------
    async def settle_workflows(
        self, queue: QueueName, now_ms: int | None, *, older_than_ms: int = 0
    ) -> int:
        with broker_errors("settle_workflows"):
            settled, more = await self._settle_queue(queue, now_ms, older_than_ms)
            await self._settle_queues(more, now_ms)
            return settled

    async def _settle_queues(self, queues: Iterable[QueueName], now_ms: int | None) -> None:
        """Settle every queue in `queues`, and those their releases noted ends in, for a
        bounded number of rounds (a watched job failed in turn notes its end in its queue)."""
        pending = set(queues)
        for _ in range(SETTLE_ROUNDS):
            if not pending:
                return
            more: set[QueueName] = set()
            for queue in sorted(pending):
                more |= (await self._settle_queue(queue, now_ms, 0))[1]
            pending = more

    async def _settle_queue(
        self, queue: QueueName, now_ms: int | None, older_than_ms: int
    ) -> tuple[int, set[QueueName]]:
        """Settle the queue's outbox batch by batch; returns the ends settled and the queues
        whose outbox got new ends."""
        keys = self._q(queue)
        settled = 0
        noted: set[QueueName] = set()
        for _ in range(SETTLE_BATCHES):
            call = self._scripts.take_outbox(keys, now_ms=now_ms, older_than_ms=older_than_ms)
            entries = await self._scripts.run(call)
            if not entries:
                break
            ends, cleared = _route(entries)
            clear = self._scripts.clear_outbox(keys, entries=cleared)
            noted |= await self._apply(ends, now_ms, then=[clear])
            settled += sum(1 for entry, _ in cleared if entry.state in _TERMINAL or not entry.state)
            if len(entries) < BATCH:
                break
        return settled, noted

    # -- maintenance ----------------------------------------------------------------------
    async def tend_workflows(self, now_ms: int | None) -> int:
        with broker_errors("tend_workflows"):
            if now_ms is None:
                seconds, micros = await self._redis.time()
                now_ms = int(seconds) * 1000 + int(micros) // 1000
            due = cast(
                list[bytes],
                await self._redis.zrangebyscore(self._keys.tend, "-inf", now_ms, 0, BATCH),
            )
            for raw in due:
                member = decode_id(raw)
                operation, _, workflow_id = member.partition("/")
                await self._tend_one(operation, workflow_id, now_ms)
                await self._unmark(member)
            return len(due)

    async def _tend_one(self, operation: str, workflow_id: str, now_ms: int) -> None:
        if operation == "create":
            state = await self._redis.hget(self._wf(workflow_id).meta, "state")
            if state == b"creating":
                await self._drop_creating(workflow_id)
                return
            if state is None:
                return
        elif operation.startswith("add."):
            await self._drop_addition(workflow_id, operation.removeprefix("add."))
        await self._settle_queues(await self._release_todo(workflow_id, now_ms), now_ms)

    # -- dropping what never ran ----------------------------------------------------------
    async def _drop_records(self, workflow_id: str, job_ids: Sequence[JobId]) -> None:
        """Delete the waiting records of these jobs of the workflow (their nodes say where)."""
        wk = self._wf(workflow_id)
        for chunk in chunks(job_ids, BATCH):
            raw = await self._redis.hmget(wk.nodes, list(chunk))
            by_queue: dict[QueueName, list[JobId]] = {}
            for job_id, value in zip(chunk, raw, strict=True):
                node = unpack_node(value)
                if node is not None:
                    by_queue.setdefault(node.queue, []).append(job_id)
            calls = [
                self._scripts.drop_waiting_jobs(self._q(q), workflow_id=workflow_id, job_ids=ids)
                for q, ids in by_queue.items()
            ]
            await self._scripts.run_all(calls)

    async def _drop_creating(self, workflow_id: str) -> None:
        """Delete a workflow left creating: its waiting records, its watches, then its keys
        (each step repeatable, so a drop that dies half-way is finished by the next)."""
        wk = self._wf(workflow_id)
        offset = 0
        while ids := await self._redis.lrange(wk.order, offset, offset + BATCH - 1):
            await self._drop_records(workflow_id, [decode_id(i) for i in ids])
            offset += BATCH
        watched: dict[Any, Any] = await self._redis.hgetall(wk.watched)
        async with self._redis.pipeline(transaction=False) as pipe:
            for parent, queue in watched.items():
                pipe.srem(self._q(text(queue)).notify(decode_id(parent)), workflow_id)
            await pipe.execute()
        while await self._scripts.run(self._scripts.drop_workflow(wk)) == 1:
            pass

    async def _drop_addition(self, workflow_id: str, token: str) -> None:
        """Take back an addition that was never committed (see drop_workflow_addition)."""
        wk = self._wf(workflow_id)
        freeze = self._scripts.drop_workflow_addition(wk, token=token, phase="freeze")
        if await self._scripts.run(freeze) != 1:
            return
        ids = [decode_id(i) for i in await self._redis.lrange(wk.addition(token), 0, -1)]
        await self._drop_records(workflow_id, ids)
        drop = self._scripts.drop_workflow_addition(wk, token=token, phase="drop")
        while await self._scripts.run(drop) == 1:
            pass


def _route(entries: Sequence[OutboxEntry]) -> tuple[Ends, list[tuple[OutboxEntry, Sequence[str]]]]:
    """The ends of a batch of outbox entries per workflow (its own, and its watchers'), and
    each entry with the watchers its clearing removes. An entry whose job is not ended any
    more (a dead job retried) is cleared without being applied; its next end is noted
    again. A record that is gone is taken in as dead by its watchers (its own workflow
    cannot be known)."""
    ends: Ends = {}
    cleared: list[tuple[OutboxEntry, Sequence[str]]] = []
    for entry in entries:
        if entry.state and entry.state not in _TERMINAL:
            cleared.append((entry, ()))
            continue
        state = entry.state or "dead"
        error = entry.error if entry.state else UNREADABLE_ERROR
        targets = dict.fromkeys(
            [entry.workflow, *entry.watchers] if entry.workflow else entry.watchers
        )
        for wf in targets:
            ends.setdefault(wf, []).append((entry.job_id, state, error))
        cleared.append((entry, entry.watchers))
    return ends, cleared
