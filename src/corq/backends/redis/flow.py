"""Flow control (the FlowControl port): the rules a queue stores, and what they did.

The rules are applied by the scripts (the ``lanes`` and ``limits`` includes: enqueue puts
a ruled task's job in its lane, claims visit the lanes round robin under the limits, every
end of an attempt frees its slots); this role stores them, encoded as JSON the scripts
decode (cjson), and reads the counters. See docs/design.md, "Flow control".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from corq.backends.redis.connections import broker_errors
from corq.backends.redis.context import RedisContext
from corq.backends.redis.replies import text
from corq.errors import FlowRuleError
from corq.flow import FlowStats, OverLimit, Rate, TaskRules
from corq.types import QueueName, TaskName

log = logging.getLogger(__name__)


def encode_rules(rules: TaskRules) -> str:
    """The JSON the scripts read (the limits include's ``rule_of``); '' for rules that are
    not active (the task's entry is removed). Absent fields are left out, never null."""
    if not rules.active:
        return ""
    value: dict[str, object] = {}
    if rules.concurrency is not None:
        value["c"] = rules.concurrency
    if rules.keyed:
        value["k"] = 1
    if rules.key_concurrency is not None:
        value["kc"] = rules.key_concurrency
    if rules.rate is not None:
        value["r"] = [rules.rate.count, rules.rate.period_ms]
    if rules.key_rate is not None:
        value["kr"] = [rules.key_rate.count, rules.key_rate.period_ms]
    if rules.over_limit is OverLimit.DROP:
        value["d"] = 1
    if rules.key_weights:
        value["w"] = dict(rules.key_weights)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _rate(value: object) -> Rate | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise FlowRuleError(f"a stored rate must be [count, period_ms], got {value!r}")
    return Rate(value[0], value[1])


def decode_rules(task: TaskName, raw: bytes | str) -> TaskRules:
    """The rules `encode_rules` wrote; FlowRuleError (or ValueError) for a damaged value."""
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise FlowRuleError(f"stored rules must be a JSON object, got {value!r}")
    fields = cast(Mapping[str, Any], value)
    return TaskRules(
        task=task,
        concurrency=fields.get("c"),
        keyed=fields.get("k") == 1,
        key_concurrency=fields.get("kc"),
        rate=_rate(fields.get("r")),
        key_rate=_rate(fields.get("kr")),
        over_limit=OverLimit.DROP if fields.get("d") == 1 else OverLimit.WAIT,
        key_weights=fields.get("w") or {},
    )


class RedisFlow(RedisContext):
    """Storing and reading a queue's flow-control rules and counters."""

    async def set_rules(self, queue: QueueName, rules: Sequence[TaskRules]) -> None:
        """Tasks that gain their first rules here take their jobs already in the plain
        ready set into their lanes, in bounded steps after the rules are stored (a crash
        between steps leaves the rest in the plain set, where they run outside the rules,
        as every job enqueued before the rules did before)."""
        if not rules:
            return
        keys = self._q(queue)
        with broker_errors("set_rules"):
            stored = set(await self._redis.hkeys(keys.rules))
        gained = [r.task for r in rules if r.active and r.task.encode() not in stored]
        call = self._scripts.set_rules(keys, rules=[(r.task, encode_rules(r)) for r in rules])
        with broker_errors("set_rules"):
            await self._scripts.run(call)
            cursor: str | None = ""
            while gained and cursor is not None:
                step = self._scripts.adopt_ready_jobs(keys, tasks=gained, cursor=cursor)
                _, cursor = await self._scripts.run(step)

    async def get_rules(self, queue: QueueName) -> list[TaskRules]:
        """The readable rules by task name; a damaged entry is logged and left out (it
        limits nothing until the next set_rules writes it again, as the scripts see it)."""
        with broker_errors("get_rules"):
            entries = cast(dict[bytes, bytes], await self._redis.hgetall(self._q(queue).rules))
        out: list[TaskRules] = []
        for name, raw in sorted(entries.items()):
            task = TaskName(text(name))
            try:
                out.append(decode_rules(task, raw))
            except (ValueError, TypeError, FlowRuleError) as exc:
                log.warning("queue %r: stored rules of task %r are damaged: %s", queue, task, exc)
        return out

    async def flow_stats(self, queue: QueueName) -> FlowStats:
        keys = self._q(queue)
        with broker_errors("flow_stats"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys.flow)
                pipe.scard(keys.parked)
                pipe.zcard(keys.throttled)
                pipe.hgetall(keys.active)
                counters, parked, throttled, active = await pipe.execute()
        flow = {text(k): _count(v) for k, v in cast(dict[bytes, bytes], counters).items()}
        running = {text(k): _count(v) for k, v in cast(dict[bytes, bytes], active).items()}
        return FlowStats(
            queue=queue,
            expired=flow.get("expired", 0),
            dropped=flow.get("dropped", 0),
            cooled=flow.get("cooled", 0),
            laned=max(0, flow.get("laned", 0)),
            parked=int(parked),
            throttled=int(throttled),
            active={name: n for name, n in sorted(running.items()) if n > 0},
        )


def _count(value: bytes) -> int:
    """A stored counter; a damaged one reads 0."""
    try:
        return int(value)
    except ValueError:
        return 0
