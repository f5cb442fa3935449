"""The fetch part's choices: how many jobs a claim takes, how many suspects, whose turn it is,
and when a burst worker is done. No broker: `Admission` decides without I/O."""

from __future__ import annotations

import asyncio

import pytest

from corq.backends.base import ClaimedJob
from corq.worker.fetch import BATCH, Admission, Grant


def claimed(queue: str = "q", *, suspect: bool = False, n: int = 0) -> ClaimedJob:
    return ClaimedJob(
        id=f"j{n}",
        queue=queue,
        task="t",
        payload=b"{}",
        attempt=1,
        enqueued_at_ms=0,
        run_at_ms=0,
        fence=1,
        failures=0,
        deaths=2 if suspect else 0,
        suspect=suspect,
    )


async def grant_of(admission: Admission, queue: str = "q") -> Grant:
    async with admission.turn(queue) as grant:
        return grant


async def test_a_claim_asks_for_the_free_slots_and_suspects_for_the_free_sandboxes() -> None:
    admission = Admission(["q"], concurrency=10, sandboxes=2, burst=False)
    assert await grant_of(admission) == Grant(count=10, suspects=2)
    # Given 7 jobs running, one of them a suspect in a sandbox
    admission.claimed(claimed(suspect=True))
    for n in range(6):
        admission.claimed(claimed(n=n))
    # Then the next claim takes the 3 free slots, of which at most 1 suspect
    assert await grant_of(admission) == Grant(count=3, suspects=1)
    # and with both sandboxes taken, no suspect at all
    admission.finished(claimed(n=0))
    admission.claimed(claimed(suspect=True))
    assert await grant_of(admission) == Grant(count=3, suspects=0)


async def test_a_claim_takes_at_most_one_batch() -> None:
    admission = Admission(["q"], concurrency=BATCH * 3, sandboxes=1, burst=False)
    assert await grant_of(admission) == Grant(count=BATCH, suspects=1)


async def test_a_turn_waits_for_a_free_slot() -> None:
    # Given every slot taken
    admission = Admission(["q"], concurrency=1, sandboxes=1, burst=False)
    job = claimed()
    admission.claimed(job)
    waiting = asyncio.ensure_future(grant_of(admission))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    # When a job ends, Then the turn comes, for its one slot
    admission.finished(job)
    assert await asyncio.wait_for(waiting, 1) == Grant(count=1, suspects=1)


async def test_queues_take_turns_in_arrival_order() -> None:
    admission = Admission(["a", "b"], concurrency=4, sandboxes=1, burst=False)
    order: list[str] = []

    async def claim(queue: str) -> None:
        async with admission.turn(queue):
            order.append(queue)
            await asyncio.sleep(0.01)  # a claim in flight holds the turn
            admission.claimed(claimed(queue, n=len(order)))

    # Given both queues asking twice, interleaved
    await asyncio.gather(claim("a"), claim("b"), claim("a"), claim("b"))
    # Then neither claims twice before the other had its turn
    assert order == ["a", "b", "a", "b"]


async def test_a_queue_that_lost_the_race_for_the_last_slot_waits_again() -> None:
    # Given one free slot and two queues waiting for their turn
    admission = Admission(["a", "b"], concurrency=1, sandboxes=1, burst=False)

    async def claim(queue: str) -> Grant:
        async with admission.turn(queue) as grant:
            admission.claimed(claimed(queue))
            return grant

    first = await claim("a")
    second = asyncio.ensure_future(claim("b"))
    await asyncio.sleep(0.05)
    # Then the second does not claim zero jobs: it waits until a slot is free
    assert first.count == 1
    assert not second.done()
    admission.finished(claimed("a"))
    assert (await asyncio.wait_for(second, 1)).count == 1


async def test_the_turn_excludes_reconciliation_while_a_claim_is_in_flight() -> None:
    admission = Admission(["q"], concurrency=1, sandboxes=1, burst=False)
    async with admission.turn("q"):
        assert admission.lock.locked()
    assert not admission.lock.locked()


def test_burst_is_done_once_every_queue_was_seen_empty_and_nothing_runs() -> None:
    admission = Admission(["a", "b"], concurrency=2, sandboxes=1, burst=True)
    job = claimed("a")
    admission.claimed(job)
    # Given a job running: empty queues do not end the burst
    assert not admission.queue_empty("a")
    assert not admission.queue_empty("b")
    # When it ends, it may have enqueued more: every queue must be seen empty again
    admission.finished(job)
    assert not admission.queue_empty("a")
    assert admission.queue_empty("b")


async def test_burst_wakes_an_idle_fetcher_when_a_job_ends() -> None:
    admission = Admission(["a"], concurrency=1, sandboxes=1, burst=True)
    job = claimed("a")
    admission.claimed(job)
    admission.queue_empty("a")
    waiting = asyncio.ensure_future(admission.wait_for_activity(5.0))
    await asyncio.sleep(0.02)
    admission.finished(job)
    await asyncio.wait_for(waiting, 1)


@pytest.mark.parametrize("sandboxes", [1, 3])
async def test_suspects_never_exceed_the_count(sandboxes: int) -> None:
    admission = Admission(["q"], concurrency=1, sandboxes=sandboxes, burst=False)
    assert (await grant_of(admission)).suspects == 1
