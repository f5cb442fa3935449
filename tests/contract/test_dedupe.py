"""Broker contract, ``JobStore.admit_jobs``: what an enqueue does with ids, unique keys,
debounce and cooldown, in its one atomic step (docs/design.md, "Flow control").

Outcomes: ``CREATED``, ``EXISTS`` (the id exists), ``EXISTING`` (the unique key is taken),
``REPLACED``, ``DEBOUNCED``, ``DROPPED`` (cooldown). ``enqueue_jobs`` is the same step
answered as booleans. "Now" of an enqueue is its jobs' ``enqueued_at_ms``.
"""

from __future__ import annotations

import pytest

from corq.backends import Backend
from corq.backends.base import ClaimedJob, TaskRules
from corq.flow import Dedupe, OnDuplicate, Outcome
from corq.job import JobStatus
from tests.contract.flow import LIMITED, OTHER, claim_jobs, job, outcomes, stats, status
from tests.contract.jobs import T0, Q, completion, failure, record, register

S = JobStatus
KEEP = Dedupe()
REPLACE = Dedupe(on_duplicate=OnDuplicate.REPLACE)
CANCEL = Dedupe(on_duplicate=OnDuplicate.CANCEL)


async def run(backend: Backend, job_id: str, worker: str = "w1") -> ClaimedJob:
    """Claim what is ready: exactly `job_id` (now running under `worker`)."""
    await register(backend, worker)
    held = await claim_jobs(backend, worker)
    assert [j.id for j in held] == [job_id]
    return held[0]


# ------------------------------------------------------------------------------------------------
# Ids and unique keys
# ------------------------------------------------------------------------------------------------


async def test_a_new_job_is_created_and_an_existing_id_exists(backend: Backend) -> None:
    first = await backend.admit_jobs([job("a", unique_key="u")])
    again = await backend.admit_jobs([job("a", unique_key="other", payload=b"2")])

    assert outcomes(first) == [("a", "created")]
    assert outcomes(again) == [("a", "exists")]
    assert (await record(backend, "a")).payload == b"{}"
    assert (await record(backend, "a")).unique_key == "u"


async def test_a_taken_unique_key_names_the_live_job(backend: Backend) -> None:
    await backend.admit_jobs([job("a", unique_key="u")])

    admitted = await backend.admit_jobs([job("b", unique_key="u", payload=b"2")])

    assert outcomes(admitted) == [("a", "existing")]
    assert await backend.get_job("b", Q) is None
    assert (await record(backend, "a")).payload == b"{}"


async def test_unique_keys_are_per_queue(backend: Backend) -> None:
    await backend.admit_jobs([job("a", unique_key="u", queue="q1")])

    admitted = await backend.admit_jobs([job("b", unique_key="u", queue="q2")])

    assert outcomes(admitted) == [("b", "created")]


async def test_a_unique_key_is_taken_while_scheduled_running_or_awaiting_a_retry(
    backend: Backend,
) -> None:
    # Scheduled
    await backend.admit_jobs([job("a", unique_key="u", delay_ms=50)])
    assert outcomes(await backend.admit_jobs([job("b", unique_key="u")])) == [("a", "existing")]

    # Running
    await register(backend, "w1")
    [held] = await claim_jobs(backend, "w1", T0 + 50)
    assert outcomes(await backend.admit_jobs([job("c", unique_key="u")])) == [("a", "existing")]

    # Failed, awaiting its retry
    assert await backend.fail_jobs("w1", [failure(held, T0 + 500)], 60_000) == [True]
    assert await status(backend, "a") is S.FAILED
    assert outcomes(await backend.admit_jobs([job("d", unique_key="u")])) == [("a", "existing")]


@pytest.mark.parametrize("end", ["succeeded", "dead", "cancelled", "expired"])
async def test_a_unique_key_is_free_again_once_its_job_ended(backend: Backend, end: str) -> None:
    await backend.admit_jobs([job("a", unique_key="u", start_by_ms=T0 + 5)])
    if end == "cancelled":
        assert await backend.cancel_job("a", Q, T0 + 1) is True
    elif end == "expired":
        await register(backend, "w1")
        assert await claim_jobs(backend, "w1", T0 + 6) == []
    else:
        held = await run(backend, "a")
        if end == "succeeded":
            assert await backend.complete_jobs("w1", [completion(held)], 60_000) == [True]
        else:
            assert await backend.fail_jobs("w1", [failure(held)], 60_000) == [True]
    assert await status(backend, "a") == end

    admitted = await backend.admit_jobs([job("b", unique_key="u", at_ms=T0 + 10)])

    assert outcomes(admitted) == [("b", "created")]
    assert await status(backend, "b") is S.QUEUED


async def test_a_unique_key_stays_taken_for_its_window_after_the_end(backend: Backend) -> None:
    # Given a job whose key stays taken for a minute after it ends (it ends at T0 + 9)
    window = Dedupe(window_ms=60_000)
    await backend.admit_jobs([job("a", unique_key="u", dedupe=window)])
    held = await run(backend, "a")
    assert await backend.complete_jobs("w1", [completion(held, at_ms=T0 + 9)], 60_000) == [True]

    # Then within the window the ended job is named; after it, a new job is created
    within = job("b", unique_key="u", at_ms=T0 + 9 + 59_999, dedupe=window)
    assert outcomes(await backend.admit_jobs([within])) == [("a", "existing")]
    after = job("c", unique_key="u", at_ms=T0 + 9 + 60_001, dedupe=window)
    assert outcomes(await backend.admit_jobs([after])) == [("c", "created")]


async def test_two_jobs_of_one_call_with_the_same_key(backend: Backend) -> None:
    admitted = await backend.admit_jobs(
        [
            job("a", unique_key="u"),
            job("b", unique_key="u", payload=b"2"),
            job("c", unique_key="v"),
            job("d", unique_key="v", payload=b"4", dedupe=REPLACE),
        ]
    )

    assert outcomes(admitted) == [
        ("a", "created"),
        ("a", "existing"),
        ("c", "created"),
        ("c", "replaced"),
    ]
    assert (await record(backend, "c")).payload == b"4"
    assert await backend.get_job("b", Q) is None


async def test_enqueue_jobs_answers_true_only_for_created_jobs(backend: Backend) -> None:
    debounce = Dedupe(debounce_ms=1000)
    cooldown = Dedupe(cooldown_ms=1000)
    answers = await backend.enqueue_jobs(
        [
            job("a", unique_key="u"),
            job("a", unique_key="u"),  # the id exists
            job("b", unique_key="u"),  # the key is taken
            job("c", unique_key="u", dedupe=REPLACE),
            job("d", task=OTHER, unique_key="d", dedupe=debounce),
            job("e", task=OTHER, unique_key="d", dedupe=debounce),
            job("f", task=LIMITED, queue="cool", dedupe=cooldown),
            job("g", task=LIMITED, queue="cool", dedupe=cooldown),
        ]
    )

    assert answers == [True, False, False, False, True, False, True, False]
    written = {i for i in "abcdefg" if await backend.get_job(i) is not None}
    assert written == {"a", "d", "f"}


# ------------------------------------------------------------------------------------------------
# What a duplicate does: keep, replace, cancel
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("laned", [False, True], ids=["plain", "laned"])
async def test_replace_gives_a_queued_job_the_new_payload_and_priority(
    backend: Backend, laned: bool
) -> None:
    # Given a queued job with a unique key behind another (in one key's lane, or not)
    key = "k" if laned else None
    if laned:
        await backend.set_rules(Q, [TaskRules(task=LIMITED, keyed=True)])
    await backend.admit_jobs([job("x", key=key), job("a", key=key, unique_key="u")])

    admitted = await backend.admit_jobs(
        [job("b", key=key, unique_key="u", payload=b"new", priority=9, dedupe=REPLACE)]
    )

    assert outcomes(admitted) == [("a", "replaced")]
    replaced = await record(backend, "a")
    assert (replaced.status, replaced.payload, replaced.priority) == (S.QUEUED, b"new", 9)
    assert await backend.get_job("b", Q) is None
    await register(backend, "w1")
    assert [j.id for j in await claim_jobs(backend, "w1")] == ["a", "x"]  # its new priority


async def test_replace_gives_a_scheduled_job_the_new_payload(backend: Backend) -> None:
    await backend.admit_jobs([job("a", unique_key="u", delay_ms=1000)])

    admitted = await backend.admit_jobs([job("b", unique_key="u", payload=b"new", dedupe=REPLACE)])

    assert outcomes(admitted) == [("a", "replaced")]
    replaced = await record(backend, "a")
    assert (replaced.status, replaced.payload, replaced.run_at_ms) == (
        S.SCHEDULED,
        b"new",
        T0 + 1000,
    )


async def test_replace_keeps_a_running_job(backend: Backend) -> None:
    await backend.admit_jobs([job("a", unique_key="u")])
    held = await run(backend, "a")

    admitted = await backend.admit_jobs([job("b", unique_key="u", payload=b"new", dedupe=REPLACE)])

    assert outcomes(admitted) == [("a", "existing")]
    assert (await record(backend, "a")).payload == b"{}"
    assert await backend.get_job("b", Q) is None
    assert await backend.complete_jobs("w1", [completion(held)], 60_000) == [True]


@pytest.mark.parametrize("laned", [False, True], ids=["plain", "laned"])
async def test_cancel_replaces_a_queued_job_with_the_new_one(backend: Backend, laned: bool) -> None:
    if laned:
        await backend.set_rules(Q, [TaskRules(task=LIMITED, concurrency=1)])
    await backend.admit_jobs([job("a", unique_key="u")])

    admitted = await backend.admit_jobs([job("b", unique_key="u", payload=b"new", dedupe=CANCEL)])

    assert outcomes(admitted) == [("b", "created")]
    assert admitted[0].cancelled is None  # it was not running: no worker to tell
    assert await status(backend, "a") is S.CANCELLED
    assert (await record(backend, "b")).payload == b"new"
    await register(backend, "w1")
    assert [j.id for j in await claim_jobs(backend, "w1")] == ["b"]
    assert (await stats(backend)).laned == 0
    # and the key now belongs to the new job
    assert outcomes(await backend.admit_jobs([job("c", unique_key="u")])) == [("b", "existing")]


async def test_cancel_fences_off_a_running_attempt(backend: Backend) -> None:
    # Given a running job with a unique key
    await backend.admit_jobs([job("a", unique_key="u")])
    held = await run(backend, "a")

    # When a duplicate that cancels arrives
    admitted = await backend.admit_jobs([job("b", unique_key="u", payload=b"new", dedupe=CANCEL)])

    # Then the running job is cancelled (named, so its worker can be told), the new one
    # queued, and the old attempt's outcome is refused by its fence
    assert outcomes(admitted) == [("b", "created")]
    assert admitted[0].cancelled == "a"
    assert await status(backend, "a") is S.CANCELLED
    assert await status(backend, "b") is S.QUEUED
    assert await backend.complete_jobs("w1", [completion(held)], 60_000) == [False]
    assert await backend.fail_jobs("w1", [failure(held, T0 + 10)], 60_000) == [False]
    assert await status(backend, "a") is S.CANCELLED
    assert [j.id for j in await claim_jobs(backend, "w1")] == ["b"]


# ------------------------------------------------------------------------------------------------
# Debounce: one pending job whose run time moves with each call, capped by max_wait
# ------------------------------------------------------------------------------------------------


async def test_debounce_runs_one_job_after_the_last_call(backend: Backend) -> None:
    debounce = Dedupe(debounce_ms=5000)

    first = await backend.admit_jobs([job("a", unique_key="u", dedupe=debounce, payload=b"1")])
    assert outcomes(first) == [("a", "created")]
    created = await record(backend, "a")
    assert (created.status, created.run_at_ms) == (S.SCHEDULED, T0 + 5000)

    later = job("b", unique_key="u", dedupe=debounce, payload=b"2", at_ms=T0 + 3000)
    assert outcomes(await backend.admit_jobs([later])) == [("a", "debounced")]
    moved = await record(backend, "a")
    assert (moved.status, moved.run_at_ms, moved.payload) == (S.SCHEDULED, T0 + 8000, b"2")
    assert await backend.get_job("b", Q) is None

    # Then it runs once, with the last call's arguments, at the last call's time + debounce
    await register(backend, "w1")
    assert await claim_jobs(backend, "w1", T0 + 7999) == []
    [held] = await claim_jobs(backend, "w1", T0 + 8000)
    assert (held.id, held.payload) == ("a", b"2")


async def test_debounce_is_capped_by_max_wait_after_the_first_call(backend: Backend) -> None:
    debounce = Dedupe(debounce_ms=5000, max_wait_ms=8000)
    await backend.admit_jobs([job("a", unique_key="u", dedupe=debounce)])

    for n, at in enumerate((T0 + 2000, T0 + 4000, T0 + 6000), start=1):
        again = job(f"b{n}", unique_key="u", dedupe=debounce, at_ms=at)
        assert outcomes(await backend.admit_jobs([again])) == [("a", "debounced")]

    # Not later than the first enqueue + max_wait, however the calls go on
    assert (await record(backend, "a")).run_at_ms == T0 + 8000


@pytest.mark.parametrize("laned", [False, True], ids=["plain", "laned"])
async def test_debounce_of_a_queued_job_moves_it_back_to_wait(
    backend: Backend, laned: bool
) -> None:
    if laned:
        await backend.set_rules(Q, [TaskRules(task=LIMITED, concurrency=5)])
    debounce = Dedupe(debounce_ms=1000)
    await backend.admit_jobs([job("a", unique_key="u", dedupe=debounce)])
    await backend.promote_due_jobs(Q, T0 + 1000)
    assert await status(backend, "a") is S.QUEUED

    again = job("b", unique_key="u", dedupe=debounce, at_ms=T0 + 1500)
    assert outcomes(await backend.admit_jobs([again])) == [("a", "debounced")]

    # Then it waits for its new time, out of the ready jobs (and its lane)
    moved = await record(backend, "a")
    assert (moved.status, moved.run_at_ms) == (S.SCHEDULED, T0 + 2500)
    [queue] = await backend.queue_stats([Q])
    assert (queue.ready, queue.delayed) == (0, 1)
    assert (await stats(backend)).laned == 0
    await register(backend, "w1", T0 + 1500)
    assert await claim_jobs(backend, "w1", T0 + 1500) == []
    assert [j.id for j in await claim_jobs(backend, "w1", T0 + 2500)] == ["a"]


async def test_debounce_leaves_a_running_job_and_writes_a_new_one(backend: Backend) -> None:
    # Given a debounced job that has started
    debounce = Dedupe(debounce_ms=1000)
    await backend.admit_jobs([job("a", unique_key="u", dedupe=debounce)])
    await register(backend, "w1", T0 + 1000)
    [held] = await claim_jobs(backend, "w1", T0 + 1000)

    # When it is called again, a new job takes the key, pending in its turn
    again = job("b", unique_key="u", dedupe=debounce, at_ms=T0 + 1200)
    assert outcomes(await backend.admit_jobs([again])) == [("b", "created")]
    created = await record(backend, "b")
    assert (created.status, created.run_at_ms) == (S.SCHEDULED, T0 + 2200)
    assert await status(backend, "a") is S.RUNNING
    assert await backend.complete_jobs("w1", [completion(held)], 60_000) == [True]

    third = job("c", unique_key="u", dedupe=debounce, at_ms=T0 + 1300)
    assert outcomes(await backend.admit_jobs([third])) == [("b", "debounced")]


# ------------------------------------------------------------------------------------------------
# Cooldown: the first call runs, repeats within the window are dropped and counted
# ------------------------------------------------------------------------------------------------


async def test_cooldown_drops_repeats_within_its_window(backend: Backend) -> None:
    cooldown = Dedupe(cooldown_ms=10_000)

    first = await backend.admit_jobs([job("a", dedupe=cooldown)])
    repeat = await backend.admit_jobs([job("b", dedupe=cooldown, at_ms=T0 + 9_999)])
    after = await backend.admit_jobs([job("c", dedupe=cooldown, at_ms=T0 + 10_001)])

    assert outcomes(first + repeat + after) == [
        ("a", "created"),
        ("a", "dropped"),
        ("c", "created"),
    ]
    assert await backend.get_job("b", Q) is None
    assert (await stats(backend)).cooled == 1


async def test_cooldown_keys_by_unique_key_or_by_task(backend: Backend) -> None:
    cooldown = Dedupe(cooldown_ms=10_000)

    admitted = await backend.admit_jobs(
        [
            job("a", unique_key="x", dedupe=cooldown),
            job("b", unique_key="y", dedupe=cooldown),
            job("c", unique_key="x", dedupe=cooldown),
            job("d", task=OTHER, dedupe=cooldown),
            job("e", task=OTHER, dedupe=cooldown),
            job("f", dedupe=cooldown),  # LIMITED's own window, apart from its keys'
        ]
    )

    assert outcomes(admitted) == [
        ("a", "created"),
        ("b", "created"),
        ("a", "dropped"),
        ("d", "created"),
        ("d", "dropped"),
        ("f", "created"),
    ]
    assert (await stats(backend)).cooled == 2


async def test_cooldown_applies_before_uniqueness(backend: Backend) -> None:
    # Given a job that opened a cooldown window and still holds its unique key
    cooldown = Dedupe(cooldown_ms=1000)
    await backend.admit_jobs([job("a", unique_key="u", dedupe=cooldown)])

    # Then a repeat within the window is dropped; after it, the key's job is named
    within = job("b", unique_key="u", dedupe=cooldown, at_ms=T0 + 500)
    after = job("c", unique_key="u", dedupe=cooldown, at_ms=T0 + 1500)
    assert outcomes(await backend.admit_jobs([within])) == [("a", "dropped")]
    assert outcomes(await backend.admit_jobs([after])) == [("a", "existing")]
    assert (await stats(backend)).cooled == 1


async def test_outcomes_name_what_happened_to_each_job(backend: Backend) -> None:
    # Every outcome of the contract in one call, in order
    admitted = await backend.admit_jobs(
        [
            job("a", unique_key="u"),
            job("a", unique_key="u"),
            job("b", unique_key="u"),
            job("c", unique_key="u", dedupe=REPLACE),
            job("d", unique_key="deb", dedupe=Dedupe(debounce_ms=10)),
            job("e", unique_key="deb", dedupe=Dedupe(debounce_ms=10)),
            job("f", task=OTHER, dedupe=Dedupe(cooldown_ms=10)),
            job("g", task=OTHER, dedupe=Dedupe(cooldown_ms=10)),
        ]
    )

    assert [a.outcome for a in admitted] == [
        Outcome.CREATED,
        Outcome.EXISTS,
        Outcome.EXISTING,
        Outcome.REPLACED,
        Outcome.CREATED,
        Outcome.DEBOUNCED,
        Outcome.CREATED,
        Outcome.DROPPED,
    ]
    assert [a.job_id for a in admitted] == ["a", "a", "a", "a", "d", "d", "f", "f"]
