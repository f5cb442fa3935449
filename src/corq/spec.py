"""Unsent jobs: a task name, its arguments and the enqueue options, as one frozen value.

A spec names its task rather than holding the function, so a producer that only knows the
name can build one, and workflows and schedules can store it (`to_dict` / `from_dict`) and
send it later. Values are checked when the spec is sent, by the app or client sending it,
against the task registered there under that name.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypedDict, TypeVar, Unpack

from corq.errors import ArgumentError, CorqError, FlowRuleError
from corq.limits import MAX_DELAY_S
from corq.names import check_queue_name as check_queue_name
from corq.names import check_task_name as check_task_name
from corq.types import JobId, QueueName, TaskName

if TYPE_CHECKING:  # for annotations only: handles belong to the runtime layer
    from corq.canvas import Batch, Flow
    from corq.client import JobHandle
    from corq.workflows import BatchHandle, WorkflowHandle

R = TypeVar("R")
#: A spec's result type: covariant, so a list of specs of several tasks is a list of
#: `JobSpec[object]` (one bulk enqueue) rather than a type error.
R_co = TypeVar("R_co", covariant=True)

#: Names of the enqueue options; a task's call keywords may not use them unless the
#: function declares a parameter of that name.
OPTION_NAMES = frozenset(
    {
        "allow_failed",
        "cooldown",
        "debounce",
        "delay",
        "depends_on",
        "eta",
        "expires",
        "job_id",
        "max_wait",
        "priority",
        "queue",
        "unique_key",
    }
)
#: Options `task.enqueue(...)` also takes as call keywords (a shorthand of `with_options`),
#: when the function has no parameter of that name: none of them ever was a task argument.
CALL_OPTION_NAMES = frozenset(
    {"allow_failed", "cooldown", "debounce", "depends_on", "expires", "max_wait", "unique_key"}
)


def duration_ms(value: object, what: str) -> int:
    """A flow-control duration (a timedelta or seconds) in whole milliseconds, from 0 to
    ``corq.limits.MAX_DELAY_S``; anything else is a FlowRuleError naming `what`."""
    seconds: object = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 <= seconds <= MAX_DELAY_S  # NaN fails both comparisons
    ):
        raise FlowRuleError(
            f"{what} must be a timedelta or a number of seconds from 0 to "
            f"{MAX_DELAY_S:,.0f}, got {reprlib.repr(value)}"
        )
    return round(seconds * 1000)


class JobRef(Protocol):
    """Anything naming an existing job with its queue: a ``JobHandle``, a ``Job`` record."""

    @property
    def id(self) -> JobId: ...

    @property
    def queue(self) -> QueueName: ...


@dataclass(frozen=True, slots=True)
class Dependency:
    """A job another job waits for: its id, and its queue when known.

    A handle gives both; a bare id has no queue, and is looked up when the dependent is
    sent (its own queue first, then every known queue).
    """

    job_id: JobId
    queue: QueueName | None = None

    @classmethod
    def of(cls, value: object) -> Dependency:
        """The dependency `value` names: a Dependency, a job id, or a handle (anything
        with str ``id`` and ``queue``); anything else is an ArgumentError."""
        if isinstance(value, Dependency):
            return value
        if isinstance(value, str):
            return cls(value)
        job_id, queue = getattr(value, "id", None), getattr(value, "queue", None)
        if isinstance(job_id, str) and isinstance(queue, str):
            return cls(job_id, queue)
        raise ArgumentError(
            f"depends_on takes job handles or job ids, got an item {reprlib.repr(value)}"
        )


#: What ``depends_on`` accepts per item.
DependencyLike = JobRef | JobId | Dependency


def dependencies(values: object) -> tuple[Dependency, ...]:
    """``depends_on`` as Dependency values; a lone id or handle is a mistake (a str would
    be split into letters), refused as an ArgumentError."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise ArgumentError(
            f"depends_on takes a list of job handles or ids, got {reprlib.repr(values)}"
        )
    return tuple(Dependency.of(value) for value in values)


@dataclass(frozen=True, kw_only=True, slots=True)
class EnqueueOptions:
    """Per-call options of an enqueue; None means the task's (or the app's) default."""

    #: Seconds (or a timedelta) to wait before the job may start, at most
    #: ``corq.limits.MAX_DELAY_S``.
    delay: float | timedelta | None = None
    #: Absolute start time (timezone-aware, or naive meaning UTC), at most MAX_DELAY_S ahead.
    eta: datetime | None = None
    #: Your own id (1 to MAX_JOB_ID_CHARS printable characters); enqueueing an id that
    #: exists already returns the existing job.
    job_id: JobId | None = None
    #: PRIORITY_MIN..PRIORITY_MAX (corq.limits), higher first.
    priority: int | None = None
    #: Overrides the task's queue.
    queue: QueueName | None = None
    #: Jobs this one waits for (handles or ids, any queue): it stays ``waiting`` until each
    #: succeeded, then runs once (``corq.current_job().parent_results()`` reads theirs).
    depends_on: tuple[Dependency, ...] = ()
    #: Run once every dependency ended, whatever its state (a failed one's error is in
    #: ``parent_results()``), instead of ending ``upstream_failed`` when one fails.
    allow_failed: bool = False
    #: Live jobs of a queue never share a unique key: while one holding it is scheduled,
    #: queued or running (or within its task's ``unique_for`` after it ended), an enqueue
    #: returns that job (``JobHandle.outcome`` says ``existing``), or does what the task's
    #: ``on_duplicate`` says.
    unique_key: str | None = None
    #: With a `unique_key`: one pending job, run this long (a timedelta or seconds) after
    #: the last call, with the last call's arguments.
    debounce: float | timedelta | None = None
    #: With `debounce`: never later than this long after the first call.
    max_wait: float | timedelta | None = None
    #: Run the first call, drop the calls within this long after it (by `unique_key`, or
    #: the task without one); a dropped call's handle names the job that ran.
    cooldown: float | timedelta | None = None
    #: Discard the job (state ``expired``) if it has not started this long after the enqueue.
    expires: float | timedelta | None = None

    def __post_init__(self) -> None:
        # A list or a generator of handles is kept as Dependency values: the options stay
        # plain data that `to_dict` can store.
        given: object = self.depends_on  # any value: options are built from stored data too
        if not (isinstance(given, tuple) and all(isinstance(d, Dependency) for d in given)):
            object.__setattr__(self, "depends_on", dependencies(given))
        allow_failed: object = self.allow_failed
        if not isinstance(allow_failed, bool):
            raise ArgumentError(f"allow_failed must be True or False, got {self.allow_failed!r}")

    def replace(self, changes: Mapping[str, object]) -> EnqueueOptions:
        """These options with `changes` applied; an unknown name is an ArgumentError."""
        return dataclasses.replace(self, **_known(changes)) if changes else self


class OptionChanges(TypedDict, total=False):
    """The keywords `with_options` takes (each one an `EnqueueOptions` field)."""

    delay: float | timedelta | None
    eta: datetime | None
    job_id: JobId | None
    priority: int | None
    queue: QueueName | None
    depends_on: Iterable[DependencyLike]
    allow_failed: bool
    unique_key: str | None
    debounce: float | timedelta | None
    max_wait: float | timedelta | None
    cooldown: float | timedelta | None
    expires: float | timedelta | None


def options_from(options: Mapping[str, object]) -> EnqueueOptions:
    """EnqueueOptions from keywords; an unknown name is an ArgumentError."""
    return EnqueueOptions(**_known(options))


def _known(options: Mapping[str, object]) -> dict[str, Any]:
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise ArgumentError(
            f"unknown enqueue option(s): {', '.join(sorted(map(str, unknown)))} "
            f"(known: {', '.join(sorted(OPTION_NAMES))})"
        )
    return dict(options)


class SpecSender(Protocol):
    """Where a spec made by `task.s()` or `app.spec()` is sent (the App), and the
    workflows built from such specs."""

    async def enqueue_spec(self, spec: JobSpec[R]) -> JobHandle[R]: ...

    async def enqueue_workflow(self, flow: Flow) -> WorkflowHandle[Any]: ...

    async def open_batch(self, batch: Batch) -> BatchHandle: ...


_NO_OPTIONS = EnqueueOptions()


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class JobSpec(Generic[R_co]):
    """One job not sent yet: `task.s(*args, **kwargs)`, `app.spec(name, *args)`, or built
    directly; `with_options` gives a new spec, so one spec can be sent many times."""

    #: Registered task name.
    task: TaskName
    #: Positional arguments (a list is kept as a tuple).
    args: tuple[Any, ...] = ()
    #: Keyword arguments (kept as a read-only copy).
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Queue, delay or eta, priority, job id.
    options: EnqueueOptions = _NO_OPTIONS
    #: Where `enqueue()` sends it; not part of the value (not compared, not stored).
    sender: SpecSender | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_task_name(self.task, ArgumentError)
        args: object = self.args  # checked as any value: specs are built from stored data too
        kwargs: object = self.kwargs
        if not isinstance(args, list | tuple):
            raise ArgumentError(f"args must be a list or tuple, got {reprlib.repr(args)}")
        if not (isinstance(kwargs, Mapping) and all(isinstance(key, str) for key in kwargs)):
            raise ArgumentError(f"kwargs must be a dict with str keys, got {reprlib.repr(kwargs)}")
        options: object = self.options
        if not isinstance(options, EnqueueOptions):
            raise ArgumentError(f"options must be EnqueueOptions, got {reprlib.repr(options)}")
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))

    def __repr__(self) -> str:
        return (
            f"JobSpec({self.task}, args={reprlib.repr(self.args)}, "
            f"kwargs={reprlib.repr(dict(self.kwargs))}, options={self.to_dict()['options']})"
        )

    def with_options(self, **options: Unpack[OptionChanges]) -> JobSpec[R_co]:
        """This spec with some options changed, e.g. ``spec.with_options(queue="bulk")``."""
        return dataclasses.replace(self, options=self.options.replace(options))

    async def enqueue(self) -> JobHandle[R_co]:
        """Send it through the app that made it (`task.s()` or `app.spec()`)."""
        if self.sender is None:
            raise CorqError(
                f"spec for {self.task!r} was not made by an app: send it with "
                "app.enqueue(spec) or client.enqueue(spec)"
            )
        return await self.sender.enqueue_spec(self)

    # -- storing -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data for any serializer: the delay in seconds, eta as ISO 8601, and only
        the options that were set."""
        options: dict[str, Any] = {}
        for name in sorted(OPTION_NAMES):
            value = getattr(self.options, name)
            if isinstance(value, timedelta):
                value = value.total_seconds()
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif name == "depends_on":
                value = [_dependency_data(d) for d in value] or None
            elif name == "allow_failed":
                value = value or None
            if value is not None:
                options[name] = value
        return {
            "task": self.task,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "options": options,
        }

    @classmethod
    def from_dict(cls, data: object, sender: SpecSender | None = None) -> JobSpec[Any]:
        """The spec `to_dict` described; a wrong shape is an ArgumentError."""
        if not isinstance(data, dict) or not isinstance(data.get("options", {}), dict):
            raise ArgumentError(
                "a job spec is {'task': ..., 'args': [...], 'kwargs': {...}, 'options': {...}}"
                f", got {reprlib.repr(data)}"
            )
        options = dict(data.get("options", {}))
        if isinstance(options.get("depends_on"), list):
            options["depends_on"] = [_dependency_from(d) for d in options["depends_on"]]
        if isinstance(options.get("eta"), str):
            try:
                options["eta"] = datetime.fromisoformat(options["eta"])
            except ValueError as exc:
                raise ArgumentError(f"eta is not an ISO 8601 time: {exc}") from exc
        return cls(
            task=data.get("task"),  # type: ignore[arg-type]  # checked in __post_init__
            args=data.get("args", ()),
            kwargs=data.get("kwargs", {}),
            options=options_from(options),
            sender=sender,
        )


def _dependency_data(dependency: Dependency) -> str | dict[str, str]:
    if dependency.queue is None:
        return dependency.job_id
    return {"id": dependency.job_id, "queue": dependency.queue}


def _dependency_from(data: object) -> object:
    """A stored dependency back as one (a wrong shape is left for `Dependency.of` to name)."""
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        queue = data.get("queue")
        return Dependency(data["id"], queue if isinstance(queue, str) else None)
    return data


def specs_list(specs: object) -> Sequence[JobSpec[Any]]:
    """The specs of a bulk enqueue as a list; anything else is an ArgumentError."""
    if isinstance(specs, str | bytes | Mapping) or not isinstance(specs, Iterable):
        raise ArgumentError(
            f"enqueue_many takes an iterable of job specs, got {reprlib.repr(specs)}"
        )
    listed = list(specs)
    for spec in listed:
        if not isinstance(spec, JobSpec):
            raise ArgumentError(
                f"enqueue_many takes job specs (task.s(...)), got an item {reprlib.repr(spec)}"
            )
    return listed
