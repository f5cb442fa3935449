"""One term of leadership: load the schedules, keep them current, fire their ticks.

A term begins when a scheduler takes the lead: it loads every schedule, writes the app's
code schedules, and from then on

- `poll` reads what changed (``schedules_version``, then ``changed_schedules``) and the
  state of the previous runs some schedules wait for (a buffered tick, pause-on-failure);
- `prepare` takes the schedules due at an instant off the heap, reads what their policies
  need and decides their steps, just before the instant;
- `send` applies the decisions at the instant: pauses, cancels, then every step in one
  ``advance_schedules`` call, and moves the in-memory state as the broker did.

The timing (when to poll, prepare, send, renew) is the scheduler's (``scheduler.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from corq.aio import gather_bounded
from corq.backends.base import Backend, ScheduleStep, TickOutcome
from corq.client import Client
from corq.schedule import ScheduleDef
from corq.scheduler.counts import SchedulerCounts
from corq.scheduler.decide import Decision, PreviousRun, decide, needs_previous
from corq.scheduler.leader import Leadership
from corq.scheduler.state import REGULAR_KINDS, Entry, Table
from corq.types import Clock

if TYPE_CHECKING:
    from corq.app import App

log = logging.getLogger(__name__)

#: Steps per ``advance_schedules`` call.
STEP_CHUNK = 1000
#: Job records read at once.
READ_CONCURRENCY = 64
#: Runs of a schedule's history read to find its latest regular run.
HISTORY_READ = 20


@dataclass(slots=True)
class Round:
    """The decisions of one instant, prepared before it."""

    at_ms: int
    decisions: list[tuple[Entry, Decision]] = field(default_factory=list)


class Term:
    """What a leader does between taking the lead and losing it."""

    def __init__(
        self,
        app: App,
        backend: Backend,
        client: Client,
        clock: Clock,
        leadership: Leadership,
        counts: SchedulerCounts,
        problems: dict[str, str],
    ) -> None:
        assert leadership.fence is not None
        self.fence = leadership.fence
        self.app = app
        self.backend = backend
        self.client = client
        self.clock = clock
        self.leadership = leadership
        self.counts = counts
        self.problems = problems
        self.table = Table(app.registry, app.periodic_schedules)
        self.version = 0
        #: Dead jobs this term paused a schedule for, and running ones it could not cancel
        #: (each said once).
        self._paused_for: set[str] = set()
        self._uncancelled: set[str] = set()

    # -- schedules -------------------------------------------------------------------
    async def begin(self) -> None:
        """Load every schedule and write the app's code schedules."""
        changes = await self.backend.changed_schedules(0)
        self.version = changes.version
        for record in changes.changed:
            self.table.put(record)
        await self._write_code(self.app.periodic_schedules)
        self._report()
        log.info(
            "scheduler leads %d schedule(s) (%d in code)",
            len(self.table),
            len(self.app.periodic_schedules),
        )

    async def poll(self) -> None:
        """Take in what changed since the last poll, then look at the runs waited for."""
        version = await self.backend.schedules_version()
        if version != self.version:
            changes = await self.backend.changed_schedules(self.version)
            self.version = changes.version
            for name in changes.removed:
                self.table.remove(name)
            for record in changes.changed:
                self.table.put(record)
            touched = {*changes.removed, *(r.name for r in changes.changed)}
            await self._write_code(n for n in touched if n in self.app.periodic_schedules)
            self._report()
        await self._watch()

    async def _write_code(self, names: Iterable[str]) -> None:
        """Store the code schedules that are missing or differ (the code is the truth),
        except where a stored schedule has the name."""
        for name in list(names):
            code = self.app.periodic_schedules[name]
            entry = self.table.get(name)
            current = None if entry is None else entry.definition
            if entry is not None and (current is None or current.source == "stored"):
                continue  # a stored schedule of that name: reported by _report
            if current == code:
                continue
            record = await self.backend.update_schedule(
                name,
                code.queue,
                code.encode(),
                self.clock.broker_now_ms(),
                create=True,
                reset_ticks=current is not None and current.rule != code.rule,
            )
            if record is not None:
                self.table.put(record)
                log.info("code schedule %r (%s) written", name, code.rule.describe())

    def _report(self) -> None:
        """Say once what keeps schedules from firing; `problems` holds what still does."""
        found: dict[str, str] = {}
        for entry in self.table:
            code = self.app.periodic_schedules.get(entry.name)
            if entry.definition is None:
                found[entry.name] = f"schedule {entry.name!r}: its stored definition cannot be read"
            elif code is not None and entry.definition.source == "stored":
                found[entry.name] = (
                    f"schedule {entry.name!r} is declared in code at {code.origin} and also "
                    f"stored (added by {entry.definition.origin or 'unknown'}): the code one is "
                    "skipped; rename one of them"
                )
            elif entry.blocked is not None:
                found[entry.name] = f"schedule {entry.name!r} skipped: {entry.blocked[1]}"
        for name, text in found.items():
            if self.problems.get(name) != text:
                log.error("%s", text)
        self.problems.clear()
        self.problems.update(found)

    def next_due(self) -> int | None:
        return self.table.next_due()

    # -- previous runs ---------------------------------------------------------------
    async def _watch(self) -> None:
        """Runs that a buffered tick or pause-on-failure waits for: read them, and make the
        schedule due now once its run has ended."""
        waiting = [e for e in self.table if _waits_for_run(e)]
        if not waiting:
            return
        await self._read_previous(waiting)
        now = self.clock.now_ms()
        for entry in waiting:
            if entry.previous is not None and entry.previous.ended:
                self.table.reschedule(entry, now)

    async def _read_previous(self, entries: list[Entry]) -> None:
        await gather_bounded([self._read_one(e) for e in entries], READ_CONCURRENCY)

    async def _read_one(self, entry: Entry) -> None:
        if entry.previous_unknown:
            runs, _ = await self.backend.schedule_history(entry.name, HISTORY_READ)
            regular = next((r for r in runs if r.kind in REGULAR_KINDS), None)
            entry.previous_unknown = False
            if regular is not None:
                entry.previous = PreviousRun(
                    job_id=regular.job_id, queue=regular.queue, fired_at_ms=regular.fired_at_ms
                )
        previous = entry.previous
        if previous is None or previous.ended:
            return
        job = await self.backend.get_job(previous.job_id, previous.queue)
        entry.previous = (
            replace(previous, gone=True) if job is None else replace(previous, status=job.status)
        )

    # -- firing ----------------------------------------------------------------------
    async def prepare(self, at_ms: int) -> Round:
        """Decide the steps of every schedule due at or before `at_ms`."""
        entries = self.table.pop_due(at_ms)
        round_ = Round(at_ms)
        try:
            await self._read_previous([e for e in entries if _needs_read(e)])
            round_.decisions = [(e, self._decide(e, at_ms)) for e in entries]
        except BaseException:
            self.abandon(round_, entries)
            raise
        return round_

    def _decide(self, entry: Entry, at_ms: int) -> Decision:
        if entry.definition is None:
            return Decision()
        decision = decide(
            entry.definition, entry.record, at_ms, entry.previous, blocked=entry.blocked
        )
        if (
            decision.pause is not None
            and entry.previous is not None
            and entry.previous.job_id in self._paused_for
        ):
            return Decision()  # this term paused for that job already: resumed since
        return decision

    def abandon(self, round_: Round, entries: Iterable[Entry] = ()) -> None:
        """Put the schedules of a round not sent back on the heap."""
        for entry in [*entries, *(e for e, _ in round_.decisions)]:
            self._reschedule(entry, more=False)

    async def send(self, round_: Round) -> None:
        """Apply a prepared round now: pauses, cancels, then the steps in one call."""
        stale: set[str] = set()
        try:
            await self._pause(round_)
            await self._cancel(round_)
            if self.leadership.leading and self.leadership.fence == self.fence:
                await self._advance(round_, stale)
            for name in stale:  # not due by the broker's state: take that state in
                record = await self.backend.get_schedule(name)
                if record is None:
                    self.table.remove(name)
                else:
                    self.table.put(record)
        finally:
            # Whatever failed half-way, every schedule goes back on the heap (from the state
            # last known: a step that was applied after all comes back STALE next time).
            for entry, decision in round_.decisions:
                self._reschedule(entry, more=decision.more)

    def _reschedule(self, entry: Entry, *, more: bool) -> None:
        if self.table.get(entry.name) is entry and entry.due_ms is None:
            self.table.reschedule(entry, self.clock.now_ms() if more else None)

    async def _pause(self, round_: Round) -> None:
        for entry, decision in round_.decisions:
            if decision.pause is None:
                continue
            record = await self.backend.set_schedule_paused(
                entry.name, True, decision.pause, self.clock.broker_now_ms()
            )
            if entry.previous is not None:
                self._paused_for.add(entry.previous.job_id)
            log.warning("schedule %r %s", entry.name, decision.pause)
            if record is not None:
                entry.record = record

    async def _cancel(self, round_: Round) -> None:
        for entry, decision in round_.decisions:
            run = decision.cancel
            if run is None:
                continue
            if await self.client.cancel(run.job_id, run.queue):
                log.info("schedule %r: cancelled previous run %s", entry.name, run.job_id)
            elif run.job_id not in self._uncancelled:
                self._uncancelled.add(run.job_id)
                log.warning(
                    "schedule %r: previous run %s could not be cancelled (it ended "
                    "meanwhile); firing the next tick anyway",
                    entry.name,
                    run.job_id,
                )

    async def _advance(self, round_: Round, stale: set[str]) -> None:
        planned = [
            (entry, p)
            for entry, decision in round_.decisions
            for p in decision.planned
            if decision.pause is None
        ]
        for at in range(0, len(planned), STEP_CHUNK):
            chunk = planned[at : at + STEP_CHUNK]
            # Stamped per call: a later chunk's jobs are sent after the earlier calls returned.
            now = self.clock.now_ms()
            steps = [_sent_at(p.step, now) for _, p in chunk]
            outcomes = await self.backend.advance_schedules(
                steps, self.fence, self.clock.broker_now_ms()
            )
            for (entry, p), step, outcome in zip(chunk, steps, outcomes, strict=True):
                if outcome is TickOutcome.FENCED:
                    self.leadership.drop("a scheduler with a higher fence wrote first")
                    return
                if outcome is not TickOutcome.DONE:
                    stale.add(entry.name)
                    continue
                self.table.applied(entry, step, now)
                self.counts.fired += int(p.fires)
                for why, count in p.skips:
                    self.counts.add_skips(why, count)
                if step.job is not None:
                    log.debug(
                        "schedule %r fired tick %d (%d ms late)",
                        entry.name,
                        step.tick_ms,
                        now - step.tick_ms,
                    )


def _sent_at(step: ScheduleStep, now_ms: int) -> ScheduleStep:
    """The step with its job enqueued now (prepared a little before)."""
    if step.job is None:
        return step
    return replace(step, job=replace(step.job, enqueued_at_ms=now_ms))


def _needs_read(entry: Entry) -> bool:
    definition = entry.definition
    return (
        definition is not None
        and entry.blocked is None
        and not entry.record.paused
        and needs_previous(definition, entry.record)
        and (entry.previous_unknown or (entry.previous is not None and not entry.previous.ended))
    )


def _waits_for_run(entry: Entry) -> bool:
    definition: ScheduleDef | None = entry.definition
    if definition is None or entry.record.paused or entry.blocked is not None:
        return False
    waits = entry.record.buffered_tick_ms is not None or definition.policy.pause_on_failure
    return waits and _needs_read(entry)
