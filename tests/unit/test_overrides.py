"""What the runtime configuration changes of the code's defaults (corq/overrides.py) and
how a worker's config part applies a snapshot to its Admission: a damaged value never
takes the code default away."""

from __future__ import annotations

import asyncio

from corq.control import Breaker, ConfigScope, ConfigSnapshot, Strike
from corq.flow import Rate, TaskRules
from corq.overrides import (
    effective_breaker,
    effective_rules,
    queue_paused,
    queue_weight,
    strikes,
)
from corq.worker.config import ConfigWatch
from corq.worker.fetch import Admission

Q, T, S = ConfigScope.QUEUE, ConfigScope.TASK, ConfigScope.STRIKE


def snapshot(**entries: dict[str, str]) -> ConfigSnapshot:
    """Entries named ``<scope>__<name>``."""
    parsed = {}
    for key, fields in entries.items():
        scope, _, name = key.partition("__")
        parsed[(ConfigScope(scope), name)] = fields
    return ConfigSnapshot(version=1, entries=parsed)


def test_task_entries_override_the_code_field_by_field() -> None:
    code = TaskRules(task="send", concurrency=8, rate=Rate.parse("100/s"))
    config = snapshot(task__send={"concurrency": "2", "key_concurrency": "1"})

    merged = effective_rules(code, config)

    # A key limit needs a key function: not applied to a task without one
    assert (merged.concurrency, merged.rate, merged.key_concurrency) == (2, code.rate, None)


def test_a_damaged_value_leaves_the_code_default() -> None:
    code = TaskRules(task="send", concurrency=8)
    config = snapshot(task__send={"concurrency": "0", "rate_limit": "not json"})

    assert effective_rules(code, config) == code


def test_queue_pause_and_weight_read_back_and_bad_ones_are_ignored() -> None:
    config = snapshot(queue__a={"paused": "true", "weight": "3"}, queue__b={"weight": "0"})

    assert (queue_paused(config, "a"), queue_weight(config, "a")) == (True, 3)
    assert (queue_paused(config, "b"), queue_weight(config, "b")) == (False, None)


def test_strikes_read_back_and_unreadable_ones_are_skipped() -> None:
    config = snapshot(
        strike__one={"task": '"send"', "where": '{"tenant": "acme"}'},
        strike__two={"task": '"all"', "where": "null"},
        strike__bad={"task": "5"},
    )

    assert strikes(config) == [Strike(task="all"), Strike(task="send", where={"tenant": "acme"})]


async def test_a_snapshot_pauses_and_weighs_the_workers_queues() -> None:
    admission = Admission({"a": 1, "b": 1}, concurrency=4, sandboxes=1, burst=False)
    watch = ConfigWatch(None, admission, {"a": 1, "b": 1}, poll_s=1)  # type: ignore[arg-type]  # apply needs no broker

    watch.apply(snapshot(queue__a={"paused": "true"}, queue__b={"weight": "5"}))

    assert admission.paused == frozenset({"a"})
    turn = asyncio.ensure_future(_grant(admission, "a"))
    assert (await _grant(admission, "b")) == 4  # a paused queue is given no slots
    assert not turn.done()
    watch.apply(snapshot())
    assert await asyncio.wait_for(turn, 1) > 0


async def _grant(admission: Admission, queue: str) -> int:
    async with admission.turn(queue) as grant:
        count = grant.count
        admission.empty(queue)
        return count


def test_breaker_thresholds_override_the_code_and_bad_ones_are_ignored() -> None:
    code = Breaker(failures=5, window=60, reset=30)

    set_ = effective_breaker(code, snapshot(task__t={"breaker_failures": "2"}), "t")
    bad = effective_breaker(code, snapshot(task__t={"breaker_reset": "-1"}), "t")
    new = effective_breaker(None, snapshot(task__t={"breaker_reset": "5"}), "t")

    assert (set_, bad, new) == (Breaker(failures=2), code, Breaker(reset=5))
    assert effective_breaker(None, snapshot(), "t") is None
