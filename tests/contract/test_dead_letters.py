"""Broker contract, DeadLetters port: operators' search and re-drive of the dead letters.

Methods: ``find_dead`` (filtered pages, newest first, bounded windows, a cursor),
``redrive_dead`` (one dead job queued again, its payload maybe replaced).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from corq.backends import Backend
from corq.backends.base import BATCH, ClaimedJob, DeadFilter, TaskRules
from corq.errors import ArgumentError
from corq.job import JobStatus
from tests.contract.conftest import Broker, Damage
from tests.contract.jobs import (
    LEASE_MS,
    T0,
    Q,
    assert_damaged,
    claim,
    completion,
    failure,
    new_job,
    record,
    register,
)

ANY = DeadFilter()


async def bury(
    backend: Backend, jobs: list[tuple[str, str, str]], *, at_ms: int = T0, step_ms: int = 1
) -> None:
    """Each (id, task, error) dies, `step_ms` apart from `at_ms`, in the order given."""
    await backend.enqueue_jobs([replace(new_job(job_id), task=task) for job_id, task, _ in jobs])
    await register(backend, "killer")
    held: dict[str, ClaimedJob] = {}
    while len(held) < len(jobs):
        claimed = await claim(backend, "killer", count=1000)
        assert claimed, "fewer jobs to claim than were enqueued"
        held.update((j.id, j) for j in claimed)
    failures = [
        failure(held[job_id], error=error, at_ms=at_ms + n * step_ms)
        for n, (job_id, _, error) in enumerate(jobs)
    ]
    assert await backend.fail_jobs("killer", failures, 60_000) == [True] * len(jobs)


async def find_all(backend: Backend, where: DeadFilter, limit: int = 1000) -> list[str]:
    """Every match, page after page, in the order the pages give them."""
    found: list[str] = []
    cursor: str | None = None
    while True:
        page = await backend.find_dead(Q, where, cursor, limit)
        found += [job.id for job in page.jobs]
        if page.cursor is None:
            return found
        cursor = page.cursor


MIXED = [
    ("a", "mail.send", "SMTPError: Connection refused"),
    ("b", "img.resize", "ValueError: bad size"),
    ("c", "mail.send", "TimeoutError: smtp.example.com"),
    ("d", "img.resize", "KeyError: 'width'"),
    ("e", "mail.send", "ValueError: bad address"),
]


async def test_without_a_filter_every_dead_letter_is_found_newest_first(backend: Backend) -> None:
    await bury(backend, MIXED)

    page = await backend.find_dead(Q, ANY, None, 50)

    assert [j.id for j in page.jobs] == ["e", "d", "c", "b", "a"]
    assert page.cursor is None
    assert page.jobs[0].status is JobStatus.DEAD


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (DeadFilter(task="mail.send"), ["e", "c", "a"]),
        (DeadFilter(task="nope"), []),
        (DeadFilter(error="valueerror"), ["e", "b"]),
        (DeadFilter(error="SMTP"), ["c", "a"]),
        (DeadFilter(error="'WIDTH'"), ["d"]),
        (DeadFilter(since_ms=T0 + 2), ["e", "d", "c"]),
        (DeadFilter(until_ms=T0 + 2), ["b", "a"]),
        (DeadFilter(since_ms=T0 + 1, until_ms=T0 + 4), ["d", "c", "b"]),
        (DeadFilter(task="mail.send", error="value"), ["e"]),
        (DeadFilter(task="mail.send", error="smtp", since_ms=T0 + 1), ["c"]),
        (DeadFilter(task="img.resize", until_ms=T0), []),
    ],
)
async def test_each_filter_and_their_combinations(
    backend: Backend, where: DeadFilter, expected: list[str]
) -> None:
    await bury(backend, MIXED)

    assert await find_all(backend, where) == expected
    assert await find_all(backend, where, limit=1) == expected


async def test_pages_walk_beyond_one_window_each_job_once(backend: Backend) -> None:
    # Given more dead letters than one call looks at, every third one of another task
    n = 2 * BATCH + 500
    jobs = [(f"j{i:05}", "other" if i % 3 else "wanted", f"E: {i}") for i in range(n)]
    await bury(backend, jobs)

    # When an operator pages through those of one task, a few at a time
    cursor: str | None = None
    found: list[str] = []
    calls = 0
    while True:
        page = await backend.find_dead(Q, DeadFilter(task="wanted"), cursor, 300)
        calls += 1
        # Then no page holds more than asked
        assert len(page.jobs) <= 300
        found += [j.id for j in page.jobs]
        if page.cursor is None:
            break
        cursor = page.cursor

    # And every match came once, newest first, though a window holds fewer than asked
    wanted = [job_id for job_id, task, _ in reversed(jobs) if task == "wanted"]
    assert found == wanted
    assert calls >= 3


async def test_a_rare_match_gives_short_pages_that_still_carry_a_cursor(backend: Backend) -> None:
    # Given one match, older than a whole window of others
    await bury(backend, [("old", "rare", "E")] + [(f"n{i}", "common", "E") for i in range(BATCH)])

    first = await backend.find_dead(Q, DeadFilter(task="rare"), None, 10)

    assert first.jobs == []
    assert first.cursor is not None
    second = await backend.find_dead(Q, DeadFilter(task="rare"), first.cursor, 10)
    assert [j.id for j in second.jobs] == ["old"]


async def test_equal_death_times_are_paged_without_loss_or_repeat(backend: Backend) -> None:
    # Given dead letters that all died in the same millisecond
    await bury(backend, [(f"s{i:03}", "t", "E") for i in range(40)], step_ms=0)

    found = await find_all(backend, ANY, limit=7)

    assert sorted(found) == [f"s{i:03}" for i in range(40)]
    assert len(found) == 40


async def test_a_cursor_resumes_after_its_job_left_the_dead_letters(backend: Backend) -> None:
    await bury(backend, MIXED)
    page = await backend.find_dead(Q, ANY, None, 2)
    assert [j.id for j in page.jobs] == ["e", "d"]

    # When the job the cursor stands on is re-driven, then the walk goes on
    assert await backend.redrive_dead(Q, "d", None, T0 + 100)
    rest = await backend.find_dead(Q, ANY, page.cursor, 50)

    assert [j.id for j in rest.jobs] == ["c", "b", "a"]


async def test_a_cursor_of_no_broker_is_refused(backend: Backend) -> None:
    with pytest.raises(ArgumentError, match="cursor"):
        await backend.find_dead(Q, ANY, "garbage", 10)


async def test_damaged_dead_letters_are_found(
    backend: Backend, damage: Damage, broker: Broker
) -> None:
    # Given dead letters garbled after they died, and a job buried because its record was
    # damaged while it waited
    await bury(backend, MIXED)
    await damage.set_field(Q, "b", "attempt", "seven")
    await damage.wrong_type(Q, "d")
    await damage.set_field(Q, "e", "finished_at_ms", "soon")
    await damage.set_field(Q, "c", "finished_at_ms", None)
    await backend.enqueue_jobs([new_job("garbled")])
    await damage.set_field(Q, "garbled", "attempt", "seven")
    await register(backend, "w2", T0 + 50)
    assert await claim(backend, "w2", T0 + 50) == []

    # Then an unfiltered walk lists every one, damaged ones reading as such
    found = (await backend.find_dead(Q, ANY, None, 50)).jobs
    assert {j.id for j in found} == {"a", "b", "c", "d", "e", "garbled"}
    by_id = {j.id: j for j in found}
    assert_damaged(by_id["b"], "attempt")
    assert_damaged(by_id["d"])
    # And the buried one is found by its error; so is, on Redis, the key that is no record
    # at all (by the error it reads as: SQLite's closest damage keeps its stored error)
    no_record = ["d"] if broker.kind == "redis" else []
    found_ids = await find_all(backend, DeadFilter(error="damaged job record"))
    assert found_ids == ["garbled", *no_record]
    assert await find_all(backend, DeadFilter(task="img.resize", error="damaged")) == []
    # And filters on what a garbled record still stores keep working
    assert "b" in await find_all(backend, DeadFilter(task="img.resize"))


async def test_redrive_queues_the_job_again_with_a_fresh_budget(backend: Backend) -> None:
    await bury(backend, MIXED)

    assert await backend.redrive_dead(Q, "c", None, T0 + 100)

    job = await record(backend, "c")
    assert (job.status, job.failures, job.payload) == (JobStatus.QUEUED, 0, b"{}")
    assert await find_all(backend, DeadFilter(task="mail.send")) == ["e", "a"]
    await register(backend, "w1", T0 + 100)
    (again,) = await claim(backend, "w1", T0 + 100)
    assert (again.id, again.failures) == ("c", 0)


async def test_redrive_with_a_payload_runs_the_new_arguments(backend: Backend) -> None:
    await bury(backend, MIXED)

    assert await backend.redrive_dead(Q, "a", b'{"args":[2]}', T0 + 100)

    assert (await record(backend, "a")).payload == b'{"args":[2]}'
    await register(backend, "w1", T0 + 100)
    (again,) = await claim(backend, "w1", T0 + 100)
    assert (again.id, again.payload) == ("a", b'{"args":[2]}')


async def test_redrive_of_a_job_that_is_not_dead_changes_nothing(backend: Backend) -> None:
    await bury(backend, MIXED)
    await backend.enqueue_jobs([new_job("alive", payload=b"old")])

    # A job re-driven already, a live one, and an unknown id
    assert await backend.redrive_dead(Q, "a", None, T0 + 100)
    assert not await backend.redrive_dead(Q, "a", b"new", T0 + 100)
    assert not await backend.redrive_dead(Q, "alive", b"new", T0 + 100)
    assert not await backend.redrive_dead(Q, "nobody", b"new", T0 + 100)

    assert (await record(backend, "a")).payload == b"{}"
    assert (await record(backend, "alive")).payload == b"old"
    assert await backend.get_job("nobody", Q) is None


async def test_a_redriven_job_of_a_limited_task_goes_back_to_its_lane(backend: Backend) -> None:
    """Re-drive is retry_dead's step: the job waits where its task's rules put it."""
    # Given a task limited to one running job, whose dead job is re-driven while another
    # of its jobs runs
    await backend.set_rules(Q, [TaskRules(task="tasks.add", concurrency=1)])
    await backend.enqueue_jobs([new_job("first"), new_job("second")])
    await register(backend, "w1")
    (first,) = await claim(backend, "w1", count=1)
    assert await backend.fail_jobs("w1", [failure(first)], 60_000) == [True]
    (second,) = await claim(backend, "w1", count=10)
    assert second.id == "second"
    assert await backend.redrive_dead(Q, "first", None, T0 + 10)

    # Then it is not handed out while the limit is taken, and is once it is free
    assert await claim(backend, "w1", T0 + 10) == []
    assert await backend.complete_jobs("w1", [completion(second)], 60_000) == [True]
    again = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0 + 12)
    assert [j.id for j in again.jobs] == ["first"]
