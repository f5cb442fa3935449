"""The fetch part's choices: how many jobs a claim takes, how many suspects, whose turn it is,
and when a burst worker is done. No broker: `Admission` decides without I/O."""

from __future__ import annotations

import asyncio

import pytest

from corq.backends.base import ClaimedJob
from corq.worker.fetch import BATCH, Admission, Grant, WeightedTurns


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
    assert await grant_of(admission) == Grant(count=10, suspects=2, idle=True)
    # Given 7 jobs running, one of them a suspect in a sandbox
    admission.claimed(claimed(suspect=True))
    for n in range(6):
        admission.claimed(claimed(n=n))
    # Then the next claim takes the 3 free slots, of which at most 1 suspect
    assert await grant_of(admission) == Grant(count=3, suspects=1, idle=True)
    # and with both sandboxes taken, no suspect at all
    admission.finished(claimed(n=0))
    admission.claimed(claimed(suspect=True))
    assert await grant_of(admission) == Grant(count=3, suspects=0, idle=True)


async def test_a_claim_takes_at_most_one_batch() -> None:
    admission = Admission(["q"], concurrency=BATCH * 3, sandboxes=1, burst=False)
    assert await grant_of(admission) == Grant(count=BATCH, suspects=1, idle=True)


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
    assert await asyncio.wait_for(waiting, 1) == Grant(count=1, suspects=1, idle=True)


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


# -- weights ---------------------------------------------------------------------------
WEIGHTS = {"high": 5, "default": 2, "low": 1}


def shares(picks: list[str | None]) -> dict[str | None, float]:
    return {q: picks.count(q) / len(picks) for q in set(picks)}


def test_weighted_turns_give_each_waiting_queue_its_weights_share() -> None:
    turns = WeightedTurns(WEIGHTS)
    picks = [turns.pick(WEIGHTS) for _ in range(8_000)]
    for queue, share in shares(picks).items():
        assert share == pytest.approx(WEIGHTS[str(queue)] / 8, rel=0.10)


def test_weighted_turns_are_smooth_not_bursts() -> None:
    # nginx's example: weights 5, 1, 1 give a a b a c a a, not a a a a a b c
    turns = WeightedTurns({"a": 5, "b": 1, "c": 1})
    assert [turns.pick({"a", "b", "c"}) for _ in range(7)] == list("aabacaa")


def test_an_empty_queues_share_goes_to_the_others() -> None:
    # Given "high" out of the waiting set (its claim took nothing)
    turns = WeightedTurns(WEIGHTS)
    picks = [turns.pick({"default", "low"}) for _ in range(3_000)]
    # Then the others share everything by their weights, and no pick is lost
    assert "high" not in picks
    assert None not in picks
    assert shares(picks)["default"] == pytest.approx(2 / 3, rel=0.10)
    # and when it is back, it gets its share again, without starving anyone
    back = [turns.pick(WEIGHTS) for _ in range(800)]
    assert shares(back)["high"] == pytest.approx(5 / 8, rel=0.10)
    assert min(back[i : i + 8].count("low") for i in range(0, 800, 8)) >= 1


def test_no_queue_waiting_picks_none() -> None:
    assert WeightedTurns(WEIGHTS).pick(set()) is None


async def test_admission_hands_free_slots_by_weight_one_at_a_time() -> None:
    # Given three queues with work and 8 free slots
    admission = Admission(WEIGHTS, concurrency=8, sandboxes=0, burst=False)
    # When each claims what it is given
    got = {q: (await grant_of(admission, q)).count for q in WEIGHTS}
    # Then the 8 slots were shared 5/2/1
    assert got == WEIGHTS


async def test_admission_shares_freed_slots_by_weight_under_load() -> None:
    # Given three full queues and a worker whose jobs end one at a time
    admission = Admission(WEIGHTS, concurrency=4, sandboxes=0, burst=False)
    started: list[str] = []

    async def fetch(queue: str) -> None:
        while True:
            async with admission.turn(queue) as grant:
                for n in range(grant.count):
                    admission.claimed(claimed(queue, n=n))
                    started.append(queue)

    fetchers = [asyncio.ensure_future(fetch(q)) for q in WEIGHTS]
    for _ in range(800):
        await asyncio.sleep(0)
        if admission.free == 0:
            admission.finished(claimed(started[0]))
    for task in fetchers:
        task.cancel()
    await asyncio.gather(*fetchers, return_exceptions=True)
    # Then the started jobs follow the weights
    assert len(started) > 400
    for queue, share in shares(list(started)).items():
        assert share == pytest.approx(WEIGHTS[str(queue)] / 8, rel=0.10)


async def test_a_queue_that_found_nothing_leaves_its_slots_to_the_others() -> None:
    admission = Admission(WEIGHTS, concurrency=8, sandboxes=0, burst=False)
    # Given "high" given 5 slots, but its claim found nothing
    async with admission.turn("high") as grant:
        assert grant.count == 5
        admission.empty("high")
    # Then the other queues share all 8 slots (their own 3, then its 5)
    got = dict.fromkeys(("default", "low"), 0)
    for queue in [*got, *got]:
        grant = await grant_of(admission, queue)
        got[queue] += grant.count
        for n in range(grant.count):
            admission.claimed(claimed(queue, n=n))
    assert admission.free == 0
    assert got["default"] > got["low"] >= 2


async def test_an_idle_queue_holds_one_slot_for_its_hand_over() -> None:
    admission = Admission(["a", "b"], concurrency=3, sandboxes=0, burst=False)
    # Given "a" listed idle after an empty claim
    async with admission.turn("a") as grant:
        assert grant.idle
        admission.idle("a")
    assert admission.awaiting("a")
    # Then "b" may take only the other two slots
    for _ in range(2):
        async with admission.turn("b") as grant:
            assert grant.count == 1
            admission.claimed(claimed("b"))
    assert admission.spare == 0
    waiting = asyncio.ensure_future(grant_of(admission, "b"))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    # When "a" is handed a job, it runs in the held slot: the worker stays within 3
    admission.woken("a")
    admission.claimed(claimed("a"))
    assert admission.free == 0
    assert not admission.awaiting("a")
    await asyncio.sleep(0.02)
    assert not waiting.done()
    waiting.cancel()


async def test_only_a_worker_with_slots_to_spare_lists_idle() -> None:
    # one slot, two queues: an idle queue would hold the only slot
    admission = Admission(["a", "b"], concurrency=1, sandboxes=0, burst=False)
    assert not (await grant_of(admission, "a")).idle
    # one slot, one queue: nobody else needs it
    assert (await grant_of(Admission(["a"], concurrency=1, sandboxes=0, burst=False), "a")).idle
    # burst mode must see its queues empty
    assert not (await grant_of(Admission(["a"], concurrency=4, sandboxes=0, burst=True), "a")).idle
