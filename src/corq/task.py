"""Tasks: registered functions, their options, and how their arguments are checked."""

from __future__ import annotations

import inspect
import reprlib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    Unpack,
)

import msgspec

from corq.control import Breaker
from corq.errors import (
    ArgumentError,
    CorqError,
    FlowRuleError,
    SerializationError,
    TaskDefinitionError,
)
from corq.flow import (
    MAX_BATCH_SIZE,
    OnDuplicate,
    OverLimit,
    Rate,
    TaskRules,
    check_key,
    check_limit,
)
from corq.retry import RetryPolicy
from corq.serializers import Serializer
from corq.spec import (
    CALL_OPTION_NAMES,
    OPTION_NAMES,
    EnqueueOptions,
    JobSpec,
    OptionChanges,
    SpecSender,
    check_queue_name,
    check_task_name,
    options_from,
)
from corq.types import QueueName, TaskName

if TYPE_CHECKING:  # for annotations only: the handle belongs to the runtime layer
    from corq.client import JobHandle

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
A = TypeVar("A")

#: What checking a value against a hint raises: a mismatch, a value too deep for a
#: recursive hint, a str with a lone surrogate.
_CONVERT_ERRORS = (msgspec.ValidationError, RecursionError, UnicodeError)

__all__ = [  # the names and options moved to corq.spec stay importable from here
    "OPTION_NAMES",
    "BoundTask",
    "EnqueueOptions",
    "Enqueuer",
    "Task",
    "TaskOptions",
    "check_queue_name",
    "check_task_name",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskOptions:
    """How a task's jobs are run."""

    #: Registered name; messages carry it, the worker looks it up.
    name: TaskName
    #: Queue its jobs go to unless an enqueue says otherwise.
    queue: QueueName
    #: Retries and backoff.
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Seconds an attempt may take; None means no limit.
    timeout_s: float | None = None
    #: Run a plain function in the process pool instead of the thread pool.
    process: bool = False
    #: Default priority of its jobs.
    priority: int = 0
    # -- flow control (docs/design.md, "Flow control"); checked when the options are built
    #: Most of its jobs running at once on all workers together (None: no limit).
    concurrency: int | None = None
    #: Its fairness key: a function of a job's arguments (called with them as the task
    #: would be, by name where they have one) returning a str; one lane per key.
    key: Callable[..., str] | None = None
    #: Most jobs of one key running at once (1: strict order within a key); needs `key`.
    key_concurrency: int | None = None
    #: Starts of its jobs, all keys together (a ``"50/s"`` str is parsed).
    rate_limit: Rate | None = None
    #: Starts per key; needs `key`.
    key_rate_limit: Rate | None = None
    #: Jobs of a key started per turn of the round robin (default 1); needs `key`.
    key_weights: Mapping[str, int] = field(default_factory=dict)
    #: What a job over a rate limit does: wait for capacity, or end ``expired`` (dropped).
    over_limit: OverLimit = OverLimit.WAIT
    #: What an enqueue whose ``unique_key`` is taken by a live job does.
    on_duplicate: OnDuplicate = OnDuplicate.KEEP
    #: How long a job's ``unique_key`` stays taken after the job ended (0: freed at its end).
    unique_for_ms: int = 0
    #: Call the function with a list of up to this many jobs' arguments (None: one job
    #: per call).
    batch_size: int | None = None
    #: How long a batch waits for more jobs after its first one (0: it takes what one
    #: claim brought).
    batch_wait_s: float = 0.0
    #: Batch jobs of the same key together only (needs `key`).
    batch_by_key: bool = False
    #: Its circuit breaker (None: none): failures open it, its jobs then wait.
    breaker: Breaker | None = None
    #: The rules the broker applies to its jobs (built from the fields above).
    rules: TaskRules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", self._build_rules())
        self._check_batch()
        if self.breaker is not None and not isinstance(self.breaker, Breaker):
            raise TaskDefinitionError(
                f"task {self.name!r}: breaker must be a corq.Breaker(failures=..., window=..., "
                f"reset=...), got {reprlib.repr(self.breaker)}"
            )
        window: object = self.unique_for_ms  # any value: options may be built directly
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise FlowRuleError(
                f"task {self.name!r}: unique_for must be a duration of 0 or more, "
                f"got {self.unique_for_ms!r}"
            )
        try:
            object.__setattr__(self, "on_duplicate", OnDuplicate(self.on_duplicate))
        except ValueError:
            raise FlowRuleError(
                f"task {self.name!r}: on_duplicate must be one of "
                f"{', '.join(repr(o.value) for o in OnDuplicate)}, got "
                f"{reprlib.repr(self.on_duplicate)}"
            ) from None

    def _build_rules(self) -> TaskRules:
        key: object = self.key
        if key is not None and not callable(key):
            raise FlowRuleError(
                f"task {self.name!r}: key must be a function of the task's arguments "
                f"returning a str, got {reprlib.repr(key)}"
            )
        over: object = self.over_limit
        if not isinstance(over, str) or over not in set(OverLimit):
            raise FlowRuleError(
                f"task {self.name!r}: over_limit must be 'wait' or 'drop', got {reprlib.repr(over)}"
            )
        rates = []
        for name in ("rate_limit", "key_rate_limit"):
            value = getattr(self, name)
            try:
                rates.append(None if value is None else Rate.parse(value))
            except FlowRuleError as exc:
                raise FlowRuleError(f"task {self.name!r}: {name}: {exc}") from None
            object.__setattr__(self, name, rates[-1])
        if self.key is None and (
            self.key_concurrency is not None
            or self.key_rate_limit is not None
            or self.key_weights
            or self.batch_by_key
        ):
            raise FlowRuleError(
                f"task {self.name!r}: key_concurrency, key_rate_limit, key_weights and "
                "batch_by_key need a key= function (what the key of a job is)"
            )
        if over == OverLimit.DROP and rates == [None, None]:
            raise FlowRuleError(
                f"task {self.name!r}: over_limit='drop' drops jobs over a rate limit: it needs "
                "rate_limit or key_rate_limit"
            )
        return TaskRules(
            task=self.name,
            concurrency=self.concurrency,
            keyed=self.key is not None,
            key_concurrency=self.key_concurrency,
            rate=rates[0],
            key_rate=rates[1],
            over_limit=OverLimit(over),
            key_weights=self.key_weights,
        )

    def _check_batch(self) -> None:
        if self.batch_size is None:
            if self.batch_wait_s or self.batch_by_key:
                raise FlowRuleError(
                    f"task {self.name!r}: batch_wait and batch_by_key need a batch_size"
                )
            return
        size = check_limit(self.batch_size, f"task {self.name!r}: batch_size")
        if size is not None and size > MAX_BATCH_SIZE:
            raise FlowRuleError(
                f"task {self.name!r}: batch_size must be at most {MAX_BATCH_SIZE:,}, got {size:,}"
            )
        wait: object = self.batch_wait_s
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 3600:
            raise FlowRuleError(
                f"task {self.name!r}: batch_wait must be 0 to 3600 seconds, got "
                f"{reprlib.repr(wait)}"
            )
        if not isinstance(self.batch_by_key, bool):
            raise FlowRuleError(
                f"task {self.name!r}: batch_by_key must be True or False, got "
                f"{reprlib.repr(self.batch_by_key)}"
            )
        if self.process:
            raise FlowRuleError(
                f"task {self.name!r}: a batched task runs on the worker's event loop or "
                "thread pool, not in the process pool: drop process=True or batch_size"
            )


class Enqueuer(SpecSender, Protocol):
    """What a task needs from its app to send jobs (the App implements it)."""

    @property
    def serializer(self) -> Serializer: ...

    async def enqueue_calls(
        self,
        task: Task[Any, R],
        calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        options: EnqueueOptions,
    ) -> list[JobHandle[R]]: ...

    def run_sync(self, coro: typing.Coroutine[Any, Any, R]) -> R: ...


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    kind: inspect._ParameterKind
    decoder: Any  # the type msgspec converts to; None means accept anything


class Task(Generic[P, R]):
    """A registered function; calling it runs it here, `enqueue` sends a job.

    R is what a job's result decodes to: the function's return type, or what its
    coroutine returns for an ``async def``."""

    def __init__(self, fn: Callable[P, Any], options: TaskOptions, app: Enqueuer) -> None:
        self.fn = fn
        self.options = options
        self.app = app
        self.is_async = inspect.iscoroutinefunction(fn)
        if options.process and self.is_async:
            raise TaskDefinitionError(f"task {options.name!r}: process=True needs a plain function")
        try:
            self._signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:  # a builtin or a C callable without one
            raise TaskDefinitionError(
                f"task {options.name!r}: its signature cannot be read ({exc}), so arguments "
                "cannot be checked; wrap it in a plain function"
            ) from exc
        self._params, self.return_type = _describe(fn, self._signature)
        #: Called with a list of jobs' arguments (``batch_size``): each job takes the one
        #: item, checked against the list's item hint, and the function returns one result
        #: per job (a list) or None.
        self.batched = options.batch_size is not None
        if self.batched:
            self._signature, self._params, self.return_type = _batch_shape(
                options.name, self._signature, self._params, self.return_type
            )
        # Option names the function does not take as parameters: refused as call keywords,
        # so a call written for the old mixed form fails instead of changing meaning.
        self._option_names = OPTION_NAMES - {
            p.name for p in self._signature.parameters.values() if p.kind in _NAMED
        }
        self._call_option_names = self._option_names & CALL_OPTION_NAMES
        self._key_names = _key_names(options.key)
        self._check_key_names()
        # Plain positional calls (the common case) skip inspect's bind: it dominated the
        # worker's per-job cost. Any other call shape goes through bind as usual.
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self._plain = all(p.kind in positional for p in self._signature.parameters.values())
        self._required = sum(
            p.default is inspect.Parameter.empty for p in self._signature.parameters.values()
        )

    @property
    def name(self) -> TaskName:
        return self.options.name

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.options.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.fn(*args, **kwargs)

    # -- sending -------------------------------------------------------------------
    def s(self, *args: P.args, **kwargs: P.kwargs) -> JobSpec[R]:
        """An unsent job of this task; options go on with `.with_options(...)`."""
        self._refuse_options(kwargs)
        return JobSpec(task=self.name, args=args, kwargs=kwargs, sender=self.app)

    def then(self: Task[Concatenate[A, Q], R], *args: Q.args, **kwargs: Q.kwargs) -> JobSpec[R]:
        """A spec whose first argument its parents give: a chain's link, a chord's
        callback, a batch callback (``chain(fetch.s(url), parse.then())``). The same spec
        as `s`, typed without that first argument, so a checked call stays checked; the
        whole call is checked at enqueue, with the input in front."""
        self._refuse_options(kwargs)
        return JobSpec(task=self.name, args=args, kwargs=kwargs, sender=self.app)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Send one job; options go through `with_options` (``task.with_options(delay=5)``).

        ``depends_on=``, ``allow_failed=``, ``unique_key=``, ``debounce=``, ``max_wait=``,
        ``cooldown=`` and ``expires=`` are also taken here, as a shorthand
        (``report.enqueue(depends_on=[a, b])``, ``send.enqueue(user, unique_key=...)``),
        when the function has no parameter of that name: they never were task arguments, so
        nothing changes meaning. Type checkers see only the task's own parameters; typed
        code writes ``report.with_options(depends_on=[a, b]).enqueue()``.
        """
        waits = self._call_options(kwargs)
        spec = self.s(*args, **kwargs)
        return await (spec.with_options(**waits) if waits else spec).enqueue()

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """`enqueue` for synchronous code (a web view, a script)."""
        return self.app.run_sync(self.enqueue(*args, **kwargs))

    async def enqueue_many(
        self,
        calls: Iterable[Sequence[Any] | tuple[Sequence[Any], dict[str, Any]]],
        **options: Unpack[OptionChanges],
    ) -> list[JobHandle[R]]:
        """Send many jobs in pipelined batches; each call is an args tuple, or (args, kwargs)."""
        return await self.app.enqueue_calls(self, _as_calls(calls), options_from(options))

    def with_options(self, **options: Unpack[OptionChanges]) -> BoundTask[P, R]:
        """This task with enqueue options fixed, e.g. `task.with_options(delay=5).enqueue(x)`."""
        return BoundTask(self, options_from(options))

    def _call_options(self, kwargs: dict[str, Any]) -> OptionChanges:
        """Take the shorthand options (``depends_on``, ``unique_key``, ``expires``...: see
        enqueue) out of a call's keywords."""
        if not kwargs:
            return {}
        taken: dict[str, Any] = {
            name: kwargs.pop(name) for name in self._call_option_names.intersection(kwargs)
        }
        return typing.cast(OptionChanges, taken)

    def _refuse_options(self, kwargs: dict[str, Any]) -> None:
        if kwargs and not self._option_names.isdisjoint(kwargs):
            name = min(self._option_names.intersection(kwargs))
            raise ArgumentError(
                f"task {self.name!r}: {name!r} is an enqueue option, not an argument of the "
                f"task: use {self.name}.with_options({name}=...).enqueue(...) or "
                f"{self.name}.s(...).with_options({name}=...)"
            )

    # -- flow control --------------------------------------------------------------
    def _check_key_names(self) -> None:
        """A key function asking for a name the task does not take fails on every job:
        said at definition instead (when every argument is passed by name)."""
        key = self.options.key
        if key is None or any(p.kind not in _NAMED for p in self._params):
            return
        try:
            params = inspect.signature(key).parameters.values()
        except (TypeError, ValueError):
            return
        names = {p.name for p in self._params}
        missing = sorted(
            p.name
            for p in params
            if p.kind in _NAMED and p.default is inspect.Parameter.empty and p.name not in names
        )
        if missing:
            raise FlowRuleError(
                f"task {self.name!r}: its key function takes {', '.join(map(repr, missing))}, "
                f"which the task does not: it is called with the task's arguments by name"
            )

    def key_of(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
        """A job's fairness key: the task's key function called with the job's arguments
        (see `_key_call`); None without one. A key function that raises, or returns
        anything but a short str, is a FlowRuleError naming the task: nothing is sent."""
        key = self.options.key
        if key is None:
            return None
        positional, named = self._key_call(args, kwargs)
        try:
            value = key(*positional, **named)
        except Exception as exc:
            raise FlowRuleError(
                f"task {self.name!r}: its key function raised {type(exc).__name__}: {exc}"
            ) from exc
        return check_key(value, f"task {self.name!r}: the key function's result")

    def arguments_by_name(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """A call's arguments by parameter name, defaults filled in and ``**kwargs`` spread
        (what a strike's conditions compare; ``*args`` stays a tuple under its name)."""
        bound = self._bind(args, dict(kwargs))
        bound.apply_defaults()
        named: dict[str, Any] = {}
        for param in self._params:
            if param.name not in bound.arguments:
                continue
            value = bound.arguments[param.name]
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                named.update(value)
            else:
                named[param.name] = value
        return named

    def _key_call(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Sequence[Any], dict[str, Any]]:
        """The job's arguments as the key function is called with them: by name (defaults
        filled in), so ``key=lambda tenant, **_: tenant`` reads one whatever the call's
        shape; positionally where a name cannot be used (positional-only, ``*args``). A
        key function without ``**kwargs`` gets only the names it declares."""
        bound = self._bind(args, dict(kwargs))
        bound.apply_defaults()
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in self._params):
            return bound.args, bound.kwargs
        positional: list[Any] = []
        named: dict[str, Any] = {}
        for param in self._params:
            if param.name not in bound.arguments:
                continue
            value = bound.arguments[param.name]
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                positional.append(value)
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                named.update(value)
            else:
                named[param.name] = value
        if self._key_names is not None:
            named = {name: value for name, value in named.items() if name in self._key_names}
        return positional, named

    # -- arguments -----------------------------------------------------------------
    def encode_payload(
        self, args: Sequence[Any], kwargs: dict[str, Any], *, takes_input: str | None = None
    ) -> bytes:
        """Check the call against the signature and hints, then encode it.

        `takes_input` names what the worker will prepend to the arguments (a workflow job's
        parents' results, e.g. ``a chain link``): the call is then checked as if a first
        argument came before `args`, and only `args` are encoded.
        """
        if takes_input is not None:
            self._check_with_input(args, kwargs, takes_input)
        elif self._positional_fits(args, kwargs):
            self._convert_positional(args, strict=True)
        else:
            self._convert(self._bind(args, kwargs), strict=True)
        try:
            return self.app.serializer.dumps({"args": list(args), "kwargs": kwargs})
        except SerializationError as exc:
            raise SerializationError(f"task {self.name!r}: {exc}") from exc

    def decode_payload(self, data: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Turn a decoded payload back into call arguments, checked again against the hints."""
        if not (
            isinstance(data, dict)
            and isinstance(data.get("args", []), list)
            and isinstance(data.get("kwargs", {}), dict)
        ):
            raise ArgumentError("payload is not {'args': [...], 'kwargs': {...}}")
        args, kwargs = data.get("args", []), data.get("kwargs", {})
        if self._positional_fits(args, kwargs):
            return self._convert_positional(args, strict=False), {}
        bound = self._bind(args, kwargs)
        self._convert(bound, strict=False)
        return bound.args, bound.kwargs

    def _check_with_input(self, args: Sequence[Any], kwargs: dict[str, Any], what: str) -> None:
        """Bind the call with a stand-in for the prepended value, then check the hints of
        everything but that value (it is checked by the worker, once it exists)."""
        try:
            bound = self._signature.bind(_INPUT, *args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(
                f"task {self.name!r} cannot take the result it would be given as {what} "
                f"(prepended as its first argument): {exc}"
            ) from exc
        # The stand-in went to the first positional parameter, or into *args.
        name, value = next(iter(bound.arguments.items()))
        if value is _INPUT:
            del bound.arguments[name]
        else:
            bound.arguments[name] = value[1:]
        self._convert(bound, strict=True)

    def _positional_fits(self, args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
        return self._plain and not kwargs and self._required <= len(args) <= len(self._params)

    def _convert_positional(self, args: Sequence[Any], *, strict: bool) -> tuple[Any, ...]:
        out = list(args)
        index = 0
        try:  # one try around the loop: this runs for every job a worker starts
            for index, value in enumerate(args):
                decoder = self._params[index].decoder
                if decoder is not None:
                    out[index] = msgspec.convert(value, decoder, strict=strict)
        except _CONVERT_ERRORS as exc:
            raise self._conversion_error(self._params[index], exc) from exc
        return tuple(out)

    def _conversion_error(self, param: _Param, exc: Exception) -> CorqError:
        """What a value that does not fit its parameter's hint is reported as."""
        if isinstance(exc, RecursionError):  # a recursive hint checked against a deep value
            return SerializationError(
                f"task {self.name!r}: argument {param.name!r} is nested deeper than the "
                "serializer allows"
            )
        if isinstance(exc, UnicodeError):  # msgspec cannot even quote such a str
            return SerializationError(
                f"task {self.name!r}: argument {param.name!r} holds text that is not valid "
                "UTF-8 (a lone surrogate)"
            )
        return ArgumentError(f"task {self.name!r}: argument {param.name!r}: {exc}")

    def _bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"task {self.name!r}: {exc}") from exc

    def _convert(self, bound: inspect.BoundArguments, *, strict: bool) -> None:
        arguments = bound.arguments
        for param in self._params:
            if param.decoder is None or param.name not in arguments:
                continue
            try:
                arguments[param.name] = msgspec.convert(
                    arguments[param.name], param.decoder, strict=strict
                )
            except _CONVERT_ERRORS as exc:
                raise self._conversion_error(param, exc) from exc


class BoundTask(Generic[P, R]):
    """A task with enqueue options already chosen."""

    def __init__(self, task: Task[P, R], options: EnqueueOptions) -> None:
        self.task = task
        self.options = options

    def s(self, *args: P.args, **kwargs: P.kwargs) -> JobSpec[R]:
        """An unsent job of the task, with these options."""
        return self._spec(args, kwargs)

    def then(
        self: BoundTask[Concatenate[A, Q], R], *args: Q.args, **kwargs: Q.kwargs
    ) -> JobSpec[R]:
        """`Task.then` with these options."""
        return self._spec(args, kwargs)

    def _spec(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> JobSpec[R]:
        """`s` and `then` build the same spec; only their typing differs."""
        self.task._refuse_options(kwargs)
        return JobSpec(
            task=self.task.name,
            args=args,
            kwargs=kwargs,
            options=self.options,
            sender=self.task.app,
        )

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """`Task.enqueue` with these options (the shorthand options taken here too)."""
        waits = self.task._call_options(kwargs)
        spec = self.s(*args, **kwargs)
        return await (spec.with_options(**waits) if waits else spec).enqueue()

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        return self.task.app.run_sync(self.enqueue(*args, **kwargs))

    async def enqueue_many(
        self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], dict[str, Any]]]
    ) -> list[JobHandle[R]]:
        return await self.task.app.enqueue_calls(self.task, _as_calls(calls), self.options)


def _as_calls(
    calls: Iterable[Sequence[Any] | tuple[Sequence[Any], dict[str, Any]]],
) -> list[tuple[Sequence[Any], dict[str, Any]]]:
    """Every call of an enqueue_many as (args, kwargs); a bad shape is an ArgumentError."""
    if isinstance(calls, str | bytes | dict) or not isinstance(calls, Iterable):
        raise ArgumentError(
            f"enqueue_many takes an iterable of calls (args tuples, or (args, kwargs) pairs), "
            f"got {reprlib.repr(calls)}"
        )
    return [_as_call(call) for call in calls]


def _as_call(
    call: Sequence[Any] | tuple[Sequence[Any], dict[str, Any]],
) -> tuple[Sequence[Any], dict[str, Any]]:
    if (
        isinstance(call, tuple)
        and len(call) == 2
        and isinstance(call[0], list | tuple)
        and isinstance(call[1], dict)
    ):
        return call[0], call[1]
    if isinstance(call, list | tuple):
        return call, {}
    raise ArgumentError(
        f"each call must be an args tuple or (args, kwargs), got {reprlib.repr(call)}"
    )


#: Stands for the value a workflow job is given by its parents, while its call is checked.
_INPUT = object()

#: Parameter kinds a positional argument can fill.
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
#: Parameter kinds a keyword can name.
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _key_names(key: Callable[..., str] | None) -> frozenset[str] | None:
    """The keyword names a key function takes; None when it takes any (``**kwargs``), has
    no key function, or its signature cannot be read."""
    if key is None:
        return None
    try:
        params = inspect.signature(key).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in _NAMED)


def _batch_shape(
    name: TaskName, signature: inspect.Signature, params: list[_Param], returns: Any
) -> tuple[inspect.Signature, list[_Param], Any]:
    """A batched task's per-job shape: the function takes one list (``rows: list[Row]``),
    so a job takes one item (a ``Row``) and results in one item of the returned list."""
    required = [p for p in signature.parameters.values() if p.default is inspect.Parameter.empty]
    if len(params) != 1 or len(required) != 1 or params[0].kind not in _POSITIONAL:
        raise TaskDefinitionError(
            f"task {name!r}: a batched task (batch_size=) takes one positional parameter, "
            f"the list of its jobs' arguments (one item per job), got {signature}"
        )
    param = params[0]
    item = _item_decoder(param.decoder, name, "its parameter must be a list")
    result = _item_decoder(returns, name, "it must return a list (one result per job) or None")
    job_signature = inspect.Signature(
        [inspect.Parameter(param.name, inspect.Parameter.POSITIONAL_ONLY)]
    )
    return job_signature, [_Param(param.name, inspect.Parameter.POSITIONAL_ONLY, item)], result


def _item_decoder(hint: Any, name: TaskName, what: str) -> Any:
    """The item type of a ``list[T]`` / ``Sequence[T]`` hint (None: anything); a hint that
    is not a list (nor None, for a result) is a TaskDefinitionError saying `what`."""
    if hint is None or hint is type(None):
        return None
    origin = typing.get_origin(hint) or hint
    if not (isinstance(origin, type) and issubclass(origin, Sequence)) or origin in (str, bytes):
        raise TaskDefinitionError(f"task {name!r}: a batched task takes a list: {what}")
    args = typing.get_args(hint)
    return _decoder_for(args[0]) if args else None


def _describe(fn: Callable[..., Any], signature: inspect.Signature) -> tuple[list[_Param], Any]:
    """Per-parameter decoders from the type hints; unsupported or missing hints accept anything."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward refs: validate nothing rather than fail
        hints = {}
    params = []
    for name, param in signature.parameters.items():
        hint = hints.get(name, Any)
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            hint = tuple[hint, ...]  # type: ignore[valid-type]  # built at runtime from a hint
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            hint = dict[str, hint]  # type: ignore[valid-type]  # built at runtime from a hint
        params.append(_Param(name, param.kind, _decoder_for(hint)))
    return params, _decoder_for(hints.get("return", Any))


def _decoder_for(hint: Any) -> Any:
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    try:
        msgspec.json.Decoder(hint)
    except TypeError:
        return None
    return hint
