"""Start gates: the last word before a claimed job's body starts.

A `StartGate` is asked about each claimed job after its payload is decoded and before its
body starts (its slot is held meanwhile). It answers None (run it) or `Snoozed` (not now:
the job is scheduled again at ``until_ms`` with the reason, its attempt not used). After
every attempt that ran, each gate hears the outcome (`finished`, before it is written), so
a circuit breaker has counted a failure by the time anyone sees the job failed. Strikes
(kill switches) and circuit breakers are gates.

Gates are asked in order; the first that says "not now" wins. A gate that raises is logged
(once per gate) and counts as "run it": a gate that cannot decide (its broker is out) must
not stop the work. A worker without gates pays one truth test per job; a gate decides for
itself how cheap its answer is for tasks it has nothing to say about (no broker call).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from corq.backends.base import ClaimedJob
from corq.task import Task
from corq.worker.outcomes import Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Snoozed:
    """A gate's "not now": run the job again at `until_ms`."""

    #: When the job may run again (the gate's clock, ms).
    until_ms: int
    #: Why, as the job's record shows it while it waits (``breaker open``).
    reason: str


class StartGate(Protocol):
    """Decides whether a claimed job may start now."""

    async def check(
        self, job: ClaimedJob, task: Task[Any, Any], arguments: Mapping[str, object]
    ) -> Snoozed | None:
        """None to run the job, or when to try again and why. `arguments` are the call's
        arguments by name (bound on first use, so a gate that does not read them costs
        nothing)."""
        ...

    async def finished(self, job: ClaimedJob, task: Task[Any, Any], outcome: Outcome) -> None:
        """An attempt that passed every gate ended with `outcome`, told before it is
        written (the job's slot is held meanwhile: return at once for tasks the gate has
        nothing to do with)."""
        ...


class Arguments(Mapping[str, object]):
    """A job's arguments by name (defaults filled in, ``**kwargs`` spread), bound on first
    read: most gates never look."""

    def __init__(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self._task = task
        self._args = args
        self._kwargs = kwargs
        self._bound: dict[str, object] | None = None

    def _values(self) -> dict[str, object]:
        if self._bound is None:
            self._bound = self._task.arguments_by_name(self._args, self._kwargs)
        return self._bound

    def __getitem__(self, name: str) -> object:
        return self._values()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())


def _valid(answer: object) -> bool:
    return (
        isinstance(answer, Snoozed)
        and type(answer.until_ms) is int
        and isinstance(answer.reason, str)
    )


class Gates:
    """A worker's gates, asked in order."""

    def __init__(self, gates: Sequence[StartGate] = ()) -> None:
        self._gates = tuple(gates)
        self._reported: set[tuple[int, str]] = set()

    def __bool__(self) -> bool:
        return bool(self._gates)

    async def check(
        self, job: ClaimedJob, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Snoozed | None:
        """The first gate's "not now", or None: run it."""
        arguments = Arguments(task, args, kwargs)
        for gate in self._gates:
            try:
                answer = await gate.check(job, task, arguments)
                if answer is not None and not _valid(answer):
                    raise TypeError(
                        f"a gate answers None or Snoozed(until_ms=int, reason=str), not {answer!r}"
                    )
            except Exception:
                self._failed(gate, "check")
                continue
            if answer is not None:
                return answer
        return None

    async def finished(self, job: ClaimedJob, task: Task[Any, Any], outcome: Outcome) -> None:
        for gate in self._gates:
            try:
                await gate.finished(job, task, outcome)
            except Exception:
                self._failed(gate, "finished")

    def _failed(self, gate: StartGate, hook: str) -> None:
        key = (id(gate), hook)
        if key in self._reported:
            return
        self._reported.add(key)
        log.exception(
            "start gate %s raised in %s; the job runs (not logged again for this gate)",
            type(gate).__name__,
            hook,
        )
