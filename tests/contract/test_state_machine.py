"""Every state change a broker makes is a legal move of ``corq.job.TRANSITIONS``.

One scenario drives jobs through every method that changes a state (enqueue, promote,
claim, complete, fail with and without a retry, release, reclaim, cancel, dead-letter retry)
and reads every record after each step; each change seen must be in the table, and the
moves seen must cover the ones the scenario makes (so the check cannot pass vacuously).
A second scenario does the same for the moves out of ``waiting`` (workflows), a third for
the moves of flow control (into ``expired``, and a running job cancelled by a duplicate), a
fourth a snooze (``running -> scheduled``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace

from corq.backends import Backend
from corq.backends.base import ClaimedJob, TaskRules
from corq.flow import Dedupe, OnDuplicate, OverLimit, Rate
from corq.job import JobStatus, can_transition
from tests.contract.flow import LIMITED, PLAIN, job
from tests.contract.jobs import (
    LATER,
    T0,
    claim,
    completion,
    failure,
    new_job,
    record,
    register,
    release,
)
from tests.contract.workflows import Hands, dag, later_ms, settle, wjob

S = JobStatus
IDS = ("a", "b", "c", "d", "e")


class Watch:
    """Reads every record after each step and keeps the moves it saw."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.states: dict[str, JobStatus] = {}
        self.moves: set[tuple[JobStatus, JobStatus]] = set()

    async def step(self, name: str, call: Awaitable[object], *settled: str) -> None:
        """Run `call`, then settle the queues named (an end and its settle are one step
        for a reader, as the runtime's writer runs them back to back)."""
        await call
        for queue in settled:
            await settle(self.backend, queue)
        for job_id in IDS:
            job = await self.backend.get_job(job_id, "default")
            if job is None:
                continue
            before = self.states.get(job_id)
            if before is not None and before != job.status:
                assert can_transition(before, job.status), (
                    f"{name}: {job_id} moved {before} -> {job.status}"
                )
                self.moves.add((before, job.status))
            self.states[job_id] = job.status


async def test_every_state_change_is_a_legal_move(backend: Backend) -> None:
    w = Watch(backend)
    b = backend
    await w.step("enqueue", b.enqueue_jobs([new_job("a"), new_job("b", delay_ms=10)]))
    await w.step("enqueue", b.enqueue_jobs([new_job("c"), new_job("d", delay_ms=10)]))
    assert w.states == {"a": S.QUEUED, "b": S.SCHEDULED, "c": S.QUEUED, "d": S.SCHEDULED}
    await w.step("cancel", b.cancel_job("c", "default", T0 + 1))
    await w.step("cancel", b.cancel_job("d", "default", T0 + 1))
    await w.step("promote", b.promote_due_jobs("default", T0 + 10))
    await register(b, "w1", T0 + 10)
    held = {j.id: j for j in await claim(b, "w1", T0 + 10)}
    await w.step("claim", _noop())
    assert set(held) == {"a", "b"}
    await w.step("complete", b.complete_jobs("w1", [completion(held["a"])], 60_000))
    await w.step("fail", b.fail_jobs("w1", [failure(held["b"], T0 + 20)], 60_000))
    await w.step("promote", b.promote_due_jobs("default", T0 + 20))
    [again] = await claim(b, "w1", T0 + 20)
    await w.step("claim", _noop())
    await w.step("fail dead", b.fail_jobs("w1", [failure(again)], 60_000))
    await w.step("retry dead", b.retry_dead("default", ["b"], T0 + 30))
    [third] = await claim(b, "w1", T0 + 30)
    await w.step("claim", _noop())
    await w.step("release", b.release_jobs("w1", [release(third)]))
    await claim(b, "w1", T0 + 30)
    await w.step("claim", _noop())
    await w.step("reclaim", b.reclaim_stalled_jobs("default", T0 + 30 + LATER, 5))
    assert (await record(b, "b")).deaths == 1
    await b.enqueue_jobs([new_job("e")])
    await register(b, "w2", T0 + 30 + LATER)
    [fourth] = await claim(b, "w2", T0 + 30 + LATER, count=1)
    await w.step("claim", _noop())
    # A running job is cancelled in the broker (its claim fenced off).
    await w.step("cancel running", b.cancel_job(fourth.id, "default", T0 + 30 + LATER))
    assert w.states[fourth.id] == S.CANCELLED

    assert {
        (S.QUEUED, S.CANCELLED),
        (S.SCHEDULED, S.CANCELLED),
        (S.SCHEDULED, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
        (S.FAILED, S.QUEUED),
        (S.RUNNING, S.DEAD),
        (S.DEAD, S.QUEUED),
        (S.RUNNING, S.QUEUED),
        (S.RUNNING, S.CANCELLED),
    } <= w.moves


async def _noop() -> None:
    """A step whose change was made just before (a claim's jobs are needed by the test)."""


async def test_every_move_out_of_waiting_is_legal(backend: Backend) -> None:
    # a → b (queued when a succeeds), a → c (scheduled: its time is still ahead),
    # b → d (upstream_failed when b dies), a → e (cancelled while waiting)
    w = Watch(backend)
    wf = dag(
        wjob("a"),
        wjob("b", "a"),
        wjob("c", "a", run_at_ms=later_ms()),
        wjob("d", "b"),
        wjob("e", "a"),
        outputs=("c", "d", "e"),
    )
    hands = Hands(backend)
    await w.step("enqueue workflow", backend.enqueue_workflow(wf, None))
    assert w.states == {"a": S.QUEUED, **dict.fromkeys("bcde", S.WAITING)}
    await w.step("cancel waiting", backend.cancel_job("e", "default", None), "default")
    a = await _claim(w, hands, "a")
    await w.step("complete", hands.succeed(a))
    b = await _claim(w, hands, "b")
    await w.step("fail dead", hands.die(b))

    assert w.states == {
        "a": S.SUCCEEDED,
        "b": S.DEAD,
        "c": S.SCHEDULED,
        "d": S.UPSTREAM_FAILED,
        "e": S.CANCELLED,
    }
    assert {
        (S.WAITING, S.QUEUED),
        (S.WAITING, S.SCHEDULED),
        (S.WAITING, S.UPSTREAM_FAILED),
        (S.WAITING, S.CANCELLED),
    } <= w.moves


async def _claim(w: Watch, hands: Hands, job_id: str) -> ClaimedJob:
    """Claim what is ready, as a step: exactly `job_id`."""
    held = await hands.claim_one(job_id)
    await w.step("claim", _noop())
    return held


async def test_every_move_of_flow_control_is_legal(backend: Backend) -> None:
    # a: queued, past its deadline; b: scheduled, past its deadline when due; c, d: one start
    # an hour, over it dropped; e: running, cancelled by a duplicate
    w = Watch(backend)
    b = backend
    hourly_drop = TaskRules(task=LIMITED, rate=Rate.parse("/h"), over_limit=OverLimit.DROP)
    await b.set_rules("default", [hourly_drop])
    jobs = [
        job("a", task=PLAIN, start_by_ms=T0 + 100),
        job("b", task=PLAIN, delay_ms=50, start_by_ms=T0 + 100),
        job("c"),
        job("d"),
        job("e", task=PLAIN, unique_key="u"),
    ]
    await w.step("enqueue", b.enqueue_jobs(jobs))
    assert w.states == {"a": S.QUEUED, "b": S.SCHEDULED, **dict.fromkeys("cde", S.QUEUED)}
    await w.step("promote", b.promote_due_jobs("default", T0 + 200))
    await register(b, "w1", T0 + 200)
    await w.step("claim", claim(b, "w1", T0 + 200))
    await w.step("claim", claim(b, "w1", T0 + 201))
    cancel = Dedupe(on_duplicate=OnDuplicate.CANCEL)
    await w.step(
        "cancel running", b.admit_jobs([job("f", task=PLAIN, unique_key="u", dedupe=cancel)])
    )

    assert w.states == {
        "a": S.EXPIRED,
        "b": S.EXPIRED,
        "c": S.RUNNING,
        "d": S.EXPIRED,
        "e": S.CANCELLED,
    }
    assert {
        (S.QUEUED, S.EXPIRED),
        (S.SCHEDULED, S.EXPIRED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.CANCELLED),
    } <= w.moves


async def test_a_snooze_is_a_legal_move(backend: Backend) -> None:
    # a: snoozed while running, then due and claimed again
    w = Watch(backend)
    b = backend
    await w.step("enqueue", b.enqueue_jobs([new_job("a")]))
    await register(b, "w1", T0)
    [held] = await claim(b, "w1", T0)
    await w.step("claim", _noop())
    snoozed = replace(failure(held, T0 + 50, error="not ready"), counted=False, snoozed=True)
    await w.step("snooze", b.fail_jobs("w1", [snoozed], 60_000))
    await w.step("promote", b.promote_due_jobs("default", T0 + 50))
    await w.step("claim", claim(b, "w1", T0 + 50))

    assert w.states == {"a": S.RUNNING}
    assert {(S.QUEUED, S.RUNNING), (S.RUNNING, S.SCHEDULED), (S.SCHEDULED, S.QUEUED)} <= w.moves
