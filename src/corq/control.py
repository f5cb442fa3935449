"""Operators' levers, as plain checked values: control messages to workers, runtime
configuration and its history, strikes (kill switches) and circuit breakers.

The brokers store them (see "Operations" in docs/design.md); the runtime acts on them: a
worker listens for control messages, re-reads the configuration when its version moves,
holds back the jobs of a struck task and asks a task's breaker before it starts a job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from corq.errors import ConfigError
from corq.types import JobId, QueueName, TaskName, WorkerId

#: The ``worker_id`` of a control message meant for every worker.
ALL_WORKERS = "*"


class ControlKind(StrEnum):
    """What a control message asks of a worker."""

    #: Stop running ``job_id`` (it was cancelled in the broker already): cancel its
    #: coroutine, flag its thread, terminate its process.
    CANCEL = "cancel"
    #: Report on yourself (``body`` says what: stacks, running jobs) with ``put_reply``
    #: under ``request_id``.
    INSPECT = "inspect"
    #: The runtime configuration changed: read it again now (instead of at the next poll).
    CONFIG = "config"


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlMessage:
    """One message on the control channel."""

    kind: ControlKind
    #: The worker it is for (its worker id, not a holder id), or ALL_WORKERS.
    worker_id: WorkerId
    job_id: JobId | None = None
    queue: QueueName | None = None
    #: Where the answer goes (``ControlChannel.put_reply``), for requests that want one.
    request_id: str | None = None
    #: Kind-specific details (JSON), e.g. what an INSPECT asks for.
    body: bytes = b""


class ConfigScope(StrEnum):
    """What a runtime configuration entry is about."""

    #: A queue: ``paused`` (bool), ``weight`` (int, the default weight workers give it).
    QUEUE = "queue"
    #: A task: ``concurrency``, ``key_concurrency`` (int), ``rate_limit``,
    #: ``key_rate_limit`` (rate text such as "10/s"), ``breaker_failures`` (int),
    #: ``breaker_window`` and ``breaker_reset`` (seconds).
    TASK = "task"
    #: A strike (kill switch); the entry's name is the strike's id (``Strike.id``) and its
    #: fields ``task`` and ``where`` (a JSON object of argument values, or null).
    STRIKE = "strike"


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigChange:
    """One change of the runtime configuration, as its history keeps it."""

    #: The configuration version this change produced (one per ``change_config`` call).
    version: int
    at_ms: int
    #: Who made it (a user or token name, ``cli:<os user>@<host>``, ``python``).
    who: str
    scope: ConfigScope
    name: str
    field: str
    #: JSON texts; None: the field was not set (the code default applied) / was removed.
    old: str | None
    new: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigSnapshot:
    """The whole runtime configuration at one version."""

    version: int = 0
    #: (scope, name) -> field -> JSON text. Fields not here fall back to the code.
    entries: Mapping[tuple[ConfigScope, str], Mapping[str, str]] = field(default_factory=dict)

    def get(self, scope: ConfigScope, name: str) -> Mapping[str, str]:
        """The fields set for one entry (empty when none)."""
        return self.entries.get((scope, name), {})


@dataclass(frozen=True, kw_only=True, slots=True)
class Breaker:
    """A task's circuit breaker (``@app.task(breaker=corq.Breaker(...))``).

    After `failures` failed attempts within `window` seconds the circuit opens: the task's
    jobs wait (no attempt used, not failed) for `reset` seconds; then one probe job runs
    (half-open): its success closes the circuit, its failure opens it again.
    """

    failures: int = 5
    window: float = 60.0
    reset: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.failures, bool) or not isinstance(self.failures, int):
            raise ConfigError(f"Breaker failures must be an int, not {self.failures!r}")
        if self.failures < 1:
            raise ConfigError(f"Breaker failures must be at least 1, not {self.failures}")
        for name in ("window", "reset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"Breaker {name} must be a positive number of seconds")
            if value > 30 * 86_400:
                raise ConfigError(f"Breaker {name} must be at most 30 days")


class BreakerStatus(StrEnum):
    """Where a circuit is."""

    CLOSED = "closed"  #: jobs run
    OPEN = "open"  #: jobs wait until ``until_ms``
    HALF_OPEN = "half_open"  #: one probe job runs; the rest wait for its outcome


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerState:
    """A task's circuit as the broker holds it."""

    task: TaskName
    status: BreakerStatus = BreakerStatus.CLOSED
    #: Failures counted within the window (closed), or that opened it.
    failures: int = 0
    #: When it last opened.
    opened_at_ms: int | None = None
    #: Open: when the cool-down ends (a probe may start). Half-open: when the probe's
    #: permit lapses (a probe whose worker died does not hold the circuit for ever).
    until_ms: int | None = None
    #: Times it opened since it was created or reset.
    opened: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerPermit:
    """What ``breaker_permit`` answers before a job starts."""

    #: The job may run.
    allowed: bool
    #: It runs as the half-open probe: report its outcome with ``probe=True``.
    probe: bool = False
    #: Not allowed: when to ask again (the cool-down's end, or the probe permit's lapse).
    retry_at_ms: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Strike:
    """A kill switch: jobs of `task` (only those whose arguments match `where`, when
    given) wait without running until the strike is restored."""

    task: TaskName
    #: Argument name -> value the job's bound arguments must equal (all of them).
    where: Mapping[str, object] | None = None

    @property
    def id(self) -> str:
        """A stable name for the strike: the task, and its conditions sorted."""
        if not self.where:
            return self.task
        conditions = ",".join(f"{k}={self.where[k]!r}" for k in sorted(self.where))
        return f"{self.task}[{conditions}]"

    def matches(self, task: TaskName, arguments: Mapping[str, object]) -> bool:
        """True when a job of `task` with these bound arguments is held by this strike."""
        if task != self.task:
            return False
        if not self.where:
            return True
        return all(k in arguments and arguments[k] == v for k, v in self.where.items())
