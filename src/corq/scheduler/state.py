"""The leader's schedules in memory, with a heap of when each is next due.

The broker's records are loaded once per term (``changed_schedules(0)``) and kept up to
date from ``changed_schedules(version)`` and from the leader's own steps (a step moves the
firing state without raising the version, so the leader applies what it did itself). The
heap holds (due time, sequence, name); an entry rescheduled or removed leaves its old heap
item behind, recognised by its sequence number and dropped when it comes up.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from corq.backends.base import ScheduleRecord, ScheduleStep, TickStep
from corq.errors import ScheduleError
from corq.schedule import RunKind, ScheduleDef
from corq.scheduler.decide import PreviousRun, SkipReason
from corq.task import Task
from corq.types import TaskName

#: Run kinds of the regular ticks (what overlap and pause-on-failure look at).
REGULAR_KINDS = frozenset({RunKind.TICK.value, RunKind.BUFFERED.value})


@dataclass(slots=True)
class Entry:
    """One schedule as the leader knows it."""

    record: ScheduleRecord
    #: None when the stored definition cannot be read.
    definition: ScheduleDef | None
    #: Why its ticks are skipped instead of fired (and the text the skips record).
    blocked: tuple[SkipReason, str] | None = None
    #: Its latest regular run (None: none, or not known yet: see `previous_unknown`).
    previous: PreviousRun | None = None
    #: The latest run was a backfill or a run-now: the latest regular one is in the history.
    previous_unknown: bool = False
    #: When it is next due (None: nothing ahead, or waiting for its previous run).
    due_ms: int | None = None
    seq: int = 0

    @property
    def name(self) -> str:
        return self.record.name


class Table:
    """The schedules of one term, and when each is next due."""

    def __init__(
        self,
        registry: Mapping[TaskName, Task[Any, Any]],
        periodic: Mapping[str, ScheduleDef],
    ) -> None:
        self._registry = registry
        self._periodic = periodic
        self.entries: dict[str, Entry] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self.entries.values()))

    def get(self, name: str) -> Entry | None:
        return self.entries.get(name)

    # -- records ---------------------------------------------------------------------
    def put(self, record: ScheduleRecord) -> Entry:
        """Take the broker's record of a schedule (new, or changed by someone else)."""
        old = self.entries.get(record.name)
        entry = Entry(record=record, definition=_definition(record))
        entry.blocked = self._blocked(entry.definition)
        last = record.last_run
        if last is not None and last.kind in REGULAR_KINDS:
            keep = (
                old is not None and old.previous is not None and old.previous.job_id == last.job_id
            )
            entry.previous = (
                old.previous
                if keep and old is not None
                else PreviousRun(job_id=last.job_id, queue=last.queue, fired_at_ms=last.fired_at_ms)
            )
        elif last is not None:
            entry.previous = None if old is None else old.previous
            entry.previous_unknown = entry.previous is None
        self.entries[record.name] = entry
        self.reschedule(entry)
        return entry

    def remove(self, name: str) -> None:
        self.entries.pop(name, None)

    def _blocked(self, definition: ScheduleDef | None) -> tuple[SkipReason, str] | None:
        if definition is None:
            return None
        if definition.task not in self._registry:
            return (
                SkipReason.TASK_NOT_REGISTERED,
                f"task not registered: {definition.task!r} is not a task of the scheduler's app",
            )
        if definition.source == "code" and definition.name not in self._periodic:
            return (
                SkipReason.NOT_IN_CODE,
                f"not declared in the scheduler's code (declared at {definition.origin})",
            )
        return None

    # -- the heap --------------------------------------------------------------------
    def reschedule(self, entry: Entry, due_ms: int | None = None) -> None:
        """Due at `due_ms`, or at the first tick after its watermark."""
        if due_ms is None:
            due_ms = self._next_due(entry)
        entry.due_ms = due_ms
        entry.seq = next(self._seq)
        if due_ms is not None:
            heapq.heappush(self._heap, (due_ms, entry.seq, entry.name))

    def _next_due(self, entry: Entry) -> int | None:
        record, definition = entry.record, entry.definition
        if definition is None or record.paused:
            return None
        return definition.rule.next_after(record.last_tick_ms)

    def next_due(self) -> int | None:
        """The earliest due time of any schedule."""
        while self._heap:
            due, seq, name = self._heap[0]
            entry = self.entries.get(name)
            if entry is not None and entry.seq == seq:
                return due
            heapq.heappop(self._heap)
        return None

    def pop_due(self, until_ms: int) -> list[Entry]:
        """Every schedule due at or before `until_ms`, taken off the heap (the caller
        reschedules each once it has acted)."""
        due: list[Entry] = []
        while (first := self.next_due()) is not None and first <= until_ms:
            _, _, name = heapq.heappop(self._heap)
            entry = self.entries[name]
            entry.due_ms = None
            entry.seq = next(self._seq)
            due.append(entry)
        return due

    # -- the leader's own steps ------------------------------------------------------
    def applied(self, entry: Entry, step: ScheduleStep, fired_at_ms: int) -> None:
        """A step the broker did: move the in-memory firing state the same way."""
        record = entry.record
        if step.step is TickStep.FIRE_BUFFERED:
            record = replace(record, buffered_tick_ms=None)
        elif step.step in (TickStep.FIRE, TickStep.SKIP, TickStep.BUFFER):
            record = replace(record, last_tick_ms=max(record.last_tick_ms, step.tick_ms))
            if step.step is TickStep.BUFFER:
                record = replace(record, buffered_tick_ms=step.tick_ms)
        if step.job is not None:
            record = replace(record, fired=record.fired + 1)
            entry.previous = PreviousRun(
                job_id=step.job.id, queue=step.job.queue, fired_at_ms=fired_at_ms
            )
            entry.previous_unknown = False
        entry.record = record


def _definition(record: ScheduleRecord) -> ScheduleDef | None:
    try:
        return ScheduleDef.decode(record.definition)
    except ScheduleError:
        return None
