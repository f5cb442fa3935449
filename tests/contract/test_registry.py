"""Broker contract: the registry of queue names.

Every queue enqueued to or served is listed until pruned; ``prune_queues`` forgets only the
names of queues that hold nothing in any lane, have no registered worker and were not used
for `idle_ms`. Names another program wrote that are not valid UTF-8 are skipped.
"""

from __future__ import annotations

from corq.backends import Backend
from corq.backends.base import NewJob
from tests.contract.conftest import Broker, Damage
from tests.contract.jobs import (
    claim,
    completion,
    failure,
    lease_of,
    register,
    wall_ms,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def job(job_id: str, queue: str, delay_ms: int = 0) -> NewJob:
    """A job stamped by this machine's clock (the broker's, in these tests)."""
    now = wall_ms()
    return NewJob(
        id=job_id, task="t", queue=queue, payload=b"", enqueued_at_ms=now, run_at_ms=now + delay_ms
    )


async def fill_queues(backend: Backend) -> None:
    """One queue per way of holding something, and one ("emptied") that holds nothing.

    Everything runs on broker time (None), as workers on the system clock do."""
    await backend.enqueue_jobs(
        [
            job("r", "ready"),
            job("l", "delayed", delay_ms=DAY_MS),
            job("x", "dead"),
            job("h", "running"),
            job("e", "emptied"),
        ]
    )
    # "served": a worker with a lease of a day, and nothing to do
    await backend.register_worker(lease_of("idle", "served", lease_ms=DAY_MS), None)
    # "running": a job held by a worker that since departed without lingering
    await register(backend, "busy", None, queue="running")
    await claim(backend, "busy", None, queue="running")
    await backend.deregister_worker(lease_of("busy", "running"), None)
    # "dead": a job that failed for good
    await register(backend, "w1", None, queue="dead")
    (x,) = await claim(backend, "w1", None, queue="dead")
    assert await backend.fail_jobs("w1", [failure(x, None, at_ms=wall_ms())], 60_000) == [True]
    await backend.deregister_worker(lease_of("w1", "dead"), None)
    # "emptied": its only job succeeded, its worker left
    await register(backend, "w2", None, queue="emptied")
    (e,) = await claim(backend, "w2", None, queue="emptied")
    done = completion(e, at_ms=wall_ms())
    assert await backend.complete_jobs("w2", [done], 60_000) == [True]
    await backend.deregister_worker(lease_of("w2", "emptied"), None)


QUEUES = {"ready", "delayed", "dead", "running", "served", "emptied"}


async def test_every_queue_enqueued_to_or_served_is_listed(backend: Backend) -> None:
    await fill_queues(backend)

    assert set(await backend.list_queues()) == QUEUES
    assert {s.queue for s in await backend.queue_stats()} == QUEUES


async def test_prune_forgets_only_queues_that_hold_nothing(backend: Backend) -> None:
    # Given queues holding something each way, and one that holds nothing
    await fill_queues(backend)

    # When an operator prunes queues unused for an hour, two hours from now
    pruned = await backend.prune_queues(wall_ms() + 2 * HOUR_MS, HOUR_MS)

    # Then only the empty one is forgotten
    assert pruned == ["emptied"]
    assert set(await backend.list_queues()) == QUEUES - {"emptied"}
    assert await backend.prune_queues(wall_ms() + 2 * HOUR_MS, HOUR_MS) == []


async def test_prune_keeps_a_queue_used_recently(backend: Backend) -> None:
    await fill_queues(backend)

    assert await backend.prune_queues(None, HOUR_MS) == []

    assert set(await backend.list_queues()) == QUEUES


async def test_a_pruned_queue_is_listed_again_once_used(backend: Backend, broker: Broker) -> None:
    await fill_queues(backend)
    assert await backend.prune_queues(wall_ms() + 2 * HOUR_MS, HOUR_MS) == ["emptied"]

    # a producer that starts later enqueues to it again
    producer = broker.open()
    await producer.enqueue_jobs([job("again", "emptied")])

    assert "emptied" in await backend.list_queues()
    (stats,) = await backend.queue_stats(["emptied"])
    assert stats.ready == 1


async def test_names_that_are_not_valid_utf8_are_skipped(backend: Backend, damage: Damage) -> None:
    await backend.enqueue_jobs([job("a", "good")])
    await damage.add_queue_name(b"bad\xff\xfe")

    assert await backend.list_queues() == ["good"]
    assert [s.queue for s in await backend.queue_stats()] == ["good"]
    found = await backend.get_job("a")
    assert found is not None
    assert found.queue == "good"
