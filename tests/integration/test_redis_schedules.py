"""Redis: schedules across slots, damaged schedule data, and a move stopped between its steps.

The ScheduleStore contract (tests/contract/test_schedule_store.py) holds on Redis; here is
what only Redis has: a schedule's record in its queue's slot and the index in another, so
every script must stay in one slot and a write that crashes between its scripts must leave
nothing fired twice and the schedule readable; and keys another program may have written.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from corq.backends.base import (
    NewJob,
    ScheduleStep,
    SkippedTicks,
    TickOutcome,
    TickStep,
)
from corq.backends.redis import RedisBackend
from corq.backends.redis.calls import ScriptCall, ScriptRunner
from corq.backends.redis.keys import RedisKeys
from corq.backends.redis.schedule_replies import parse_state
from corq.backends.redis.scripts import Scripts
from corq.errors import BrokerDataError
from corq.job import JobStatus
from tests.contract.jobs import LEASE_MS, T0, claim, register

S = "nightly"
Q1, Q2 = "reports", "reports:slow"
DEF = b'{"every_ms": 60000}'
MINUTE = 60_000
FENCE = 1
DONE, STALE, GONE = TickOutcome.DONE, TickOutcome.STALE, TickOutcome.GONE
#: The scripts of the ScheduleStore port (every lua/*.lua file naming schedules).
SCHEDULE_SCRIPTS = sorted(
    p.name.removesuffix(".lua")
    for p in resources.files("corq.backends.redis").joinpath("lua").iterdir()
    if p.name.endswith(".lua") and "schedule" in p.name
)


def at(n: int) -> int:
    return T0 + n * MINUTE


def tick_job(tick_ms: int, queue: str = Q1, name: str = S) -> NewJob:
    return NewJob(
        id=f"{name}@{tick_ms}",
        task="tasks.report",
        queue=queue,
        payload=b"{}",
        enqueued_at_ms=tick_ms,
        run_at_ms=tick_ms,
        schedule=name,
        tick_ms=tick_ms,
    )


def fire(tick_ms: int, queue: str = Q1, name: str = S) -> ScheduleStep:
    return ScheduleStep(
        schedule=name, step=TickStep.FIRE, tick_ms=tick_ms, job=tick_job(tick_ms, queue, name)
    )


@pytest.fixture
async def backend(redis_url: str, prefix: str) -> AsyncIterator[RedisBackend]:
    b = RedisBackend(redis_url, prefix=prefix)
    yield b
    await b.close()


@pytest.fixture
def keys(prefix: str) -> RedisKeys:
    return RedisKeys(prefix)


async def advance(backend: RedisBackend, *steps: ScheduleStep, now_ms: int = T0) -> list[Any]:
    return await backend.advance_schedules(list(steps), FENCE, now_ms)


async def job_ids(raw: Redis, keys: RedisKeys, queue: str) -> set[str]:
    """The ids of every job record of `queue` (whatever its state)."""
    prefix = keys.queue(queue).job_prefix
    return {k.decode()[len(prefix) :] async for k in raw.scan_iter(match=f"{prefix}*")}


# -- one slot per script ----------------------------------------------------------------
def test_the_schedule_keys_of_a_queue_share_its_slot_and_the_global_ones_theirs() -> None:
    q = RedisKeys("corq").queue("emails:high")
    schedule = q.schedule("nightly.report:eu")
    names = [q.ready, q.schedule_fence, *schedule.all, q.job("nightly.report:eu@1")]
    g = RedisKeys("corq").schedules
    globals_ = [g.index, g.changes, g.removed, g.version, g.leader, g.fence]

    assert len({key_slot(name.encode()) for name in names}) == 1
    assert len({key_slot(name.encode()) for name in globals_}) == 1


async def test_every_schedule_script_touches_one_slot(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every call the backend sends recorded (keys, and prefixes it builds keys from)
    sent: list[ScriptCall[Any]] = []
    run, run_all = ScriptRunner.run, ScriptRunner.run_all

    async def record_one(self: ScriptRunner, call: ScriptCall[Any]) -> Any:
        sent.append(call)
        return await run(self, call)

    async def record_all(self: ScriptRunner, calls: Any) -> Any:
        sent.extend(calls)
        return await run_all(self, calls)

    monkeypatch.setattr(ScriptRunner, "run", record_one)
    monkeypatch.setattr(ScriptRunner, "run_all", record_all)

    # When a schedule lives its whole life: created, fired, paused, resumed, moved, removed
    await backend.add_schedule(S, Q1, DEF, T0)
    lease = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)
    assert lease is not None
    assert await advance(backend, fire(at(1))) == [DONE]
    await backend.set_schedule_paused(S, True, "x", at(2))
    gap = SkippedTicks(first_tick_ms=at(2), last_tick_ms=at(2), count=1, reason="p", at_ms=at(3))
    await backend.set_schedule_paused(S, False, None, at(3), skipped=gap)
    await backend.update_schedule(S, Q2, DEF, at(3))
    assert await advance(backend, fire(at(4), Q2)) == [DONE]
    await backend.update_schedule(S, Q2, b"{}", at(5))
    assert await backend.remove_schedule(S) is True
    assert await backend.release_scheduler_lease("s1") is True

    # Then every script ran, and each touched the keys of one slot only
    scripts = backend._scripts
    names = {id(script): name for name, script in scripts._loaded.items()}
    assert set(SCHEDULE_SCRIPTS) <= {names[id(call.script)] for call in sent}
    for call in sent:
        slots = {key_slot(key.encode()) for key in call.keys}
        # a prefix a script appends names to carries the same hash tag
        slots |= {
            key_slot(arg.encode() + b"x")
            for arg in call.args
            if isinstance(arg, str) and arg.endswith(":") and "{" in arg
        }
        assert len(slots) == 1, (names[id(call.script)], call.keys)


async def test_only_documented_keys_are_written(
    backend: RedisBackend, raw: Redis, keys: RedisKeys, prefix: str
) -> None:
    await backend.add_schedule(S, Q1, DEF, T0)
    await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)
    await advance(backend, fire(at(1)))
    skip = ScheduleStep(schedule=S, step=TickStep.SKIP, tick_ms=at(2), reason="overlap")
    await advance(backend, skip)
    await backend.add_schedule("gone", Q1, DEF, T0)
    await backend.remove_schedule("gone")

    written = {k.decode() async for k in raw.scan_iter(match=f"{prefix}:*")}

    q, g = keys.queue(Q1), keys.schedules
    documented = {
        *q.schedule(S).all,
        q.schedule_fence,
        q.ready,
        q.seq,
        q.wake,
        q.job(f"{S}@{at(1)}"),
        q.events,
    }
    documented |= {g.index, g.changes, g.removed, g.version, g.announced, g.leader, g.fence}
    documented.add(keys.queues)
    assert written == documented


# -- the new job fields -------------------------------------------------------------------
async def test_a_tick_carries_its_schedule_and_other_jobs_store_no_empty_fields(
    backend: RedisBackend, raw: Redis, keys: RedisKeys
) -> None:
    # Given a tick's job and a plain job in one queue
    await backend.add_schedule(S, Q1, DEF, T0)
    assert await advance(backend, fire(at(1))) == [DONE]
    plain = NewJob(id="plain", task="t", queue=Q1, payload=b"", enqueued_at_ms=T0, run_at_ms=T0)
    await backend.enqueue_jobs([plain])

    # Then the plain record has no schedule fields at all, and claims read them as None
    assert not await raw.hexists(keys.queue(Q1).job("plain"), "schedule")
    assert not await raw.hexists(keys.queue(Q1).job("plain"), "tick_ms")
    await register(backend, "w1", queue=Q1)
    claimed = {job.id: job for job in await claim(backend, "w1", queue=Q1)}
    assert (claimed["plain"].schedule, claimed["plain"].tick_ms) == (None, None)
    assert (claimed[f"{S}@{at(1)}"].schedule, claimed[f"{S}@{at(1)}"].tick_ms) == (S, at(1))
    shown = await backend.get_job(f"{S}@{at(1)}", Q1)
    assert shown is not None
    assert (shown.schedule, shown.tick_ms, shown.status) == (S, at(1), JobStatus.RUNNING)


# -- damaged schedule data ----------------------------------------------------------------
DAMAGE: dict[str, Callable[[Redis, RedisKeys], Any]] = {
    "watermark not a number": lambda r, k: r.hset(
        k.queue(Q1).schedule(S).record, "last_tick_ms", "soon"
    ),
    "paused not a flag": lambda r, k: r.hset(k.queue(Q1).schedule(S).record, "paused", "yes"),
    "no definition": lambda r, k: r.hdel(k.queue(Q1).schedule(S).record, "definition"),
    "record of another type": lambda r, k: _replace_with_string(r, k.queue(Q1).schedule(S).record),
    "fired ticks of another type": lambda r, k: _replace_with_string(
        r, k.queue(Q1).schedule(S).fired
    ),
}


async def _replace_with_string(raw: Redis, key: str) -> None:
    await raw.delete(key)
    await raw.set(key, b"not what corq wrote")


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
async def test_a_damaged_schedule_costs_only_itself(
    backend: RedisBackend,
    raw: Redis,
    keys: RedisKeys,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given two schedules, one of them damaged by another program
    await backend.add_schedule(S, Q1, DEF, T0)
    await backend.add_schedule("healthy", Q1, DEF, T0)
    await backend.set_schedule_paused("healthy", True, "x", at(1))
    await DAMAGE[damage](raw, keys)
    record_damaged = damage != "fired ticks of another type"

    # When it is listed, read, changed and stepped alongside the healthy one
    with caplog.at_level(logging.WARNING, "corq.backends.redis.schedules"):
        listed = await backend.list_schedules()
        changes = await backend.changed_schedules(0)
    outcomes = await advance(backend, fire(at(2)), fire(at(2), name="healthy"))

    # Then the healthy one reads and steps as usual; the damaged one fires nothing
    assert outcomes[0] == GONE
    assert outcomes[1] == TickOutcome.PAUSED
    assert await job_ids(raw, keys, Q1) == set()
    if record_damaged:
        assert [s.name for s in listed] == ["healthy"]
        assert [s.name for s in changes.changed] == ["healthy"]
        assert S in caplog.text
        with pytest.raises(BrokerDataError, match="damaged schedule record"):
            await backend.get_schedule(S)
        assert changes.removed == [S]
    # and removing it clears it, whatever it held
    assert await backend.remove_schedule(S) is True
    assert await backend.get_schedule(S) is None
    assert {k async for k in raw.scan_iter(match=keys.queue(Q1).schedule_prefix + f"{S}*")} == set()
    assert await backend.add_schedule(S, Q1, DEF, at(3)) is not None


async def test_damaged_log_entries_are_left_out_of_the_history(
    backend: RedisBackend, raw: Redis, keys: RedisKeys
) -> None:
    # Given a schedule with two runs and a skip, then garbage pushed onto both logs
    await backend.add_schedule(S, Q1, DEF, T0)
    skip = ScheduleStep(schedule=S, step=TickStep.SKIP, tick_ms=at(2), reason="overlap")
    assert await advance(backend, fire(at(1)), skip, fire(at(3))) == [DONE] * 3
    sk = keys.queue(Q1).schedule(S)
    wrong_shape = msgspec.msgpack.encode(["tick", 1])
    await raw.lpush(sk.runs, b"\xc1 not msgpack", wrong_shape)
    await raw.lpush(sk.skips, msgspec.msgpack.encode([1, 2, "three", "r", 5]))

    # When its history and record are read
    runs, skips = await backend.schedule_history(S)
    record = await backend.get_schedule(S)

    # Then the good entries remain (the latest run, garbage, reads as none)
    assert [r.tick_ms for r in runs] == [at(3), at(1)]
    assert [s.first_tick_ms for s in skips] == [at(2)]
    assert record is not None
    assert (record.last_run, record.fired, record.skipped) == (None, 2, 1)


async def test_a_change_counter_that_is_no_number_is_refused_not_crashed_on(
    backend: RedisBackend, raw: Redis, keys: RedisKeys
) -> None:
    await backend.add_schedule(S, Q1, DEF, T0)
    await raw.set(keys.schedules.version, b"many")

    with pytest.raises(BrokerDataError):
        await backend.schedules_version()
    # the firing state does not depend on it
    assert await advance(backend, fire(at(1))) == [DONE]
    with pytest.raises(BrokerDataError):
        await backend.update_schedule(S, Q1, b"{}", at(2))


async def test_a_damaged_lease_is_taken_over(
    backend: RedisBackend, raw: Redis, keys: RedisKeys
) -> None:
    await raw.hset(
        keys.schedules.leader, mapping={"holder": "ghost", "fence": "x", "deadline_ms": "y"}
    )

    assert await backend.scheduler_lease() is None
    lease = await backend.acquire_scheduler_lease("s1", LEASE_MS, T0)
    assert lease is not None
    assert lease.holder == "s1"


# -- a move stopped between its steps -----------------------------------------------------
async def moved_out(backend: RedisBackend, keys: RedisKeys) -> None:
    """Run only the first step of moving S from Q1 to Q2 (as if the mover crashed)."""
    scripts: Scripts = backend._scripts
    out = await scripts.run(scripts.move_schedule_out(keys.queue(Q1).schedule(S), target=Q2))
    assert out.change.status == "moving"


async def moved_in(backend: RedisBackend, keys: RedisKeys) -> None:
    """Run the first two steps of the move (as if the mover crashed before the index)."""
    scripts: Scripts = backend._scripts
    out = await scripts.run(scripts.move_schedule_out(keys.queue(Q1).schedule(S), target=Q2))
    call = scripts.move_schedule_in(
        keys.queue(Q2).schedule(S),
        state=parse_state(out.fields),
        moved=out,
        definition=DEF,
        now_ms=at(2),
        reset_ticks=False,
    )
    assert (await scripts.run(call)).status == "created"


async def test_a_move_stopped_after_its_first_step_fires_nothing_and_reads(
    backend: RedisBackend, raw: Redis, keys: RedisKeys
) -> None:
    # Given a schedule in Q1 that fired at(1), and a move to Q2 stopped after its first step
    await backend.add_schedule(S, Q1, DEF, T0)
    assert await advance(backend, fire(at(1))) == [DONE]
    await moved_out(backend, keys)

    # Then it still reads, with its state, where it was
    found = await backend.get_schedule(S)
    assert found is not None
    assert (found.queue, found.last_tick_ms, found.fired) == (Q1, at(1), 1)
    assert [s.name for s in await backend.list_schedules()] == [S]
    # and no step fires it, in either queue
    assert await advance(backend, fire(at(2))) == [GONE]
    assert await advance(backend, fire(at(2), Q2)) == [GONE]

    # When the next write comes (the leader writing its code schedule again)
    again = await backend.update_schedule(S, Q2, DEF, at(3), create=True)

    # Then the move is finished, its state whole, and each tick fired once
    assert again is not None
    assert (again.queue, again.last_tick_ms, again.fired) == (Q2, at(1), 1)
    assert await advance(backend, fire(at(1), Q2)) == [STALE]
    assert await advance(backend, fire(at(2), Q2)) == [DONE]
    assert await job_ids(raw, keys, Q1) == {f"{S}@{at(1)}"}
    assert await job_ids(raw, keys, Q2) == {f"{S}@{at(2)}"}
    assert not await raw.exists(*keys.queue(Q1).schedule(S).all)
    assert [r.tick_ms for r in (await backend.schedule_history(S))[0]] == [at(2), at(1)]


async def test_a_move_stopped_before_the_index_reads_and_fires_in_the_new_queue(
    backend: RedisBackend, raw: Redis, keys: RedisKeys
) -> None:
    # Given a move from Q1 to Q2 stopped after its second step (the index still says Q1)
    await backend.add_schedule(S, Q1, DEF, T0)
    assert await advance(backend, fire(at(1))) == [DONE]
    await moved_in(backend, keys)
    assert await raw.hget(keys.schedules.index, S) == Q1.encode()

    # Then it reads from Q2, steps in Q2 fire once, steps in Q1 find nothing
    found = await backend.get_schedule(S)
    assert found is not None
    assert (found.queue, found.last_tick_ms) == (Q2, at(1))
    assert await advance(backend, fire(at(2))) == [GONE]
    assert await advance(backend, fire(at(2), Q2), fire(at(1), Q2)) == [DONE, STALE]

    # When it is paused (any write), the move is finished first
    version = await backend.schedules_version()
    paused = await backend.set_schedule_paused(S, True, "x", at(3))

    # Then the index names Q2, the leftover in Q1 is gone, and a reader saw the change
    assert paused is not None
    assert (paused.queue, paused.paused, paused.last_tick_ms) == (Q2, True, at(2))
    assert await raw.hget(keys.schedules.index, S) == Q2.encode()
    assert not await raw.exists(*keys.queue(Q1).schedule(S).all)
    assert [s.queue for s in (await backend.changed_schedules(version)).changed] == [Q2]
    assert await job_ids(raw, keys, Q1) == {f"{S}@{at(1)}"}
    assert await job_ids(raw, keys, Q2) == {f"{S}@{at(2)}"}


@pytest.mark.parametrize("stopped", ["after the first step", "after the second step"])
async def test_a_stopped_move_is_removed_from_both_queues(
    backend: RedisBackend, raw: Redis, keys: RedisKeys, stopped: str
) -> None:
    await backend.add_schedule(S, Q1, DEF, T0)
    await advance(backend, fire(at(1)))
    await (moved_out if stopped == "after the first step" else moved_in)(backend, keys)

    assert await backend.remove_schedule(S) is True

    assert await backend.get_schedule(S) is None
    for queue in (Q1, Q2):
        assert not await raw.exists(*keys.queue(queue).schedule(S).all)
    assert await advance(backend, fire(at(2)), fire(at(2), Q2)) == [GONE, GONE]


async def test_a_change_stopped_before_its_version_gets_one_at_the_next_write(
    backend: RedisBackend, keys: RedisKeys
) -> None:
    # Given a schedule whose update wrote its record, then crashed before its version step
    version = (await backend.add_schedule(S, Q1, DEF, T0) or pytest.fail("not added")).version
    scripts: Scripts = backend._scripts
    call = scripts.update_schedule(
        keys.queue(Q1).schedule(S), definition=b"{}", now_ms=at(1), reset_ticks=False
    )
    assert (await scripts.run(call)).status == "updated"
    assert (await backend.changed_schedules(version)).changed == []

    # When the writer tries again (a write that finds nothing to change)
    again = await backend.update_schedule(S, Q1, b"{}", at(2))

    # Then the change gets its version, and readers of changes see it
    assert again is not None
    assert again.version > version
    assert [s.definition for s in (await backend.changed_schedules(version)).changed] == [b"{}"]
    # and once it has one, an identical write changes nothing again
    assert await backend.update_schedule(S, Q1, b"{}", at(3)) == again


async def test_a_create_stopped_before_its_record_is_absent_and_can_be_made_again(
    backend: RedisBackend, keys: RedisKeys
) -> None:
    # Given only the index step of a create (its maker crashed before the record)
    scripts: Scripts = backend._scripts
    call = scripts.reserve_schedule_name(keys.schedules, name=S, queue=Q1, stale=None)
    assert await scripts.run(call) is None

    # Then no reader sees it, no step fires it, and creating it (in any queue) works
    assert await backend.get_schedule(S) is None
    assert await backend.list_schedules() == []
    assert await advance(backend, fire(at(1))) == [GONE]
    created = await backend.add_schedule(S, Q2, DEF, at(1))
    assert created is not None
    assert created.queue == Q2
