"""The App: settings, the task registry, and one broker connection per event loop."""

from __future__ import annotations

import asyncio
import logging
import reprlib
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, overload

from corq.admin import Admin
from corq.backends import open_backend
from corq.canvas import Batch, Chain, Chord, Flow, Group, Workflow
from corq.client import Client, JobHandle
from corq.clock import SystemClock
from corq.control import Breaker
from corq.errors import ArgumentError, ConfigError, ScheduleError, TaskDefinitionError
from corq.flow import OnDuplicate, OverLimit, Rate, TaskRules
from corq.limits import MAX_DELAY_S, check_priority
from corq.retry import RetryPolicy, exception_classes
from corq.schedule import CatchUp, Overlap, ScheduleDef, make_policy, make_rule
from corq.schedules import Schedules
from corq.schedules.periodic import PeriodicSchedules
from corq.serializers import Serializer, get_serializer
from corq.settings import Settings
from corq.spec import (
    DependencyLike,
    EnqueueOptions,
    JobSpec,
    check_queue_name,
    check_task_name,
    duration_ms,
)
from corq.task import Task, TaskOptions
from corq.types import Clock, JobId, QueueName, TaskName
from corq.workflows import BatchHandle, WorkflowHandle

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _Register(Protocol):
    """What ``@app.task(...)`` returns: a decorator typed like ``@app.task``."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class _RegisterBatch(Protocol):
    """What ``@app.task(batch_size=...)`` returns: the function takes a list of items
    (``rows: list[Row]``), so each job takes one item and results in one item of the list
    it returns (or None)."""

    @overload
    def __call__(
        self, fn: Callable[[list[T]], Coroutine[Any, Any, None]], /
    ) -> Task[[T], None]: ...

    @overload
    def __call__(
        self, fn: Callable[[list[T]], Coroutine[Any, Any, list[R]]], /
    ) -> Task[[T], R]: ...

    @overload
    def __call__(self, fn: Callable[[list[T]], None], /) -> Task[[T], None]: ...

    @overload
    def __call__(self, fn: Callable[[list[T]], list[R]], /) -> Task[[T], R]: ...


class _Periodic(Protocol):
    """What ``@app.periodic(...)`` returns: a decorator of a function or an existing task."""

    @overload
    def __call__(self, fn: Task[P, R], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class App:
    """Holds what producers and workers share: settings, tasks, broker connections."""

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        **overrides: Any,
    ) -> None:
        if settings is None:
            settings = Settings(**({"url": url} if url else {}), **overrides)  # type: ignore[arg-type]  # overrides are checked by pydantic
        elif url or overrides:
            settings = _updated(settings, {**overrides, **({"url": url} if url else {})})
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.registry: dict[TaskName, Task[Any, Any]] = {}
        #: Schedules declared with ``@app.periodic``, by name (the scheduler leader writes
        #: them to the broker).
        self._periodic = PeriodicSchedules()
        self.periodic_schedules: dict[str, ScheduleDef] = self._periodic.definitions
        self._schedules = Schedules(self)
        self._serializer = get_serializer(settings.serializer)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = (
            weakref.WeakKeyDictionary()
        )
        self._portal: _Portal | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<corq.App url={self.settings.url!r} tasks={len(self.registry)}>"

    def task_queues(self) -> set[QueueName]:
        """Every queue this app's tasks send to."""
        return {t.options.queue for t in self.registry.values()}

    def flow_rules(self) -> list[TaskRules]:
        """The flow-control rules of every registered task that has some (what a worker
        stores with ``set_rules`` in each queue it serves, before it claims)."""
        return [t.options.rules for t in self.registry.values() if t.options.rules.active]

    def configure(self, **changes: Any) -> None:
        """Change settings (e.g. url) before any connection is made."""
        if self._clients or self._portal is not None:
            raise ConfigError("configure() must be called before the app connects")
        serializer = self.settings.serializer
        self.settings = _updated(self.settings, changes)
        self._serializer = get_serializer(self.settings.serializer)
        if self.settings.serializer != serializer:
            self._periodic.encode_again(self.registry)

    @property
    def schedules(self) -> Schedules:
        """Stored schedules at runtime: add, update, pause, resume, backfill, run now."""
        return self._schedules

    @property
    def serializer(self) -> Serializer:
        return self._serializer

    # -- tasks -----------------------------------------------------------------------
    # A coroutine function's jobs result in what its coroutine returns: the first overload
    # takes R from inside the Coroutine, so `await handle.result()` is that type.
    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        retries: int = 0,
        timeout: float | None = None,
        process: bool = False,
        retry_on: type[BaseException] | Iterable[type[BaseException]] = (),
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        jitter: bool = True,
        priority: int = 0,
        concurrency: int | None = None,
        key: Callable[..., str] | None = None,
        key_concurrency: int | None = None,
        rate_limit: str | Rate | None = None,
        key_rate_limit: str | Rate | None = None,
        key_weights: Mapping[str, int] | None = None,
        over_limit: OverLimit | Literal["wait", "drop"] = OverLimit.WAIT,
        on_duplicate: OnDuplicate | Literal["keep", "replace", "cancel"] = OnDuplicate.KEEP,
        unique_for: timedelta | float = 0,
        batch_size: int,
        batch_wait: timedelta | float = 0,
        batch_by_key: bool = False,
        breaker: Breaker | None = None,
    ) -> _RegisterBatch: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        retries: int = 0,
        timeout: float | None = None,
        process: bool = False,
        retry_on: type[BaseException] | Iterable[type[BaseException]] = (),
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        jitter: bool = True,
        priority: int = 0,
        concurrency: int | None = None,
        key: Callable[..., str] | None = None,
        key_concurrency: int | None = None,
        rate_limit: str | Rate | None = None,
        key_rate_limit: str | Rate | None = None,
        key_weights: Mapping[str, int] | None = None,
        over_limit: OverLimit | Literal["wait", "drop"] = OverLimit.WAIT,
        on_duplicate: OnDuplicate | Literal["keep", "replace", "cancel"] = OnDuplicate.KEEP,
        unique_for: timedelta | float = 0,
        batch_size: None = None,
        batch_wait: timedelta | float = 0,
        batch_by_key: bool = False,
        breaker: Breaker | None = None,
    ) -> _Register: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        retries: int = 0,
        timeout: float | None = None,
        process: bool = False,
        retry_on: type[BaseException] | Iterable[type[BaseException]] = (),
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        jitter: bool = True,
        priority: int = 0,
        concurrency: int | None = None,
        key: Callable[..., str] | None = None,
        key_concurrency: int | None = None,
        rate_limit: str | Rate | None = None,
        key_rate_limit: str | Rate | None = None,
        key_weights: Mapping[str, int] | None = None,
        over_limit: OverLimit | Literal["wait", "drop"] = OverLimit.WAIT,
        on_duplicate: OnDuplicate | Literal["keep", "replace", "cancel"] = OnDuplicate.KEEP,
        unique_for: timedelta | float = 0,
        batch_size: int | None = None,
        batch_wait: timedelta | float = 0,
        batch_by_key: bool = False,
        breaker: Breaker | None = None,
    ) -> Task[Any, Any] | _Register | _RegisterBatch:
        """Register a function as a task: ``@app.task`` or ``@app.task(retries=3, timeout=10)``.

        Flow control (docs/design.md, "Flow control"), applied by the broker on all workers
        together: `concurrency` (most jobs running at once), `key` (a function of the
        job's arguments giving its fairness key: keys share the workers round robin, by
        `key_weights`), `key_concurrency`, `rate_limit` and `key_rate_limit` (``"50/s"``,
        ``"100/m"``, ``"/h"``), `over_limit` (``"wait"`` or ``"drop"``), `on_duplicate`
        (what an enqueue whose ``unique_key`` is taken does) and `unique_for` (how long the
        key stays taken after the job ended). `batch_size` hands the function a list of up
        to that many jobs' arguments at once, waiting up to `batch_wait` for more, grouped
        by key with `batch_by_key`. A bad value is a FlowRuleError here, at definition.

        `breaker` (``corq.Breaker(failures=5, window=60, reset=30)``) opens the task's
        circuit after that many failed attempts within the window: its jobs then wait
        (snoozed, no attempt used) until a probe job succeeds (docs/design.md, "Snooze,
        start gates and circuit breakers").
        """

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            task_name = check_task_name(_task_name(func) if name is None else name)
            options = TaskOptions(
                name=task_name,
                queue=check_queue_name(self.settings.default_queue if queue is None else queue),
                retry=RetryPolicy(
                    max_retries=retries,
                    backoff_s=backoff,
                    max_backoff_s=max_backoff,
                    jitter=jitter,
                    retry_on=exception_classes(retry_on),
                ),
                timeout_s=_check_timeout(timeout),
                process=_check_flag("process", process),
                priority=check_priority(priority, TaskDefinitionError),
                concurrency=concurrency,
                key=key,
                key_concurrency=key_concurrency,
                rate_limit=rate_limit,  # type: ignore[arg-type]  # a str is parsed by TaskOptions
                key_rate_limit=key_rate_limit,  # type: ignore[arg-type]  # parsed too
                key_weights={} if key_weights is None else key_weights,
                over_limit=over_limit,  # type: ignore[arg-type]  # checked by TaskOptions
                on_duplicate=on_duplicate,  # type: ignore[arg-type]  # checked by TaskOptions
                unique_for_ms=duration_ms(unique_for, f"task {task_name!r}: unique_for"),
                batch_size=batch_size,
                batch_wait_s=duration_ms(batch_wait, f"task {task_name!r}: batch_wait") / 1000,
                batch_by_key=batch_by_key,
                breaker=breaker,
            )
            if options.name in self.registry:
                raise TaskDefinitionError(
                    f"a task named {options.name!r} is already registered; pass name=..."
                )
            task: Task[Any, Any] = Task(func, options, self)
            self.registry[options.name] = task
            return task

        return register(fn) if fn is not None else register

    # -- schedules -------------------------------------------------------------------
    def periodic(
        self,
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        at: datetime | None = None,
        tz: str | None = None,
        anchor: datetime | None = None,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        overlap: Overlap | str = Overlap.ALLOW_ALL,
        catchup: CatchUp | str = CatchUp.ALL,
        catchup_window: timedelta | float | None = None,
        jitter: timedelta | float | None = None,
        pause_on_failure: bool = False,
        task_name: str | None = None,
        queue: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        process: bool | None = None,
        retry_on: type[BaseException] | Iterable[type[BaseException]] | None = None,
        backoff: float | None = None,
        max_backoff: float | None = None,
        retry_jitter: bool | None = None,
        priority: int | None = None,
    ) -> _Periodic:
        """Register a task and a schedule that fires it (a *code* schedule):

            @app.periodic(cron="*/5 * * * *", tz="Asia/Shanghai")
            async def rebuild_report() -> None: ...

        `name` names the schedule (default: the task's name); `task_name` and the task
        keywords of ``@app.task`` define the task (`retry_jitter` is its retry jitter flag;
        `jitter` here delays each tick's job). Given an existing task
        (``app.periodic(every=60)(my_task)``) only the schedule is added. Every mistake is a
        ScheduleError now, at import, not at the first tick. A one-shot (`at=`) whose time
        has passed is kept but never fires: the code outlives its one-shot.
        """
        rule = make_rule(cron=cron, every=every, at=at, tz=tz, anchor=anchor)
        if rule.at_ms is not None and rule.at_ms <= self.clock.now_ms():
            log.warning("code schedule at=%s has passed: it never fires", at)
        policy = make_policy(
            overlap=overlap,
            catchup=catchup,
            catchup_window=catchup_window,
            jitter=jitter,
            pause_on_failure=pause_on_failure,
        )
        task_options = {
            "name": task_name,
            "queue": queue,
            "retries": retries,
            "timeout": timeout,
            "process": process,
            "retry_on": retry_on,
            "backoff": backoff,
            "max_backoff": max_backoff,
            "retry_jitter": retry_jitter,
            "priority": priority,
        }
        given = sorted(k for k, v in task_options.items() if v is not None)

        def declare(fn: Callable[..., Any]) -> Task[Any, Any]:
            registered = not isinstance(fn, Task)
            if isinstance(fn, Task):
                if given:
                    raise ScheduleError(
                        f"task {fn.name!r} is defined already: give its options to @app.task, "
                        f"not to periodic ({', '.join(given)})"
                    )
                task = fn
            else:
                task = self.task(
                    name=task_name,
                    queue=queue,
                    retries=0 if retries is None else retries,
                    timeout=timeout,
                    process=False if process is None else process,
                    retry_on=() if retry_on is None else retry_on,
                    backoff=1.0 if backoff is None else backoff,
                    max_backoff=300.0 if max_backoff is None else max_backoff,
                    jitter=True if retry_jitter is None else retry_jitter,
                    priority=0 if priority is None else priority,
                )(fn)
            try:
                self._periodic.declare(
                    task,
                    name,
                    rule=rule,
                    policy=policy,
                    args=args,
                    kwargs=kwargs,
                    max_payload_bytes=self.settings.max_payload_bytes,
                )
            except BaseException:
                if registered:
                    self.registry.pop(task.name, None)
                raise
            return task

        return declare

    # -- connections -----------------------------------------------------------------
    def admin(self, who: str | None = None) -> Admin:
        """The operator API on this loop's client; changes are recorded as made by `who`
        (default: the OS user at this host)."""
        return Admin(self, self.client(), who)

    def client(self) -> Client:
        """The client bound to the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self.new_client()
            self._clients[loop] = client
        return client

    def new_client(self) -> Client:
        """A client with its own broker connections (for a worker or another thread)."""
        backend = open_backend(
            self.settings.url,
            prefix=self.settings.prefix,
            socket_timeout_s=self.settings.socket_timeout_s,
            dead_max=self.settings.dead_max,
            dead_ttl_ms=round(self.settings.dead_ttl_s * 1000),
            events_max=self.settings.events_max,
        )
        return Client(
            backend,
            serializer=self._serializer,
            clock=self.clock,
            max_payload_bytes=self.settings.max_payload_bytes,
            default_queue=self.settings.default_queue,
            registry=self.registry,
            max_workflow_jobs=self.settings.max_workflow_jobs,
        )

    async def enqueue_calls(
        self,
        task: Task[Any, R],
        calls: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        options: EnqueueOptions,
    ) -> list[JobHandle[R]]:
        return await self.client().enqueue_calls(task, calls, options)

    async def enqueue_spec(self, spec: JobSpec[R]) -> JobHandle[R]:
        """Send one spec (what `spec.enqueue()` calls)."""
        return await self.client().enqueue(spec)

    # -- workflows -------------------------------------------------------------------
    @overload
    async def enqueue_workflow(self, flow: Group[R], /) -> WorkflowHandle[list[R]]: ...

    @overload
    async def enqueue_workflow(self, flow: Chain[R] | Chord[R], /) -> WorkflowHandle[R]: ...

    @overload
    async def enqueue_workflow(self, flow: Workflow, /) -> WorkflowHandle[list[Any]]: ...

    async def enqueue_workflow(self, flow: Flow, /) -> WorkflowHandle[Any]:
        """Send a chain, group, chord or Workflow in one broker call (what
        ``corq.chain(...).enqueue()`` calls)."""
        return await self.client().enqueue_workflow(flow)

    async def open_batch(self, batch: Batch, /) -> BatchHandle:
        """Create an open batch (what ``corq.batch(...).open()`` calls)."""
        return await self.client().open_batch(batch)

    def workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle on an existing workflow: its status, result, cancel."""
        return self.client().workflow(workflow_id)

    def batch(self, workflow_id: str) -> BatchHandle:
        """A handle on an existing batch, to add jobs to or close."""
        return self.client().batch(workflow_id)

    def spec(self, task_name: TaskName, /, *args: Any, **kwargs: Any) -> JobSpec[Any]:
        """An unsent job of a task known by name (registered here or only in some worker);
        options go on with `.with_options(...)`."""
        return JobSpec(task=task_name, args=args, kwargs=kwargs, sender=self)

    @overload
    async def enqueue(self, spec: JobSpec[R], /) -> JobHandle[R]: ...

    @overload
    async def enqueue(
        self,
        task_name: TaskName,
        /,
        *args: Any,
        queue: QueueName | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        job_id: JobId | None = None,
        priority: int | None = None,
        depends_on: Sequence[DependencyLike] = (),
        allow_failed: bool = False,
        unique_key: str | None = None,
        debounce: float | timedelta | None = None,
        max_wait: float | timedelta | None = None,
        cooldown: float | timedelta | None = None,
        expires: float | timedelta | None = None,
    ) -> JobHandle[Any]: ...

    async def enqueue(
        self,
        target: JobSpec[Any] | TaskName,
        /,
        *args: Any,
        queue: QueueName | None = None,
        delay: float | timedelta | None = None,
        eta: datetime | None = None,
        job_id: JobId | None = None,
        priority: int | None = None,
        depends_on: Sequence[DependencyLike] = (),
        allow_failed: bool = False,
        unique_key: str | None = None,
        debounce: float | timedelta | None = None,
        max_wait: float | timedelta | None = None,
        cooldown: float | timedelta | None = None,
        expires: float | timedelta | None = None,
    ) -> JobHandle[Any]:
        """Send a spec, or a job by task name with positional args (options as keywords,
        as in EnqueueOptions)."""
        client = self.client()
        if isinstance(target, JobSpec):
            given = (queue, delay, eta, job_id, priority, depends_on or None, allow_failed)
            flow = (unique_key, debounce, max_wait, cooldown, expires)
            if args or given != (None,) * 6 + (False,) or flow != (None,) * 5:
                raise ArgumentError("a job spec carries its own arguments and options")
            return await client.enqueue(target)
        return await client.enqueue(
            target,
            args,
            queue=queue,
            delay=delay,
            eta=eta,
            job_id=job_id,
            priority=priority,
            depends_on=depends_on,
            allow_failed=allow_failed,
            unique_key=unique_key,
            debounce=debounce,
            max_wait=max_wait,
            cooldown=cooldown,
            expires=expires,
        )

    async def enqueue_many(self, specs: Sequence[JobSpec[R]]) -> list[JobHandle[R]]:
        """Send specs of any tasks and queues in one pipelined broker call (checked first)."""
        return await self.client().enqueue_many(specs)

    def job(self, job_id: JobId, queue: QueueName | None = None) -> JobHandle[Any]:
        """A handle on an existing job."""
        return self.client().job(job_id, self.settings.default_queue if queue is None else queue)

    def run_sync(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run a coroutine on the app's background loop, from synchronous code."""
        with self._lock:
            if self._portal is None:
                self._portal = _Portal()
        return self._portal.run(coro)

    async def aclose(self) -> None:
        """Close this event loop's broker connections (and the sync portal's)."""
        await self.aclose_loop_only()
        await asyncio.to_thread(self.close_sync)

    async def aclose_loop_only(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def close_sync(self) -> None:
        with self._lock:
            portal, self._portal = self._portal, None
        if portal is not None:
            portal.close(self)


class _Portal:
    """A private event loop on a daemon thread that runs sync callers' coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="corq-sync", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        if threading.current_thread() is self.thread:
            raise RuntimeError("enqueue_sync called from inside corq's own sync loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self, app: App) -> None:
        async def shutdown() -> None:
            await app.aclose_loop_only()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        self.loop.close()


def _updated(settings: Settings, changes: dict[str, Any]) -> Settings:
    """`settings` with `changes`, validated like the original (model_copy checks nothing,
    so a NaN lease or an unknown name would pass)."""
    return Settings.model_validate({**settings.model_dump(), **changes})


def _task_name(func: object) -> str:
    """The default task name: the function's own (a partial or a callable object has none)."""
    if not callable(func):
        raise TaskDefinitionError(f"@app.task needs a function, got {reprlib.repr(func)}")
    default = getattr(func, "__name__", None)
    if not isinstance(default, str):
        raise TaskDefinitionError(f"{reprlib.repr(func)} has no __name__: pass name=...")
    return default


def _check_timeout(timeout: object) -> float | None:
    """None (no limit) or seconds in (0, MAX_DELAY_S]: an event loop's timer cannot hold more,
    and NaN never fires."""
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_DELAY_S
    ):
        raise TaskDefinitionError(
            f"timeout must be None or a number of seconds above 0 and at most "
            f"{MAX_DELAY_S:,.0f} (corq.limits.MAX_DELAY_S), got {reprlib.repr(timeout)}"
        )
    return float(timeout)


def _check_flag(what: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TaskDefinitionError(f"{what} must be True or False, got {reprlib.repr(value)}")
    return value
