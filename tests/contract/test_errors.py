"""Broker contract: what a broker refuses, and how it fails.

- ``enqueue_jobs`` refuses an empty id, an id over MAX_JOB_ID_CHARS and a priority outside
  PRIORITY_MIN..PRIORITY_MAX with an EnqueueError, the same message on every broker, and
  writes nothing of the batch;
- a request the broker refuses, or a store it cannot use, raises BrokerDataError at once
  (retrying will not help); a broker that cannot be reached raises BrokerError (retried).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from corq.backends import Backend, open_backend
from corq.backends.base import MAX_JOB_ID_CHARS, PRIORITY_MAX, PRIORITY_MIN
from corq.errors import BrokerDataError, BrokerError, EnqueueError
from tests.conftest import free_port
from tests.contract.conftest import Broker, Damage
from tests.contract.jobs import Q, claim, new_job, record, register

REFUSED = {
    "empty id": new_job(""),
    "id too long": new_job("x" * (MAX_JOB_ID_CHARS + 1)),
    "priority too high": new_job("p", priority=PRIORITY_MAX + 1),
    "priority too low": new_job("p", priority=PRIORITY_MIN - 1),
}
#: What each message must name, so the producer knows what to fix.
NAMED = {
    "empty id": "id",
    "id too long": str(MAX_JOB_ID_CHARS),
    "priority too high": "priority",
    "priority too low": "priority",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_enqueue_refuses_a_bad_id_or_priority_and_writes_nothing(
    backend: Backend, case: str
) -> None:
    with pytest.raises(EnqueueError) as refused:
        await backend.enqueue_jobs([new_job("fine"), REFUSED[case], new_job("fine2", queue="q2")])

    assert NAMED[case] in str(refused.value)
    assert await backend.get_job("fine", Q) is None
    assert await backend.get_job("fine2") is None
    (stats,) = await backend.queue_stats([Q])
    assert stats.ready == 0


async def test_enqueue_accepts_the_limits_themselves(backend: Backend) -> None:
    longest = "x" * MAX_JOB_ID_CHARS
    jobs = [
        new_job(longest, priority=PRIORITY_MIN),
        new_job("top", priority=PRIORITY_MAX),
    ]

    assert await backend.enqueue_jobs(jobs) == [True, True]

    assert (await record(backend, longest)).priority == PRIORITY_MIN
    await register(backend, "w1")
    assert [j.id for j in await claim(backend, "w1")] == ["top", longest]


async def test_both_brokers_refuse_with_the_same_message(
    redis_url: str, tmp_path: Path, prefix: str
) -> None:
    brokers = [
        open_backend(redis_url, prefix=prefix),
        open_backend(f"sqlite:///{tmp_path / 'corq.db'}"),
    ]
    try:
        for case, bad in sorted(REFUSED.items()):
            messages = []
            for backend in brokers:
                with pytest.raises(EnqueueError) as refused:
                    await backend.enqueue_jobs([bad])
                messages.append(str(refused.value))
            assert messages[0] == messages[1], case
    finally:
        for backend in brokers:
            await backend.close()


async def test_a_value_that_cannot_be_stored_is_refused_not_an_outage(backend: Backend) -> None:
    # A lone surrogate (say from a file name that is not UTF-8) cannot be stored as text
    unstorable = dataclasses.replace(new_job("a"), task="tasks.\udcff")

    started = time.monotonic()
    with pytest.raises(BrokerDataError):
        await backend.enqueue_jobs([unstorable])

    # it is refused at once, and the broker goes on serving
    assert time.monotonic() - started < 2
    assert await backend.enqueue_jobs([new_job("b")]) == [True]
    assert (await record(backend, "b")).task == "tasks.add"


async def test_a_store_it_cannot_use_is_refused_at_once(broker: Broker, damage: Damage) -> None:
    # Given a store another program left unusable (a key of the wrong type where the queue's
    # ready jobs go; a schema written by a newer corq)
    first = broker.open()
    await first.enqueue_jobs([new_job("a")])
    await damage.make_unusable(Q)

    # When a backend uses it, then it is refused at once, not retried as an outage
    backend = broker.open()
    started = time.monotonic()
    with pytest.raises(BrokerDataError):
        await backend.enqueue_jobs([new_job("b")])
    assert time.monotonic() - started < 2


def unreachable_url(broker: Broker, tmp_path: Path) -> str:
    if broker.kind == "redis":
        return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    return f"sqlite:///{blocker / 'corq.db'}"  # a file cannot be opened under a file


async def test_a_broker_that_cannot_be_reached_is_an_outage(broker: Broker, tmp_path: Path) -> None:
    backend = open_backend(unreachable_url(broker, tmp_path), socket_timeout_s=1)
    try:
        with pytest.raises(BrokerError):
            await backend.ping()
        with pytest.raises(BrokerError):
            await backend.enqueue_jobs([new_job("a")])
    finally:
        await backend.close()
