"""Broker contract, ``RuntimeConfig`` port: the versioned runtime configuration, its
history, and a queue's pause as every claim and hand-over applies it.

Methods: ``change_config``, ``read_config``, ``config_version``, ``config_history``, and
what ``claim_jobs`` / ``await_jobs`` / ``queue_stats`` do for a paused queue. See
docs/design.md, "Runtime configuration, pause and strikes".
"""

from __future__ import annotations

import pytest

from corq.backends import Backend
from corq.backends.base import CONFIG_HISTORY_KEEP, ConfigScope, TaskRules
from corq.job import JobStatus
from tests.contract.flow import LIMITED, PLAIN, claim_ids, job, keyed, set_rules
from tests.contract.jobs import LEASE_MS, T0, Q, completion, new_job, record, register
from tests.contract.test_await_jobs import ARRIVAL_S, QUIET_S, idle_claim, join

S = JobStatus
QUEUE, TASK, STRIKE = ConfigScope.QUEUE, ConfigScope.TASK, ConfigScope.STRIKE


async def pause(backend: Backend, paused: bool, queue: str = Q, now_ms: int | None = T0) -> int:
    value = "true" if paused else None
    return await backend.change_config(QUEUE, queue, {"paused": value}, "ops", now_ms)


# -- the document, its version and history ---------------------------------------------------


async def test_nothing_set_reads_as_version_0_and_empty(backend: Backend) -> None:
    snapshot = await backend.read_config()

    assert (snapshot.version, dict(snapshot.entries)) == (0, {})
    assert await backend.config_version() == 0
    assert await backend.config_history() == []


async def test_each_change_moves_the_version_once_and_is_read_back(backend: Backend) -> None:
    v1 = await backend.change_config(TASK, "send", {"concurrency": "8", "rate_limit": '"10/s"'},
                                     "alice", T0)  # fmt: skip
    v2 = await backend.change_config(QUEUE, "emails", {"weight": "3"}, "bob", T0 + 1)

    snapshot = await backend.read_config()
    assert (v1, v2, snapshot.version, await backend.config_version()) == (1, 2, 2, 2)
    assert snapshot.get(TASK, "send") == {"concurrency": "8", "rate_limit": '"10/s"'}
    assert snapshot.get(QUEUE, "emails") == {"weight": "3"}
    assert snapshot.get(STRIKE, "send") == {}


async def test_a_change_that_changes_nothing_keeps_the_version(backend: Backend) -> None:
    await backend.change_config(TASK, "send", {"concurrency": "8"}, "alice", T0)

    again = await backend.change_config(TASK, "send", {"concurrency": "8"}, "alice", T0)
    absent = await backend.change_config(TASK, "send", {"rate_limit": None}, "alice", T0)

    assert (again, absent) == (1, 1)
    assert len(await backend.config_history()) == 1


async def test_removing_a_field_gives_the_code_default_back(backend: Backend) -> None:
    await backend.change_config(TASK, "send", {"concurrency": "8", "key_concurrency": "1"},
                                "alice", T0)  # fmt: skip

    await backend.change_config(TASK, "send", {"concurrency": None}, "alice", T0)

    assert (await backend.read_config()).get(TASK, "send") == {"key_concurrency": "1"}


async def test_history_is_newest_first_with_who_when_old_and_new(backend: Backend) -> None:
    await backend.change_config(TASK, "send", {"concurrency": "8"}, "alice", T0)
    await backend.change_config(TASK, "send", {"concurrency": "2"}, "bob", T0 + 5)
    await backend.change_config(TASK, "send", {"concurrency": None}, "carol", T0 + 9)

    changes = await backend.config_history()

    assert [(c.version, c.who, c.at_ms, c.old, c.new) for c in changes] == [
        (3, "carol", T0 + 9, "2", None),
        (2, "bob", T0 + 5, "8", "2"),
        (1, "alice", T0, None, "8"),
    ]
    assert {(c.scope, c.name, c.field) for c in changes} == {(TASK, "send", "concurrency")}


async def test_history_pages_by_version_and_filters_by_entry(backend: Backend) -> None:
    await backend.change_config(TASK, "send", {"concurrency": "8"}, "a", T0)
    await backend.change_config(QUEUE, "emails", {"weight": "2"}, "a", T0)
    await backend.change_config(TASK, "send", {"concurrency": "4"}, "a", T0)
    await backend.change_config(TASK, "other", {"concurrency": "4"}, "a", T0)

    page = await backend.config_history(limit=2, before_version=4)
    sends = await backend.config_history(scope=TASK, name="send")
    queues = await backend.config_history(scope=QUEUE)

    assert [c.version for c in page] == [3, 2]
    assert [c.version for c in sends] == [3, 1]
    assert [(c.name, c.version) for c in queues] == [("emails", 2)]


async def test_one_change_of_several_fields_is_one_version_with_a_record_each(
    backend: Backend,
) -> None:
    version = await backend.change_config(
        TASK, "send", {"concurrency": "8", "rate_limit": '"5/s"'}, "alice", T0
    )

    changes = await backend.config_history()

    assert version == 1
    assert sorted(c.field for c in changes) == ["concurrency", "rate_limit"]
    assert {c.version for c in changes} == {1}


@pytest.mark.slow
async def test_history_keeps_the_newest_changes_only(backend: Backend) -> None:
    for n in range(CONFIG_HISTORY_KEEP + 5):
        await backend.change_config(TASK, "send", {"concurrency": str(n + 1)}, "a", T0)

    changes = await backend.config_history(limit=CONFIG_HISTORY_KEEP + 100)

    assert len(changes) == CONFIG_HISTORY_KEEP
    assert changes[0].version == CONFIG_HISTORY_KEEP + 5
    assert changes[-1].version == 6


# -- pause -----------------------------------------------------------------------------------


async def test_a_paused_queue_hands_out_nothing_and_resumed_hands_out_again(
    backend: Backend,
) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)

    await pause(backend, True)
    paused = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0)
    (stats,) = await backend.queue_stats([Q])
    await pause(backend, False)
    resumed = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0)

    assert (paused.lost, paused.jobs) == (False, [])
    assert (stats.paused, stats.ready) == (True, 2)
    assert sorted(j.id for j in resumed.jobs) == ["a", "b"]
    assert not (await backend.queue_stats([Q]))[0].paused


async def test_pausing_lets_running_jobs_finish(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b")])
    await register(backend)
    (running,) = (await backend.claim_jobs(Q, "w1", 1, LEASE_MS, T0)).jobs

    await pause(backend, True)
    done = await backend.complete_jobs("w1", [completion(running)], 60_000)

    assert done == [True]
    assert (await record(backend, running.id)).status is S.SUCCEEDED
    assert (await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0)).jobs == []


async def test_a_pause_holds_only_its_own_queue(backend: Backend) -> None:
    await backend.enqueue_jobs([new_job("a"), new_job("b", queue="other")])
    await register(backend)
    await register(backend, queue="other")

    await pause(backend, True)

    assert (await backend.claim_jobs(Q, "w1", 10, LEASE_MS, T0)).jobs == []
    other = await backend.claim_jobs("other", "w1", 10, LEASE_MS, T0)
    assert [j.id for j in other.jobs] == ["b"]


async def test_an_idle_holder_is_handed_nothing_while_paused(backend: Backend) -> None:
    # Given an idle holder waiting for a hand-over
    await join(backend, "w1")
    await idle_claim(backend, "w1")

    # When the queue is paused and a job arrives
    await pause(backend, True, now_ms=None)
    await backend.enqueue_jobs([new_job("a")])

    # Then the holder's wait brings no job (a bare wake at most), and its claim takes none
    handed = await backend.await_jobs(Q, "w1", QUIET_S)
    assert not handed
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None, idle=True)
    assert batch.jobs == []
    assert not (await backend.await_jobs(Q, "w1", QUIET_S))
    assert (await record(backend, "a")).status is S.QUEUED


async def test_after_a_resume_a_waiting_holder_gets_the_job(backend: Backend) -> None:
    # Given a paused queue with a job, and a holder whose claim found it paused
    await join(backend, "w1")
    await pause(backend, True, now_ms=None)
    await backend.enqueue_jobs([new_job("a")])
    assert (await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None, idle=True)).jobs == []

    # When the queue is resumed
    await pause(backend, False, now_ms=None)

    # Then a wait for work ends at once and the next claim takes the job
    assert await backend.wait_for_jobs(Q, ARRIVAL_S)
    batch = await backend.claim_jobs(Q, "w1", 10, LEASE_MS, None)
    assert [j.id for j in batch.jobs] == ["a"]


async def test_a_wait_for_work_of_a_paused_queue_does_not_end_for_its_ready_jobs(
    backend: Backend,
) -> None:
    await backend.enqueue_jobs([new_job("a")])
    await pause(backend, True)

    assert await backend.wait_for_jobs(Q, QUIET_S) is False


async def test_pausing_again_changes_nothing_and_the_change_is_in_the_history(
    backend: Backend,
) -> None:
    first = await pause(backend, True)
    again = await pause(backend, True)
    await pause(backend, False)

    changes = await backend.config_history(scope=QUEUE, name=Q)

    assert (first, again) == (1, 1)
    assert [(c.field, c.old, c.new) for c in changes] == [
        ("paused", "true", None),
        ("paused", None, "true"),
    ]


# -- rules stored after jobs were queued (a limit set at runtime) ----------------------------


async def test_a_task_gaining_a_limit_holds_its_jobs_queued_before(backend: Backend) -> None:
    # Given jobs of a task without rules, queued beside a plain task's
    await backend.enqueue_jobs([job(f"a{n}") for n in range(5)] + [job("p", task=PLAIN)])
    await register(backend)

    # When the task gains a concurrency of 2
    await set_rules(backend, TaskRules(task=LIMITED, concurrency=2))

    # Then only 2 of its queued jobs start, in their order, and the plain job is not held
    taken = await claim_ids(backend, "w1")
    assert sorted(taken) == ["a0", "a1", "p"]
    assert (await backend.queue_stats([Q]))[0].ready == 3


async def test_a_keyed_task_gaining_a_key_limit_holds_each_key(backend: Backend) -> None:
    await backend.enqueue_jobs([*keyed("x", "acme", 3), *keyed("y", "bolt", 2)])
    await register(backend)

    await set_rules(backend, TaskRules(task=LIMITED, keyed=True, key_concurrency=1))

    assert sorted(await claim_ids(backend, "w1")) == ["x0", "y0"]
