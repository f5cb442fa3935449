from __future__ import annotations

import asyncio

from corq.clock import FakeClock


async def test_fake_clock_wakes_sleepers_only_when_advanced() -> None:
    clock = FakeClock()
    start = clock.now_ms()
    sleeper = asyncio.create_task(clock.sleep(10))
    await asyncio.sleep(0.01)
    assert not sleeper.done()
    clock.advance(9.999)
    await asyncio.sleep(0.01)
    assert not sleeper.done()
    clock.advance(0.001)
    await asyncio.wait_for(sleeper, 1)
    assert clock.now_ms() == start + 10_000


async def test_fake_clock_wakes_a_sleeper_on_another_thread() -> None:
    clock = FakeClock()
    woke = asyncio.Event()
    loop = asyncio.get_running_loop()

    def other_thread() -> None:
        asyncio.run(clock.sleep(5))
        loop.call_soon_threadsafe(woke.set)

    thread = asyncio.create_task(asyncio.to_thread(other_thread))
    await asyncio.sleep(0.05)
    clock.advance(5)
    await asyncio.wait_for(woke.wait(), 2)
    await thread
