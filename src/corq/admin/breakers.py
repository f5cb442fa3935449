"""Circuit breakers for operators: each task's circuit and the thresholds in force, and
closing a circuit by hand.

A task's thresholds are its code's (``@app.task(breaker=corq.Breaker(...))``), each one
overridden by the runtime configuration's TASK fields ``breaker_failures``,
``breaker_window`` and ``breaker_reset`` (``ConfigAdmin.set_breaker``; workers follow within
``config_poll_s``). See docs/design.md, "Snooze, start gates and circuit breakers".
"""

from __future__ import annotations

from dataclasses import dataclass

from corq.admin.base import AdminBase
from corq.control import Breaker, BreakerState
from corq.errors import ConfigError
from corq.names import check_task_name
from corq.overrides import effective_breaker
from corq.types import TaskName


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerView:
    """A task's circuit as it applies now."""

    task: TaskName
    #: The thresholds in force (None: the app does not define this task, or gives it no
    #: breaker; a circuit the broker still holds is shown anyway).
    rule: Breaker | None
    #: "runtime" when the configuration overrides a threshold, "code" otherwise, "-"
    #: without a rule.
    source: str
    #: The circuit as the broker holds it.
    state: BreakerState


class BreakersAdmin(AdminBase):
    """The circuit breakers part of `Admin`."""

    async def breakers(self) -> list[BreakerView]:
        """Every task of the app with a breaker (in code or from the configuration), and
        every circuit the broker holds, by task name."""
        snapshot = await self.backend.read_config()
        rules = {
            name: effective_breaker(task.options.breaker, snapshot, name)
            for name, task in self.app.registry.items()
        }
        held = {s.task: s for s in await self.backend.breaker_states()}
        names = sorted({*(n for n, rule in rules.items() if rule is not None), *held})
        missing = [n for n in names if n not in held]
        states = {**held, **{s.task: s for s in await self.backend.breaker_states(missing)}}
        views = []
        for name in names:
            task = self.app.registry.get(name)
            rule = rules.get(name)
            source = "-" if rule is None else "code"
            if rule is not None and (task is None or rule != task.options.breaker):
                source = "runtime"
            views.append(BreakerView(task=name, rule=rule, source=source, state=states[name]))
        return views

    async def reset_breaker(self, task: TaskName) -> bool:
        """Close `task`'s circuit by hand (its failures forgotten); False when it had
        none. The task need not be in the app: a circuit of a task since removed can be
        cleared too."""
        return await self.backend.reset_breaker(check_task_name(task, ConfigError))
