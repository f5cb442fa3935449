"""Typed wrappers of the circuit breaker scripts (``lua/*breaker*.lua``), mixed into
:class:`~corq.backends.redis.scripts.Scripts`: one method per script, named like its file.
Every breaker key is in the ``{breakers}`` slot (:class:`BreakerKeys`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corq.backends.base import Breaker, BreakerPermit, BreakerState
from corq.backends.redis.calls import Arg, ScriptCall, ScriptRunner, now_arg
from corq.backends.redis.keys import BreakerKeys
from corq.control import BreakerStatus
from corq.types import TaskName


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(value: Any) -> int | None:
    text = _text(value)
    return int(text) if text else None


def breaker_state(task: TaskName, reply: Sequence[Any]) -> BreakerState:
    """A circuit from its reply: status, failures, opened_at_ms, until_ms, opened."""
    status, failures, opened_at, until, opened = reply
    return BreakerState(
        task=task,
        status=BreakerStatus(_text(status)),
        failures=int(failures),
        opened_at_ms=_optional(opened_at),
        until_ms=_optional(until),
        opened=int(opened),
    )


def _permit(reply: Sequence[Any]) -> BreakerPermit:
    allowed, probe, retry_at = reply
    return BreakerPermit(allowed=bool(allowed), probe=bool(probe), retry_at_ms=_optional(retry_at))


class BreakerScripts(ScriptRunner):
    """The circuit breaker scripts."""

    def breaker_permit(
        self, keys: BreakerKeys, *, task: TaskName, rule: Breaker, now_ms: int | None
    ) -> ScriptCall[BreakerPermit]:
        args: list[Arg] = [now_arg(now_ms), _ms(rule.reset)]
        return self._call("breaker_permit", [keys.state(task)], args, _permit)

    def breaker_outcome(
        self,
        keys: BreakerKeys,
        *,
        task: TaskName,
        rule: Breaker,
        ok: bool,
        probe: bool,
        now_ms: int | None,
    ) -> ScriptCall[BreakerState]:
        breaker_keys = [keys.state(task), keys.failures(task), keys.tasks]
        args: list[Arg] = [now_arg(now_ms), task, int(ok), int(probe), rule.failures]
        args += [_ms(rule.window), _ms(rule.reset)]
        return self._call(
            "breaker_outcome", breaker_keys, args, lambda reply: breaker_state(task, reply)
        )

    def breaker_states(
        self, keys: BreakerKeys, *, tasks: Sequence[TaskName], now_ms: int | None
    ) -> ScriptCall[list[BreakerState]]:
        breaker_keys = [key for task in tasks for key in (keys.state(task), keys.failures(task))]

        def parse(reply: Sequence[Any]) -> list[BreakerState]:
            return [breaker_state(task, r) for task, r in zip(tasks, reply, strict=True)]

        return self._call("breaker_states", breaker_keys, [now_arg(now_ms)], parse)

    def reset_breaker(self, keys: BreakerKeys, *, task: TaskName) -> ScriptCall[bool]:
        breaker_keys = [keys.state(task), keys.failures(task), keys.tasks]
        return self._call("reset_breaker", breaker_keys, [task], bool)
