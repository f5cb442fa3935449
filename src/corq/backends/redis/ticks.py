"""The scheduler's traffic (the ScheduleStore port, with ``schedules.py``): steps and the lease.

``advance_schedules`` reads the index once (where each step's schedule is), checks every
step and job before anything is written, then sends one ``advance_schedules`` script per
queue (in bounded batches), all in one pipeline: each step is checked and applied on its
own inside its queue's script, in order. A job whose queue is not its schedule's is
refused, but for a schedule moving to that queue (its old record marked ``moved_to`` it):
the step then goes to the new queue, and gets GONE until the record is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from corq.backends.base import SchedulerLease, ScheduleStep, TickOutcome, TickStep
from corq.backends.redis.calls import ScriptCall, batches
from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.producer import check_new_job
from corq.errors import EnqueueError
from corq.types import QueueName

#: Steps a scheduler sends under its lease (the others may come from operators, unfenced).
FENCED_STEPS = frozenset({TickStep.FIRE, TickStep.SKIP, TickStep.BUFFER, TickStep.FIRE_BUFFERED})
#: Steps that enqueue a job.
JOB_STEPS = frozenset({TickStep.FIRE, TickStep.FIRE_BUFFERED, TickStep.BACKFILL, TickStep.MANUAL})


class RedisTicks(RedisContext):
    """Schedule steps and the scheduler lease."""

    async def advance_schedules(
        self, steps: Sequence[ScheduleStep], fence: int | None, now_ms: int | None
    ) -> list[TickOutcome]:
        outcomes = [TickOutcome.GONE] * len(steps)
        for step in steps:
            _check_step(step, fence)
        with broker_errors("advance_schedules"):
            queues = await self._step_queues(steps)
            groups: dict[QueueName, list[int]] = {}
            for index, queue in enumerate(queues):
                if queue is not None:
                    groups.setdefault(queue, []).append(index)
            calls: list[ScriptCall[list[TickOutcome]]] = []
            order: list[list[int]] = []
            for queue, indices in groups.items():
                for chunk in batches(indices, lambda i: _payload_size(steps[i])):
                    call = self._scripts.advance_schedules(
                        self._q(queue), steps=[steps[i] for i in chunk], fence=fence, now_ms=now_ms
                    )
                    calls.append(call)
                    order.append(chunk)
            await self._touch_queues(steps)
            for chunk, replies in zip(order, await self._scripts.run_all(calls), strict=True):
                for index, outcome in zip(chunk, replies, strict=True):
                    outcomes[index] = outcome
        return outcomes

    async def _touch_queues(self, steps: Sequence[ScheduleStep]) -> None:
        """Queues that may get jobs are noted as used (as enqueue_jobs does)."""
        jobs = [s.job for s in steps if s.job is not None]
        if jobs:
            last_used = max(job.enqueued_at_ms for job in jobs)
            await self._registry.touch(self._scripts, [job.queue for job in jobs], last_used)

    async def _step_queues(self, steps: Sequence[ScheduleStep]) -> list[QueueName | None]:
        """The queue each step goes to (None: no such schedule: GONE); raises EnqueueError
        for a job that is not in its schedule's queue, before anything is written."""
        names = list(dict.fromkeys(s.schedule for s in steps))
        if not names:
            return []
        raw = cast(list[bytes | None], await self._redis.hmget(self._keys.schedules.index, names))
        indexed = {n: _text(q) for n, q in zip(names, raw, strict=True)}
        queues = [indexed[s.schedule] for s in steps]
        # A job for another queue is fine only while its schedule is moving there.
        odd = {
            (q, s.schedule, s.job.queue)
            for s, q in zip(steps, queues, strict=True)
            if s.job and q is not None and s.job.queue != q
        }
        moving = {}
        if odd:
            async with self._redis.pipeline(transaction=False) as pipe:
                for q, name, _ in odd:
                    pipe.hget(self._q(q).schedule(name).record, "moved_to")
                targets = await pipe.execute(raise_on_error=False)
            moving = {(q, name): t for (q, name, _), t in zip(odd, targets, strict=True)}
        for at, (step, queue) in enumerate(zip(steps, queues, strict=True)):
            job = step.job
            if job is None or queue is None or job.queue == queue:
                continue
            if moving.get((queue, step.schedule)) != job.queue.encode():
                raise EnqueueError(
                    f"job {job.id}: queue {job.queue!r} is not the queue of schedule "
                    f"{step.schedule!r} ({queue!r})"
                )
            queues[at] = job.queue
        return queues

    # -- the lease ---------------------------------------------------------------------
    async def acquire_scheduler_lease(
        self, holder: str, lease_ms: int, now_ms: int | None
    ) -> SchedulerLease | None:
        call = self._scripts.acquire_scheduler_lease(
            self._keys.schedules, holder=holder, lease_ms=lease_ms, now_ms=now_ms
        )
        with broker_errors("acquire_scheduler_lease"):
            got = await self._scripts.run(call)
        if got is None:
            return None
        return SchedulerLease(holder=holder, fence=got[0], deadline_ms=got[1])

    async def release_scheduler_lease(self, holder: str) -> bool:
        call = self._scripts.release_scheduler_lease(self._keys.schedules, holder=holder)
        with broker_errors("release_scheduler_lease"):
            return await self._scripts.run(call)

    async def scheduler_lease(self) -> SchedulerLease | None:
        with broker_errors("scheduler_lease"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self._keys.schedules.leader, ["holder", "fence", "deadline_ms"])
                pipe.time()
                (holder, fence, deadline), (seconds, micros) = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        try:
            lease = SchedulerLease(
                holder=_text(holder) or "", fence=int(fence), deadline_ms=int(deadline)
            )
        except (TypeError, ValueError):
            return None
        return lease if lease.holder and lease.deadline_ms >= now_ms else None


def _payload_size(step: ScheduleStep) -> int:
    return 0 if step.job is None else len(step.job.payload)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def _check_step(step: ScheduleStep, fence: int | None) -> None:
    """Refuse, before anything is written, a caller's bug (ValueError) or a job that
    enqueue_jobs would refuse (EnqueueError); the same wording as the SQLite broker's."""
    what = f"advance_schedules: the {step.step.value} step of {step.schedule!r}"
    if fence is None and step.step in FENCED_STEPS:
        raise ValueError(f"{what} needs the scheduler's fence")
    if (step.job is None) == (step.step in JOB_STEPS):
        raise ValueError(f"{what} {'needs a job' if step.job is None else 'takes no job'}")
    skipped = step.skipped
    if skipped is not None and not skipped.first_tick_ms <= skipped.last_tick_ms < step.tick_ms:
        raise ValueError(f"{what}: its skipped ticks must be below the step's tick")
    if step.job is not None:
        check_new_job(step.job)
