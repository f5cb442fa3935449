"""Runtime configuration for operators: pause and resume queues, weights, task limits,
strikes (kill switches), and what was changed by whom.

Every input is checked before anything is written (unknown task, bad rate, a limit below
1, a key limit for a task without a key function, a ``where`` naming a parameter the task
does not have). Each change is recorded as made by ``who``. A change of limits also
stores the task's merged rules (``set_rules``) in every queue that holds rules of the task
and in the task's own queue, so claims apply it at once; workers see every change within
``config_poll_s``. See docs/design.md, "Runtime configuration, pause and strikes".
"""

from __future__ import annotations

import inspect
import json
import logging
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corq.admin.base import AdminBase
from corq.control import (
    ALL_WORKERS,
    Breaker,
    ConfigChange,
    ConfigScope,
    ConfigSnapshot,
    ControlKind,
    ControlMessage,
    Strike,
)
from corq.errors import BrokerDataError, BrokerError, ConfigError, FlowRuleError, UnknownTaskError
from corq.flow import Rate, TaskRules, check_weight
from corq.names import check_queue_name
from corq.overrides import (
    BREAKER_FIELDS,
    KEY_FIELDS,
    LimitField,
    effective_breaker,
    effective_rules,
    encode_limit,
    limit_value,
    queue_paused,
    queue_weight,
    task_limits,
)
from corq.overrides import strikes as strikes_of
from corq.task import Task
from corq.types import QueueName, TaskName

log = logging.getLogger(__name__)

#: Most argument conditions one strike may have.
MAX_WHERE = 20


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitView:
    """One limit of a task as it applies: its value and where it comes from."""

    field: LimitField
    value: int | Rate | None
    #: "runtime" (the configuration), "code" (the task's definition) or "-" (none).
    source: str


class ConfigAdmin(AdminBase):
    """The runtime configuration part of `Admin`."""

    # -- queues ----------------------------------------------------------------------
    async def pause_queue(self, queue: QueueName) -> int:
        """Hold the queue's jobs: from the return on, no claim hands one out (running jobs
        finish). Returns the configuration version."""
        return await self._change(ConfigScope.QUEUE, check_queue_name(queue), {"paused": "true"})

    async def resume_queue(self, queue: QueueName) -> int:
        """Let the queue's jobs be handed out again."""
        return await self._change(ConfigScope.QUEUE, check_queue_name(queue), {"paused": None})

    async def set_queue_weight(self, queue: QueueName, weight: int | None) -> int:
        """The weight every worker serving `queue` gives it (None: each worker's own)."""
        name = check_queue_name(queue)
        value = None if weight is None else json.dumps(check_weight(weight, "a queue weight"))
        return await self._change(ConfigScope.QUEUE, name, {"weight": value})

    # -- task limits -----------------------------------------------------------------
    async def set_limits(
        self,
        task: TaskName,
        *,
        concurrency: int | None = None,
        rate_limit: Rate | str | None = None,
        key_concurrency: int | None = None,
        key_rate_limit: Rate | str | None = None,
        clear: Iterable[str] = (),
    ) -> TaskRules:
        """Override limits of `task` (None leaves a limit as it is; a field in `clear`
        gives the code's value back). Returns the task's effective rules now, stored in
        every queue that holds its rules."""
        found = self._task(task)
        given: dict[str, object] = {
            LimitField.CONCURRENCY: concurrency,
            LimitField.RATE_LIMIT: rate_limit,
            LimitField.KEY_CONCURRENCY: key_concurrency,
            LimitField.KEY_RATE_LIMIT: key_rate_limit,
        }
        values = _limit_values(found, {k: v for k, v in given.items() if v is not None})
        for name in clear:
            field = _limit_field(name)
            if field in values:
                raise ConfigError(f"{field.value} is both set and cleared")
            values[field] = None
        if not values:
            raise ConfigError("give at least one limit to set or clear")
        snapshot = await self.backend.read_config()
        effective_rules(found.options.rules, _with_fields(snapshot, task, values))  # checks
        await self._change(ConfigScope.TASK, task, {k.value: v for k, v in values.items()})
        return await self.store_rules(task)

    async def store_rules(self, task: TaskName) -> TaskRules:
        """Store the task's effective rules in every queue that holds rules of it, and in
        its own queue (what a change of limits does; also repairs a stale queue)."""
        found = self._task(task)
        rules = effective_rules(found.options.rules, await self.backend.read_config())
        queues = {found.options.queue}
        for queue in await self.backend.list_queues():
            if queue not in queues and any(
                r.task == task for r in await self.backend.get_rules(queue)
            ):
                queues.add(queue)
        for queue in sorted(queues):
            await self.backend.set_rules(queue, [rules])
        return rules

    async def limits(self, task: TaskName) -> list[LimitView]:
        """Each limit of `task` as it applies now, and where its value comes from."""
        found = self._task(task)
        runtime = task_limits(await self.backend.read_config(), task)
        code = found.options.rules
        out = []
        for field in LimitField:
            code_value = getattr(code, _ATTRIBUTE[field])
            if field in runtime and (code.keyed or field not in KEY_FIELDS):
                out.append(LimitView(field=field, value=runtime[field], source="runtime"))
            elif code_value is not None:
                out.append(LimitView(field=field, value=code_value, source="code"))
            else:
                out.append(LimitView(field=field, value=None, source="-"))
        return out

    # -- breakers --------------------------------------------------------------------
    async def set_breaker(
        self,
        task: TaskName,
        *,
        failures: int | None = None,
        window: float | None = None,
        reset: float | None = None,
        clear: Iterable[str] = (),
    ) -> Breaker:
        """Override the thresholds of `task`'s circuit breaker (None leaves one as it is; a
        name in `clear` gives the code's back). Returns the thresholds as they now are
        (from a task without a breaker in code: the default Breaker's, with these)."""
        found = self._task(task)
        given = {"failures": failures, "window": window, "reset": reset}
        values: dict[str, str | None] = {
            BREAKER_FIELDS[k]: json.dumps(v) for k, v in given.items() if v is not None
        }
        for name in clear:
            if name not in BREAKER_FIELDS:
                raise ConfigError(f"no breaker threshold named {name!r} (failures, window, reset)")
            if BREAKER_FIELDS[name] in values:
                raise ConfigError(f"{name} is both set and cleared")
            values[BREAKER_FIELDS[name]] = None
        if not values:
            raise ConfigError("give at least one breaker threshold to set or clear")
        snapshot = _with_values(await self.backend.read_config(), task, values)
        Breaker(**_breaker_values(snapshot, task))  # checks them before anything is written
        await self._change(ConfigScope.TASK, task, values)
        merged = effective_breaker(found.options.breaker, await self.backend.read_config(), task)
        return merged or Breaker()

    # -- strikes ---------------------------------------------------------------------
    async def strike(self, task: TaskName, where: Mapping[str, object] | None = None) -> Strike:
        """Hold the jobs of `task` (only those whose arguments equal `where`, when given)
        until restored: they wait scheduled, their attempts unused."""
        strike = self._strike(task, where)
        fields = {"task": json.dumps(strike.task), "where": _where_text(strike.where)}
        await self._change(ConfigScope.STRIKE, strike.id, fields)
        return strike

    async def restore(self, task: TaskName, where: Mapping[str, object] | None = None) -> bool:
        """Lift the strike `strike(task, where)` made; False when there was none."""
        strike = self._strike(task, where, known=False)
        snapshot = await self.backend.read_config()
        if not snapshot.get(ConfigScope.STRIKE, strike.id):
            return False
        await self._change(ConfigScope.STRIKE, strike.id, {"task": None, "where": None})
        return True

    async def strikes(self) -> list[Strike]:
        """The strikes in force."""
        return strikes_of(await self.backend.read_config())

    # -- reading ---------------------------------------------------------------------
    async def config(self) -> ConfigSnapshot:
        """The whole runtime configuration."""
        return await self.backend.read_config()

    async def config_history(
        self,
        limit: int = 100,
        before_version: int | None = None,
        scope: ConfigScope | None = None,
        name: str | None = None,
    ) -> list[ConfigChange]:
        """Changes, newest first."""
        given: object = limit  # any value: the CLI and the HTTP API pass what they got
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ConfigError(f"limit must be a positive integer, got {reprlib.repr(limit)}")
        return await self.backend.config_history(limit, before_version, scope, name)

    async def queue_settings(self, queue: QueueName) -> tuple[bool, int | None]:
        """(paused, weight) of a queue as the configuration says."""
        snapshot = await self.backend.read_config()
        return queue_paused(snapshot, queue), queue_weight(snapshot, queue)

    # -- helpers ---------------------------------------------------------------------
    async def _change(self, scope: ConfigScope, name: str, values: Mapping[str, str | None]) -> int:
        now_ms = self.app.clock.broker_now_ms()
        version = await self.backend.change_config(scope, name, values, self.who, now_ms)
        await self._tell_workers()
        return version

    async def _tell_workers(self) -> None:
        """Ask every connected worker to read the configuration now (they poll it anyway,
        every ``config_poll_s``, so a message that is lost only costs that delay)."""
        message = ControlMessage(kind=ControlKind.CONFIG, worker_id=ALL_WORKERS)
        try:
            await self.backend.send_control(message)
        except (BrokerError, BrokerDataError) as exc:
            log.warning("configuration changed; workers see it at their next poll (%s)", exc)

    def _task(self, task: TaskName) -> Task[Any, Any]:
        found = self.app.registry.get(task)
        if found is None:
            known = ", ".join(sorted(self.app.registry)) or "none"
            raise UnknownTaskError(f"no task named {task!r} in this app (registered: {known})")
        return found

    def _strike(
        self, task: TaskName, where: Mapping[str, object] | None, *, known: bool = True
    ) -> Strike:
        """The strike, checked: a known task, conditions on its parameters, JSON values."""
        found = self._task(task) if known or task in self.app.registry else None
        if where is not None and not isinstance(where, Mapping):
            raise ConfigError("where must be a dict of argument name to value")
        conditions = dict(where or {})
        if len(conditions) > MAX_WHERE:
            raise ConfigError(f"a strike may have at most {MAX_WHERE} conditions")
        if found is not None:
            names = _parameter_names(found)
            unknown = sorted(set(conditions) - names)
            if unknown:
                raise ConfigError(
                    f"task {task!r} has no parameter {', '.join(map(repr, unknown))} "
                    f"(its parameters: {', '.join(sorted(names)) or 'none'})"
                )
        try:
            json.dumps(conditions)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"strike values must be JSON values: {exc}") from exc
        return Strike(task=task, where=conditions or None)


_ATTRIBUTE = {
    LimitField.CONCURRENCY: "concurrency",
    LimitField.KEY_CONCURRENCY: "key_concurrency",
    LimitField.RATE_LIMIT: "rate",
    LimitField.KEY_RATE_LIMIT: "key_rate",
}


def _limit_field(name: str) -> LimitField:
    try:
        return LimitField(name.replace("-", "_"))
    except ValueError:
        known = ", ".join(f.value for f in LimitField)
        raise ConfigError(f"no limit named {name!r} (limits: {known})") from None


def _limit_values(
    task: Task[Any, Any], given: Mapping[str, object]
) -> dict[LimitField, str | None]:
    values: dict[LimitField, str | None] = {}
    for name, raw in given.items():
        field = LimitField(name)
        if field in KEY_FIELDS and not task.options.rules.keyed:
            raise ConfigError(f"task {task.name!r} has no key= function: {field.value} needs one")
        try:
            values[field] = encode_limit(field, limit_value(field, raw))
        except FlowRuleError as exc:
            raise FlowRuleError(f"task {task.name!r}: {exc}") from None
    return values


def _with_fields(
    snapshot: ConfigSnapshot, task: TaskName, values: Mapping[LimitField, str | None]
) -> ConfigSnapshot:
    """The snapshot as it will be after the change (to check the merged rules first)."""
    return _with_values(snapshot, task, {k.value: v for k, v in values.items()})


def _with_values(
    snapshot: ConfigSnapshot, task: TaskName, values: Mapping[str, str | None]
) -> ConfigSnapshot:
    entries = {key: dict(fields) for key, fields in snapshot.entries.items()}
    fields = entries.setdefault((ConfigScope.TASK, task), {})
    for field, value in values.items():
        if value is None:
            fields.pop(field, None)
        else:
            fields[field] = value
    return ConfigSnapshot(version=snapshot.version, entries=entries)


def _breaker_values(snapshot: ConfigSnapshot, task: TaskName) -> dict[str, Any]:
    fields = snapshot.get(ConfigScope.TASK, task)
    return {k: json.loads(fields[name]) for k, name in BREAKER_FIELDS.items() if name in fields}


def _parameter_names(task: Task[Any, Any]) -> set[str]:
    try:
        parameters = inspect.signature(task.fn).parameters.values()
    except (TypeError, ValueError):  # checked at definition: cannot happen for a Task
        return set()
    plain = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {p.name for p in parameters if p.kind not in plain}


def _where_text(where: Mapping[str, object] | None) -> str:
    return json.dumps(dict(where) if where else None, sort_keys=True)


def parse_where(items: Sequence[str]) -> dict[str, object]:
    """``k=v`` conditions (the CLI's ``--where``): a value is JSON when it parses as
    JSON, else the text itself."""
    out: dict[str, object] = {}
    for item in items:
        name, has_value, text = item.partition("=")
        name = name.strip()
        if not has_value or not name:
            raise ConfigError(f"a condition is written name=value, got {item!r}")
        if name in out:
            raise ConfigError(f"argument {name!r} is named twice")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out
