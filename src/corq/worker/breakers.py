"""The circuit breaker gate: a task's jobs wait while its circuit is open.

Before a job of a task with a breaker starts, the gate asks the broker for a permit
(``Breakers.breaker_permit``) unless the answer it last learned is fresh: a closed circuit
learned less than BREAKER_REFRESH_S ago lets the job start without a call, an open one
snoozes it until the cool-down ends; while one permit is asked for, the other starts of the
task share its answer (a stampede of starts costs one call). Not allowed, the job is
snoozed until the permit's ``retry_at_ms`` (reason ``breaker open``): no attempt is used.
After the attempt it reports
a failure (an exception, a timeout, a crash) or a probe's outcome at once, a success only
when its view is older than BREAKER_REFRESH_S (which refreshes it); snoozes, releases,
cancels and unrunnable jobs are neither. So a closed circuit costs at most one call a
second per task, plus one per failure, and a worker learns of a circuit another worker
opened within a second.

A report the broker cannot take (an outage) is dropped with a note: it costs a count, or a
probe's outcome (its permit lapses and another probe runs).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from corq.backends.base import Breakers, ClaimedJob, Completion, Failure
from corq.control import Breaker, BreakerPermit, BreakerState, BreakerStatus, ConfigSnapshot
from corq.errors import BrokerDataError, BrokerError
from corq.overrides import effective_breaker
from corq.task import Task
from corq.types import Clock, JobId, TaskName
from corq.worker.gates import Snoozed
from corq.worker.outcomes import Outcome

log = logging.getLogger(__name__)

#: How long the gate trusts what it last learned of a circuit (seconds).
BREAKER_REFRESH_S = 1.0
#: The reason a job waits for its circuit.
BREAKER_OPEN = "breaker open"

#: The thresholds of a task's breaker now (None: it has none): the code's, or the runtime
#: configuration's.
RuleOf = Callable[[Task[Any, Any]], Breaker | None]


def code_rule(task: Task[Any, Any]) -> Breaker | None:
    """The breaker the task was defined with."""
    return task.options.breaker


def configured_rule(snapshot: Callable[[], ConfigSnapshot]) -> RuleOf:
    """The task's breaker with the runtime configuration's thresholds (``breaker_failures``,
    ``breaker_window``, ``breaker_reset``) in place of the code's (a task without one in
    code gets one when the configuration sets thresholds), worked out once per task and
    configuration version: a start costs a dict lookup."""
    known: dict[TaskName, tuple[int, Breaker | None]] = {}

    def rule_of(task: Task[Any, Any]) -> Breaker | None:
        now = snapshot()
        cached = known.get(task.name)
        if cached is not None and cached[0] == now.version:
            return cached[1]
        rule = effective_breaker(task.options.breaker, now, task.name)
        known[task.name] = (now.version, rule)
        return rule

    return rule_of


@dataclass(frozen=True, slots=True)
class _Known:
    """What the gate last learned of a circuit, and when (its clock, ms)."""

    status: BreakerStatus
    at_ms: int
    #: Open: when the cool-down (or the running probe's permit) ends.
    until_ms: int | None = None


class BreakerGate:
    """A StartGate (see worker.gates) for the tasks that have a circuit breaker."""

    def __init__(self, backend: Breakers, clock: Clock, rule_of: RuleOf = code_rule) -> None:
        self._backend = backend
        self._clock = clock
        self.rule_of = rule_of
        self._known: dict[TaskName, _Known] = {}
        #: (job id, fence) of the attempts running as their circuit's probe.
        self._probes: set[tuple[JobId, int]] = set()
        #: The permit asked for per task now: the checks meanwhile share its answer.
        self._asking: dict[TaskName, asyncio.Future[BreakerPermit]] = {}
        self._refresh_ms = round(BREAKER_REFRESH_S * 1000)

    async def check(
        self, job: ClaimedJob, task: Task[Any, Any], arguments: Mapping[str, object]
    ) -> Snoozed | None:
        rule = self.rule_of(task)
        if rule is None:
            return None
        now = self._clock.now_ms()
        known = self._known.get(task.name)
        if known is not None and now - known.at_ms < self._refresh_ms:
            if known.status is BreakerStatus.CLOSED:
                return None
            if known.until_ms is not None and now < known.until_ms:
                return Snoozed(until_ms=known.until_ms, reason=BREAKER_OPEN)
        asking = self._asking.get(task.name)
        if asking is not None:  # one question at a time per task: the others share its answer
            shared = await asyncio.shield(asking)
            if shared.probe:  # the asker probes; the rest wait, as the broker would say
                return Snoozed(until_ms=now + round(rule.reset * 1000), reason=BREAKER_OPEN)
            return self._answered(task.name, shared, now)
        permit = await self._ask(task.name, rule)
        if permit.probe:
            self._probes.add((job.id, job.fence))
            self._known[task.name] = _Known(BreakerStatus.HALF_OPEN, now)
            log.info("task %s: circuit half-open, job %s runs as its probe", task.name, job.id)
            return None
        return self._answered(task.name, permit, now)

    async def _ask(self, task: TaskName, rule: Breaker) -> BreakerPermit:
        """Ask the broker, as the one question in flight for `task`."""
        asking = asyncio.ensure_future(
            self._backend.breaker_permit(task, rule, self._clock.broker_now_ms())
        )
        # Retrieved even when every asker was cancelled meanwhile (no "never retrieved").
        asking.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._asking[task] = asking
        try:
            return await asyncio.shield(asking)
        finally:
            if self._asking.get(task) is asking:
                del self._asking[task]

    def _answered(self, task: TaskName, permit: BreakerPermit, now: int) -> Snoozed | None:
        """Run, or snooze until the permit says (a probe's is handled by its asker)."""
        if permit.allowed:
            self._known[task] = _Known(BreakerStatus.CLOSED, now)
            return None
        until = permit.retry_at_ms if permit.retry_at_ms is not None else now + self._refresh_ms
        self._known[task] = _Known(BreakerStatus.OPEN, now, until)
        return Snoozed(until_ms=until, reason=BREAKER_OPEN)

    async def finished(self, job: ClaimedJob, task: Task[Any, Any], outcome: Outcome) -> None:
        rule = self.rule_of(task)
        if rule is None:
            return
        key = (job.id, job.fence)
        probe = key in self._probes
        self._probes.discard(key)
        ok = _verdict(outcome)
        if ok is None or (ok and not probe and self._fresh(task.name)):
            return
        try:
            state = await self._backend.breaker_outcome(
                task.name, rule, ok, probe, self._clock.broker_now_ms()
            )
        except (BrokerError, BrokerDataError) as exc:
            log.warning("task %s: the circuit breaker missed an outcome: %s", task.name, exc)
            return
        self._learned(state)

    def _fresh(self, task: TaskName) -> bool:
        known = self._known.get(task)
        return (
            known is not None
            and known.status is BreakerStatus.CLOSED
            and self._clock.now_ms() - known.at_ms < self._refresh_ms
        )

    def _learned(self, state: BreakerState) -> None:
        before = self._known.get(state.task)
        self._known[state.task] = _Known(state.status, self._clock.now_ms(), state.until_ms)
        if state.status is BreakerStatus.OPEN and (
            before is None or before.status is not BreakerStatus.OPEN
        ):
            log.warning(
                "task %s: circuit open after %d failures, its jobs wait until %s",
                state.task,
                state.failures,
                state.until_ms,
            )
        elif (
            state.status is BreakerStatus.CLOSED
            and before is not None
            and before.status
            in (
                BreakerStatus.HALF_OPEN,
                BreakerStatus.OPEN,
            )
        ):
            log.info("task %s: circuit closed again", state.task)


def _verdict(outcome: Outcome) -> bool | None:
    """True a success, False a failure the breaker counts, None neither (a snooze, a
    release, a job that could not run: unknown task, bad payload)."""
    if isinstance(outcome, Completion):
        return True
    if isinstance(outcome, Failure):
        if outcome.snoozed:
            return None
        return False if outcome.counted or outcome.died else None
    return False if outcome.died else None  # a release: a crash of its own process counts
