"""Broker contract, ControlChannel port: messages to workers, and their replies.

Methods: ``send_control``, ``control_listener`` (``subscribe``, ``next_message``,
``close``), ``put_reply``, ``take_reply``.
"""

from __future__ import annotations

import asyncio

from corq.backends import Backend
from corq.backends.base import ControlMessage
from corq.control import ALL_WORKERS, ControlKind
from tests.contract.conftest import Broker


def cancel(worker: str, job_id: str = "j1") -> ControlMessage:
    return ControlMessage(kind=ControlKind.CANCEL, worker_id=worker, job_id=job_id, queue="q")


async def test_a_message_reaches_its_worker_and_no_other(broker: Broker) -> None:
    sender, backend = broker.open(), broker.open()
    mine, other = backend.control_listener("w1"), backend.control_listener("w2")
    await mine.subscribe()
    await other.subscribe()
    try:
        await sender.send_control(cancel("w1"))

        assert await mine.next_message(5) == cancel("w1")
        assert await other.next_message(0.2) is None
    finally:
        await mine.close()
        await other.close()


async def test_a_message_for_all_reaches_every_worker(broker: Broker) -> None:
    backend = broker.open()
    listeners = [backend.control_listener(w) for w in ("w1", "w2")]
    for listener in listeners:
        await listener.subscribe()
    message = ControlMessage(
        kind=ControlKind.INSPECT, worker_id=ALL_WORKERS, request_id="r1", body=b'{"x":\x00}'
    )
    try:
        await broker.open().send_control(message)

        assert [await listener.next_message(5) for listener in listeners] == [message] * 2
    finally:
        for listener in listeners:
            await listener.close()


async def test_messages_come_in_the_order_they_were_sent(backend: Backend) -> None:
    listener = backend.control_listener("w1")
    await listener.subscribe()
    try:
        for n in range(5):
            await backend.send_control(cancel("w1", f"j{n}"))

        got = [await listener.next_message(5) for _ in range(5)]
        assert [m.job_id for m in got if m is not None] == [f"j{n}" for n in range(5)]
    finally:
        await listener.close()


async def test_a_waiting_listener_wakes_when_a_message_comes(broker: Broker) -> None:
    backend = broker.open()
    listener = backend.control_listener("w1")
    await listener.subscribe()
    try:
        waiting = asyncio.create_task(listener.next_message(10))
        await asyncio.sleep(0)  # the listener is waiting before the message is sent
        started = asyncio.get_running_loop().time()
        await broker.open().send_control(cancel("w1"))

        assert await waiting == cancel("w1")
        assert asyncio.get_running_loop().time() - started < 1.0
    finally:
        await listener.close()


async def test_messages_sent_before_the_subscription_are_not_delivered(backend: Backend) -> None:
    await backend.send_control(cancel("w1", "old"))
    listener = backend.control_listener("w1")
    await listener.subscribe()
    try:
        await backend.send_control(cancel("w1", "new"))

        got = await listener.next_message(5)
        assert got is not None
        assert got.job_id == "new"
        assert listener.reconnects == 0
    finally:
        await listener.close()


async def test_a_reply_is_taken_once(broker: Broker) -> None:
    asker, worker = broker.open(), broker.open()
    await worker.put_reply("r1", b"\x00stacks", 10_000)

    assert await asker.take_reply("r1", 5) == b"\x00stacks"
    assert await asker.take_reply("r1", 0.1) is None


async def test_take_reply_waits_for_the_answer(broker: Broker) -> None:
    asker, worker = broker.open(), broker.open()
    taking = asyncio.create_task(asker.take_reply("r1", 10))
    await asyncio.sleep(0.05)
    await worker.put_reply("r1", b"answer", 10_000)

    assert await taking == b"answer"


async def test_take_reply_gives_none_when_nobody_answers(backend: Backend) -> None:
    assert await backend.take_reply("nobody", 0.2) is None


async def test_a_reply_nobody_took_in_time_is_gone(backend: Backend) -> None:
    await backend.put_reply("r1", b"late", 1)
    await asyncio.sleep(0.05)  # the reply's time to live (1 ms) passes: real time

    assert await backend.take_reply("r1", 0.1) is None
