"""What the runtime configuration changes of the code's defaults, read from one snapshot.

Pure functions over a :class:`~corq.control.ConfigSnapshot`: a task's effective flow rules
(its code ``TaskRules`` overridden field by field), a queue's weight and pause, the strikes
in force. Every value is stored as a JSON text; one that does not read (written by another
program, or an older corq) is ignored with a warning, so the code default applies.
See docs/design.md, "Runtime configuration, pause and strikes".
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from enum import StrEnum

from corq.control import Breaker, ConfigScope, ConfigSnapshot, Strike
from corq.errors import ConfigError, FlowRuleError
from corq.flow import Rate, TaskRules, check_limit, check_weight
from corq.types import QueueName, TaskName

log = logging.getLogger(__name__)


class LimitField(StrEnum):
    """The fields of a TASK entry that override a task's flow rules."""

    CONCURRENCY = "concurrency"
    KEY_CONCURRENCY = "key_concurrency"
    RATE_LIMIT = "rate_limit"
    KEY_RATE_LIMIT = "key_rate_limit"


#: The TaskRules attribute each limit field sets.
_RULE_ATTRIBUTE = {
    LimitField.CONCURRENCY: "concurrency",
    LimitField.KEY_CONCURRENCY: "key_concurrency",
    LimitField.RATE_LIMIT: "rate",
    LimitField.KEY_RATE_LIMIT: "key_rate",
}
#: Fields that need a key function.
KEY_FIELDS = frozenset({LimitField.KEY_CONCURRENCY, LimitField.KEY_RATE_LIMIT})


def limit_value(field: LimitField, raw: object) -> int | Rate:
    """A limit as the rules take it; FlowRuleError when it is not one."""
    if field in (LimitField.RATE_LIMIT, LimitField.KEY_RATE_LIMIT):
        return Rate.parse(raw)
    value = check_limit(raw, field.value)
    assert value is not None
    return value


def encode_limit(field: LimitField, value: int | Rate) -> str:
    """The JSON text a limit is stored as (a rate as its text, ``"10/s"``)."""
    return json.dumps(str(value) if isinstance(value, Rate) else value)


def _decoded(raw: str, what: str) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        log.warning("runtime configuration: %s is not JSON (%r): ignored", what, raw)
        return None


def task_limits(snapshot: ConfigSnapshot, task: TaskName) -> dict[LimitField, int | Rate]:
    """The limits the configuration sets for `task` (unreadable ones left out)."""
    out: dict[LimitField, int | Rate] = {}
    for name, raw in snapshot.get(ConfigScope.TASK, task).items():
        if name not in LimitField._value2member_map_:
            continue
        field = LimitField(name)
        try:
            out[field] = limit_value(field, _decoded(raw, f"task {task!r} {name}"))
        except FlowRuleError as exc:
            log.warning("runtime configuration: task %r %s: %s: ignored", task, name, exc)
    return out


def effective_rules(code: TaskRules, snapshot: ConfigSnapshot) -> TaskRules:
    """`code` with each limit the configuration sets for its task in its place (a key
    limit only applies to a task with a key function)."""
    changes: dict[str, object] = {}
    for field, value in task_limits(snapshot, code.task).items():
        if field in KEY_FIELDS and not code.keyed:
            continue
        changes[_RULE_ATTRIBUTE[field]] = value
    return dataclasses.replace(code, **changes) if changes else code  # type: ignore[arg-type]  # the values are checked above


def rules_for_queues(
    code: Mapping[TaskName, TaskRules], snapshot: ConfigSnapshot
) -> list[TaskRules]:
    """The effective rules of these tasks that have any (what a worker stores at start)."""
    merged = (effective_rules(rules, snapshot) for rules in code.values())
    return [rules for rules in merged if rules.active]


def queue_paused(snapshot: ConfigSnapshot, queue: QueueName) -> bool:
    raw = snapshot.get(ConfigScope.QUEUE, queue).get("paused")
    return raw is not None and _decoded(raw, f"queue {queue!r} paused") is True


def queue_weight(snapshot: ConfigSnapshot, queue: QueueName) -> int | None:
    """The weight the configuration gives `queue`, None when it sets none (or a bad one)."""
    raw = snapshot.get(ConfigScope.QUEUE, queue).get("weight")
    if raw is None:
        return None
    value = _decoded(raw, f"queue {queue!r} weight")
    try:
        return check_weight(value, f"queue {queue!r} weight")
    except FlowRuleError as exc:
        log.warning("runtime configuration: %s: ignored", exc)
        return None


def strikes(snapshot: ConfigSnapshot) -> list[Strike]:
    """The strikes in force, by id."""
    out: list[Strike] = []
    for (scope, name), fields in sorted(snapshot.entries.items()):
        if scope is not ConfigScope.STRIKE or "task" not in fields:
            continue
        task = _decoded(fields["task"], f"strike {name!r} task")
        where = _decoded(fields.get("where", "null"), f"strike {name!r} where")
        if not isinstance(task, str) or not (where is None or isinstance(where, dict)):
            log.warning("runtime configuration: strike %r does not read: ignored", name)
            continue
        out.append(Strike(task=TaskName(task), where=where or None))
    return sorted(out, key=lambda strike: strike.id)


#: The fields of a TASK entry that override a task's breaker, by the Breaker attribute.
BREAKER_FIELDS = {
    "failures": "breaker_failures",
    "window": "breaker_window",
    "reset": "breaker_reset",
}


def breaker_overrides(snapshot: ConfigSnapshot, task: TaskName) -> dict[str, object]:
    """The breaker thresholds the configuration sets for `task`, by Breaker attribute."""
    fields = snapshot.get(ConfigScope.TASK, task)
    out: dict[str, object] = {}
    for attribute, name in BREAKER_FIELDS.items():
        if name in fields:
            out[attribute] = _decoded(fields[name], f"task {task!r} {name}")
    return out


def effective_breaker(
    code: Breaker | None, snapshot: ConfigSnapshot, task: TaskName
) -> Breaker | None:
    """`code` (or the default Breaker, when the configuration sets thresholds for a task
    without one) with the configuration's thresholds; unreadable ones leave it as it is."""
    changes = breaker_overrides(snapshot, task)
    if not changes:
        return code
    try:
        return dataclasses.replace(code or Breaker(), **changes)  # type: ignore[arg-type]  # Breaker checks them
    except ConfigError as exc:
        log.warning("runtime configuration: task %r breaker: %s: ignored", task, exc)
        return code
