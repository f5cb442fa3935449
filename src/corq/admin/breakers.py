"""Circuit breakers for operators: each task's circuit and thresholds, closing one by hand,
and thresholds changed at runtime.

A task's thresholds are its code's (``@app.task(breaker=corq.Breaker(...))``), each one
overridden by the runtime configuration's TASK fields ``breaker_failures``,
``breaker_window`` and ``breaker_reset`` (workers follow within ``config_poll_s``). Only a
task defined with a breaker has one; every input is checked before anything is written.
See docs/design.md, "Snooze, start gates and circuit breakers".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from corq.admin.base import AdminBase
from corq.control import Breaker, BreakerState, ConfigScope
from corq.errors import ConfigError, UnknownTaskError
from corq.names import check_task_name
from corq.overrides import BREAKER_FIELDS, breaker_overrides, effective_breaker
from corq.task import Task
from corq.types import TaskName


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerView:
    """A task's circuit as it applies now."""

    task: TaskName
    #: The thresholds in force (None: the app does not define this task, or defines it
    #: without a breaker; a circuit the broker still holds is shown anyway).
    rule: Breaker | None
    #: "runtime" when the configuration overrides a threshold, "code" otherwise, "-"
    #: without a rule.
    source: str
    #: The circuit as the broker holds it.
    state: BreakerState


class BreakersAdmin(AdminBase):
    """The circuit breakers part of `Admin`."""

    async def breakers(self) -> list[BreakerView]:
        """Every task of the app with a breaker, and every circuit the broker holds, by
        task name."""
        snapshot = await self.backend.read_config()
        coded = sorted(n for n, t in self.app.registry.items() if t.options.breaker is not None)
        held = {s.task: s for s in await self.backend.breaker_states()}
        names = sorted({*coded, *held})
        missing = [n for n in names if n not in held]
        states = {**held, **{s.task: s for s in await self.backend.breaker_states(missing)}}
        views = []
        for name in names:
            task = self.app.registry.get(name)
            code = None if task is None else task.options.breaker
            rule = effective_breaker(code, snapshot, name)
            source = "-" if rule is None else "code"
            if rule is not None and rule != code:
                source = "runtime"
            views.append(BreakerView(task=name, rule=rule, source=source, state=states[name]))
        return views

    async def reset_breaker(self, task: TaskName) -> bool:
        """Close `task`'s circuit by hand (its failures forgotten); False when it had
        none. The task need not be in the app: a circuit of a task since removed can be
        cleared too."""
        return await self.backend.reset_breaker(check_task_name(task, ConfigError))

    async def set_breaker(
        self,
        task: TaskName,
        *,
        failures: int | None = None,
        window: float | None = None,
        reset: float | None = None,
        clear: bool = False,
    ) -> Breaker:
        """Override thresholds of `task`'s breaker on every worker (None leaves one as it
        is; `clear` gives the code's back first). Returns the thresholds now in force."""
        code = self._breaker_of(task)
        snapshot = await self.backend.read_config()
        current = {} if clear else breaker_overrides(snapshot, task)
        given = {"failures": failures, "window": window, "reset": reset}
        wanted = {**current, **{k: v for k, v in given.items() if v is not None}}
        try:
            rule = replace(code, **wanted)  # type: ignore[arg-type]  # Breaker checks them
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"task {task!r}: {exc}") from None
        values: dict[str, str | None] = {}
        for field, attribute in BREAKER_FIELDS.items():
            values[field] = json.dumps(getattr(rule, attribute)) if attribute in wanted else None
        now_ms = self.app.clock.broker_now_ms()
        await self.backend.change_config(ConfigScope.TASK, task, values, self.who, now_ms)
        return rule

    def _breaker_of(self, task: TaskName) -> Breaker:
        found: Task[Any, Any] | None = self.app.registry.get(task)
        if found is None:
            known = ", ".join(sorted(self.app.registry)) or "none"
            raise UnknownTaskError(f"no task named {task!r} in this app (registered: {known})")
        if found.options.breaker is None:
            raise ConfigError(
                f"task {task!r} has no circuit breaker: define it with "
                "@app.task(breaker=corq.Breaker(...)) to change its thresholds"
            )
        return found.options.breaker
