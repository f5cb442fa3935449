"""The runtime configuration as a worker follows it: weights, pauses and strikes.

`ConfigWatch` looks at the configuration's version every ``config_poll_s`` (one cheap
read) and reads the whole snapshot only when it moved; it then gives `Admission` the
queues' weights (the configuration's, else the worker's own) and pauses, and keeps the
strikes for `StrikeGate`, which snoozes a struck job before it starts. A broker outage
keeps the last snapshot (logged once). Limits need nothing here: the broker applies the
rules an operator's change stored (see `corq.admin.config`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from corq.aio import OutageLog
from corq.backends.base import ClaimedJob, RuntimeConfig
from corq.control import ConfigSnapshot, Strike
from corq.errors import BrokerDataError, BrokerError
from corq.overrides import queue_paused, queue_weight, strikes
from corq.task import Task
from corq.types import Clock, QueueName, TaskName
from corq.worker.fetch import Admission
from corq.worker.gates import Snoozed
from corq.worker.outcomes import Outcome

log = logging.getLogger(__name__)


class ConfigWatch:
    """Follows the runtime configuration's version; applies each new snapshot."""

    def __init__(
        self,
        backend: RuntimeConfig,
        admission: Admission,
        weights: Mapping[QueueName, int],
        *,
        poll_s: float,
    ) -> None:
        self.backend = backend
        self.admission = admission
        #: The worker's own weights (the fallback of each queue).
        self.weights = dict(weights)
        self.poll_s = poll_s
        self.snapshot = ConfigSnapshot()
        #: Strikes in force, by task.
        self.strikes: dict[TaskName, list[Strike]] = {}
        self._outage = OutageLog("reading the runtime configuration", log)

    async def load(self) -> ConfigSnapshot:
        """Read and apply the snapshot now (at start, before the rules are stored)."""
        self.apply(await self.backend.read_config())
        return self.snapshot

    async def run(self) -> None:
        """Poll the version until cancelled; read the snapshot again when it moved."""
        while True:
            await asyncio.sleep(self.poll_s)
            await self.refresh()

    async def refresh(self) -> bool:
        """One poll (also what a CONFIG control message may call): True when a new
        snapshot was applied."""
        try:
            if await self.backend.config_version() == self.snapshot.version:
                self._outage.ok()
                return False
            self.apply(await self.backend.read_config())
        except (BrokerError, BrokerDataError) as exc:
            self._outage.failed(exc)
            return False
        self._outage.ok()
        return True

    def apply(self, snapshot: ConfigSnapshot) -> None:
        self.snapshot = snapshot
        weights = {q: queue_weight(snapshot, q) or own for q, own in self.weights.items()}
        self.admission.set_weights(weights)
        self.admission.set_paused({q for q in self.weights if queue_paused(snapshot, q)})
        struck: dict[TaskName, list[Strike]] = {}
        for strike in strikes(snapshot):
            struck.setdefault(strike.task, []).append(strike)
        if struck != self.strikes:
            log.info("strikes in force: %s", ", ".join(s.id for v in struck.values() for s in v)
                     or "none")  # fmt: skip
        self.strikes = struck


class StrikeGate:
    """A start gate: a job of a struck task (its arguments matching) waits, snoozed for
    ``strike_recheck_s``, its attempt unused. A task no strike names costs a dict lookup."""

    def __init__(self, watch: ConfigWatch, clock: Clock, *, recheck_s: float) -> None:
        self.watch = watch
        self.clock = clock
        self.recheck_ms = round(recheck_s * 1000)

    async def check(
        self, job: ClaimedJob, task: Task[Any, Any], arguments: Mapping[str, object]
    ) -> Snoozed | None:
        for strike in self.watch.strikes.get(job.task, ()):
            if strike.matches(job.task, arguments):
                return Snoozed(
                    until_ms=self.clock.now_ms() + self.recheck_ms, reason=f"struck: {strike.id}"
                )
        return None

    async def finished(self, job: ClaimedJob, task: Task[Any, Any], outcome: Outcome) -> None:
        """Strikes count nothing."""
