"""Code schedules: what ``@app.periodic`` declares, kept by the app until a scheduler
leader writes them to the broker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from corq.errors import ScheduleError
from corq.schedule import Policy, Rule, ScheduleDef
from corq.schedules.define import build_schedule
from corq.task import Task
from corq.types import TaskName


@dataclass(frozen=True, slots=True)
class _Call:
    """A code schedule's arguments as written, so a new serializer can encode them again."""

    args: Sequence[Any]
    kwargs: dict[str, Any] | None


class PeriodicSchedules:
    """An app's code schedules by name (``app.periodic_schedules`` is `definitions`)."""

    def __init__(self) -> None:
        self.definitions: dict[str, ScheduleDef] = {}
        self._calls: dict[str, _Call] = {}

    def declare(
        self,
        task: Task[Any, Any],
        name: str | None,
        *,
        rule: Rule,
        policy: Policy,
        args: Sequence[Any],
        kwargs: dict[str, Any] | None,
        max_payload_bytes: int,
    ) -> ScheduleDef:
        """Add a code schedule of `task` (named after it unless `name`); ScheduleError for
        bad arguments or a name declared twice (naming both places)."""
        fn = task.fn
        origin = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', task.name)}"
        schedule_name = task.name if name is None else name
        existing = self.definitions.get(schedule_name)
        if existing is not None:
            raise ScheduleError(
                f"schedule {schedule_name!r} is declared twice: at {existing.origin} and at "
                f"{origin}; pass name=... to one of them"
            )
        definition = build_schedule(
            schedule_name,
            task,
            rule=rule,
            policy=policy,
            args=args,
            kwargs=kwargs,
            queue=None,
            priority=None,
            source="code",
            origin=origin,
            max_payload_bytes=max_payload_bytes,
        )
        self.definitions[definition.name] = definition
        self._calls[definition.name] = _Call(args, kwargs)
        return definition

    def encode_again(self, registry: Mapping[TaskName, Task[Any, Any]]) -> None:
        """The app's serializer changed: encode every payload with it."""
        for name, definition in list(self.definitions.items()):
            call = self._calls[name]
            task = registry[definition.task]
            payload = task.encode_payload(tuple(call.args), dict(call.kwargs or {}))
            self.definitions[name] = replace(definition, payload=payload)
