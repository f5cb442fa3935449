"""Workflows as values: chain, group, chord, batches and any graph of job specs.

Nothing here sends anything: a canvas is a frozen description built from `JobSpec`s, and
`plan()` compiles it into one flat graph of steps (a `Plan`) that the client sends in a
single broker call, so a workflow is stored whole or not at all.

How results flow (the ``inputs`` of a step, see `Inputs`):

- a chain's link gets the previous link's result as its first argument (``first``);
- a link after a group, and a chord's callback, get the list of the group's results in
  member order (``list``);
- a batch callback (``on_success``, ``on_complete``, ``on_failure`` of the outermost group,
  or of a `Batch`) gets a `BatchSummary` (``summary``).

A group's result is the list of its members' results; a member that is itself a group adds
its own results to that list in place (``group(group(a, b), c)`` is ``group(a, b, c)``). A
chain or chord whose result is a list (one that ends in a group) cannot be a group member,
since its list would be flattened the same way and lose its shape: end it with a job.

`Workflow` builds any graph: ``add`` returns a `Node` that later ``add`` calls (or
``connect``) name as a dependency; a cycle is refused when it is planned.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, TypeVarTuple, overload

from corq.errors import ArgumentError, CorqError, WorkflowError
from corq.job import JobStatus
from corq.spec import Dependency, DependencyLike, JobSpec, SpecSender
from corq.types import JobId, QueueName

if TYPE_CHECKING:  # for annotations only: handles belong to the runtime layer
    from corq.workflows import BatchHandle, WorkflowHandle

R = TypeVar("R")
T = TypeVar("T")
#: A canvas's type parameter: covariant like a spec's (a group of several tasks' specs is
#: a ``Group[object]``).
R_co = TypeVar("R_co", covariant=True)
Ts = TypeVarTuple("Ts")


class Inputs(StrEnum):
    """How a job's parents' results feed its arguments (stored in its record)."""

    #: Its one parent's result is prepended to its arguments (a chain's link).
    FIRST = "first"
    #: The list of its parents' results, in edge order, is prepended (a chord's callback,
    #: the link after a group).
    LIST = "list"
    #: The batch summary (a `BatchSummary`) is prepended (a batch callback).
    SUMMARY = "summary"


class Callback(StrEnum):
    """When a batch callback runs (the values of ``corq.backends.base.BatchEvent``)."""

    #: Once every member succeeded.
    SUCCESS = "success"
    #: Once every member ended, whatever its state.
    COMPLETE = "complete"
    #: Once the first member ends dead.
    FAILURE = "failure"


class WorkflowState(StrEnum):
    """Where a workflow is, as a whole."""

    #: Some job has not ended yet (or an open batch is not closed).
    RUNNING = "running"
    #: Every job succeeded.
    SUCCEEDED = "succeeded"
    #: Every job ended, and some ended dead or upstream_failed.
    FAILED = "failed"
    #: Every job ended, some were cancelled, and none ended dead.
    CANCELLED = "cancelled"


def workflow_state(*, finished: bool, counts: Mapping[str, int]) -> WorkflowState:
    """The state of a workflow from its ends counted by terminal state.

    A dead job makes it failed even when it was then cancelled, since the failure is what
    someone must look at; cancelled jobs without a dead one mean somebody stopped it (an
    upstream_failed job then only follows from the cancel).
    """
    if not finished:
        return WorkflowState.RUNNING
    if counts.get(JobStatus.DEAD, 0):
        return WorkflowState.FAILED
    if counts.get(JobStatus.CANCELLED, 0):
        return WorkflowState.CANCELLED
    if counts.get(JobStatus.UPSTREAM_FAILED, 0):
        return WorkflowState.FAILED
    return WorkflowState.SUCCEEDED


class BatchSummary(TypedDict):
    """What a batch callback gets as its first argument: how the members ended."""

    #: Members (the batch's jobs that are not callbacks).
    total: int
    #: Ends so far by terminal state (``succeeded``, ``dead``...), only states seen.
    counts: dict[str, int]
    #: Members that ended dead, cancelled or upstream_failed (the first 1,000).
    failed_ids: list[JobId]
    #: How many members did, in all.
    failed: int


class UpstreamError(CorqError):
    """A parent of this job did not succeed.

    Never raised by corq: it is the value a failed parent has in ``parent_results()`` (and
    in an ``inputs`` list on an ``allow_failed`` edge), the way ``asyncio.gather`` with
    ``return_exceptions=True`` hands back exceptions, so a job can look at every parent and
    ``raise`` one if it wants to fail too.
    """

    def __init__(
        self,
        job_id: JobId,
        queue: QueueName,
        status: JobStatus | None,
        error: str | None,
    ) -> None:
        if status is None:
            message = f"parent job {job_id} ({queue}) has no record any more (expired or purged)"
        else:
            message = f"parent job {job_id} ({queue}) ended {status}: {error or 'no error'}"
        super().__init__(message)
        #: The parent's id and queue.
        self.job_id = job_id
        self.queue = queue
        #: How it ended; None when its record is gone.
        self.status = status
        #: Its error, as stored.
        self.error = error

    def __reduce__(self) -> tuple[type[UpstreamError], tuple[Any, ...]]:
        return (type(self), (self.job_id, self.queue, self.status, self.error))


@dataclass(frozen=True, kw_only=True, slots=True)
class ParentOutcome:
    """How one parent of the running job ended (``current_job().parents()``)."""

    job_id: JobId
    queue: QueueName
    #: None when its record is gone (its result expired, or it was purged).
    status: JobStatus | None
    #: Its decoded result when it succeeded, else None.
    result: Any = None
    #: Its error when it did not succeed.
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    def value(self) -> Any:
        """Its result, or an `UpstreamError` describing why there is none."""
        if self.succeeded:
            return self.result
        return UpstreamError(self.job_id, self.queue, self.status, self.error)


# -- canvases -----------------------------------------------------------------------------
class Chain(Generic[R_co]):
    """Jobs one after another, each given the previous one's result as its first argument
    (see `chain`); its result is the last link's."""

    __slots__ = ("links",)

    def __init__(self, links: Sequence[Canvas[Any]]) -> None:
        self.links: tuple[Canvas[Any], ...] = tuple(links)

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.links))})"

    async def enqueue(self) -> WorkflowHandle[R_co]:
        """Send the whole chain in one broker call (through the app that made its specs)."""
        handle: WorkflowHandle[R_co] = await _sender(self).enqueue_workflow(self)
        return handle


class Group(Generic[R_co]):
    """Jobs side by side (see `group`); its result is the list of its members' results, in
    member order. The outermost group of a workflow may carry batch callbacks."""

    __slots__ = ("members", "on_complete", "on_failure", "on_success")

    def __init__(
        self,
        members: Sequence[Canvas[Any]],
        *,
        on_success: JobSpec[Any] | None = None,
        on_complete: JobSpec[Any] | None = None,
        on_failure: JobSpec[Any] | None = None,
    ) -> None:
        self.members: tuple[Canvas[Any], ...] = tuple(members)
        self.on_success = on_success
        self.on_complete = on_complete
        self.on_failure = on_failure

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.members))})"

    def callbacks(self) -> list[tuple[Callback, JobSpec[Any]]]:
        """The batch callbacks given, each with when it runs."""
        given = (
            (Callback.SUCCESS, self.on_success),
            (Callback.COMPLETE, self.on_complete),
            (Callback.FAILURE, self.on_failure),
        )
        return [(when, spec) for when, spec in given if spec is not None]

    async def enqueue(self) -> WorkflowHandle[list[R_co]]:
        """Send every member (and callback) in one broker call."""
        handle: WorkflowHandle[list[R_co]] = await _sender(self).enqueue_workflow(self)
        return handle


class Chord(Generic[R_co]):
    """A group, then a callback given the list of the group's results (see `chord`)."""

    __slots__ = ("callback", "header")

    def __init__(self, header: Group[Any], callback: Canvas[Any]) -> None:
        self.header = header
        self.callback = callback

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.callback!r})"

    async def enqueue(self) -> WorkflowHandle[R_co]:
        """Send the header and the callback in one broker call."""
        handle: WorkflowHandle[R_co] = await _sender(self).enqueue_workflow(self)
        return handle


@dataclass(frozen=True, eq=False, slots=True)
class Node(Generic[R_co]):
    """A step added to a `Workflow`: name it in a later ``add(..., depends_on=[node])``,
    and get its job with ``handle.job(node)`` once the workflow is sent (R: its result,
    for a spec)."""

    workflow: Workflow
    index: int
    item: Canvas[Any]

    def __repr__(self) -> str:
        return f"<Node {self.index} {self.item!r}>"


@dataclass(slots=True)
class _NodeEdges:
    """The dependencies a node of a `Workflow` was given, in order."""

    parents: list[tuple[Node[Any] | Dependency, bool]] = field(default_factory=list)
    inputs: Inputs | None = None


class Workflow:
    """Any graph of jobs: ``add`` steps (specs or whole canvases) with the steps or
    existing jobs they depend on, then ``enqueue()`` it in one broker call.

        wf = corq.Workflow()
        a = wf.add(extract.s("s3://a"))
        b = wf.add(extract.s("s3://b"))
        wf.add(merge.s(), depends_on=[a, b], inputs="list")   # merge([result_a, result_b])
        handle = await wf.enqueue()

    Its result is the list of the results of its *sinks* (the steps no other step depends
    on), in the order they were added. Batch callbacks, if given, run once over every job.
    """

    def __init__(
        self,
        *,
        on_success: JobSpec[Any] | None = None,
        on_complete: JobSpec[Any] | None = None,
        on_failure: JobSpec[Any] | None = None,
    ) -> None:
        self.nodes: list[Node[Any]] = []
        self._edges: list[_NodeEdges] = []
        self.callbacks = Group(
            (), on_success=on_success, on_complete=on_complete, on_failure=on_failure
        ).callbacks()

    def __repr__(self) -> str:
        return f"<Workflow {len(self.nodes)} node(s)>"

    @overload
    def add(
        self,
        item: JobSpec[R],
        *,
        depends_on: Iterable[Node[Any] | DependencyLike] = (),
        allow_failed: bool = False,
        inputs: Inputs | str | None = None,
    ) -> Node[R]: ...

    @overload
    def add(
        self,
        item: Canvas[Any],
        *,
        depends_on: Iterable[Node[Any] | DependencyLike] = (),
        allow_failed: bool = False,
        inputs: Inputs | str | None = None,
    ) -> Node[Any]: ...

    def add(
        self,
        item: Canvas[Any],
        *,
        depends_on: Iterable[Node[Any] | DependencyLike] = (),
        allow_failed: bool = False,
        inputs: Inputs | str | None = None,
    ) -> Node[Any]:
        """Add a spec or a canvas; it waits for `depends_on` (nodes of this workflow, or
        handles or ids of existing jobs) to succeed (to end, with `allow_failed`).

        `inputs` says whether its parents' results become its first argument: ``first``
        (exactly one parent job), ``list`` (every parent's, in `depends_on` order), or None
        (they do not; ``current_job().parent_results()`` still reads them). A canvas's
        first jobs are the ones that wait.
        """
        _check_item(item, "Workflow.add")
        node: Node[Any] = Node(self, len(self.nodes), item)
        self.nodes.append(node)
        self._edges.append(_NodeEdges(inputs=_inputs(inputs)))
        self.connect(depends_on, node, allow_failed=allow_failed)
        return node

    def connect(
        self,
        parents: Iterable[Node[Any] | DependencyLike],
        child: Node[Any],
        *,
        allow_failed: bool = False,
    ) -> None:
        """Make `child` wait for more `parents` too (nodes may be added in any order, so a
        cycle is possible: planning the workflow refuses it)."""
        self._own(child)
        if isinstance(parents, str | bytes | Node) or not isinstance(parents, Iterable):
            raise ArgumentError(
                f"depends_on takes a list of nodes, job handles or ids, got {reprlib.repr(parents)}"
            )
        if not isinstance(allow_failed, bool):
            raise ArgumentError(f"allow_failed must be True or False, got {allow_failed!r}")
        edges = self._edges[child.index].parents
        for parent in parents:
            if isinstance(parent, Node):
                self._own(parent)
                edges.append((parent, allow_failed))
            else:
                edges.append((Dependency.of(parent), allow_failed))

    def _own(self, node: object) -> None:
        if not isinstance(node, Node) or node.workflow is not self:
            raise ArgumentError(f"{node!r} is not a node of this workflow")

    def edges(self, node: Node[Any]) -> _NodeEdges:
        return self._edges[node.index]

    async def enqueue(self) -> WorkflowHandle[list[Any]]:
        """Send every step in one broker call."""
        handle: WorkflowHandle[list[Any]] = await _sender(self).enqueue_workflow(self)
        return handle


class Batch:
    """A group that stays open: jobs are added until it is closed, and its callbacks run
    once, after the close, over every job added (see `batch`).

        batch = await corq.batch(on_complete=report.s()).open()
        await batch.add(resize.s(path))
        await batch.close()
    """

    __slots__ = ("on_complete", "on_failure", "on_success")

    def __init__(
        self,
        *,
        on_success: JobSpec[Any] | None = None,
        on_complete: JobSpec[Any] | None = None,
        on_failure: JobSpec[Any] | None = None,
    ) -> None:
        self.on_success = on_success
        self.on_complete = on_complete
        self.on_failure = on_failure

    def __repr__(self) -> str:
        return f"<Batch callbacks={[str(when) for when, _ in self.callbacks()]}>"

    def callbacks(self) -> list[tuple[Callback, JobSpec[Any]]]:
        return Group(
            (),
            on_success=self.on_success,
            on_complete=self.on_complete,
            on_failure=self.on_failure,
        ).callbacks()

    async def open(self, sender: SpecSender | None = None) -> BatchHandle:
        """Create it in the broker (through `sender`, an App, or the app that made its
        callbacks' specs) and return its handle, to add jobs to and close."""
        if sender is None:
            sender = next((s.sender for _, s in self.callbacks() if s.sender), None)
        if sender is None:
            raise CorqError(
                "this batch has no callback made by an app: open it with batch.open(app)"
            )
        return await sender.open_batch(self)


#: Anything a workflow is made of.
Canvas = JobSpec[R] | Chain[R] | Group[R] | Chord[R]
#: What can be sent as one workflow.
Flow = Chain[Any] | Group[Any] | Chord[Any] | Workflow


@overload
def chain(*links: *tuple[*Ts, Group[R]]) -> Chain[list[R]]: ...


@overload
def chain(*links: *tuple[*Ts, JobSpec[R] | Chain[R] | Chord[R]]) -> Chain[R]: ...


@overload
def chain(*links: Canvas[Any]) -> Chain[Any]: ...  # ``chain(*links)`` from a list


def chain(*links: object) -> Chain[Any]:
    """Run `links` one after another: ``chain(fetch.s(url), parse.s(), store.s())`` calls
    ``parse(<fetch's result>)``, then ``store(<parse's result>)``; a link after a group
    gets the list of the group's results. Its result is the last link's."""
    for link in links:
        _check_item(link, "chain")
    return Chain(links)  # type: ignore[arg-type]  # each link checked just above


@overload
def group(
    items: Iterable[Canvas[R]],
    /,
    *,
    on_success: JobSpec[Any] | None = None,
    on_complete: JobSpec[Any] | None = None,
    on_failure: JobSpec[Any] | None = None,
) -> Group[R]: ...


@overload
def group(
    *items: Canvas[R],
    on_success: JobSpec[Any] | None = None,
    on_complete: JobSpec[Any] | None = None,
    on_failure: JobSpec[Any] | None = None,
) -> Group[R]: ...


def group(
    *items: object,
    on_success: JobSpec[Any] | None = None,
    on_complete: JobSpec[Any] | None = None,
    on_failure: JobSpec[Any] | None = None,
) -> Group[Any]:
    """Run jobs side by side: ``group(resize.s(p) for p in paths)`` (or each as an
    argument). Its result is the list of their results, in order.

    `on_success`, `on_complete`, `on_failure` are batch callbacks (specs): each runs once,
    with a `BatchSummary` as its first argument, when every member succeeded / every member
    ended / the first member ended dead. Only the outermost group of a workflow may have
    them.
    """
    _check_callbacks(on_success, on_complete, on_failure)
    return Group(
        _members(items, "group"),
        on_success=on_success,
        on_complete=on_complete,
        on_failure=on_failure,
    )


@overload
def chord(header: Group[Any] | Iterable[Canvas[Any]], callback: Group[R], /) -> Chord[list[R]]: ...


@overload
def chord(
    header: Group[Any] | Iterable[Canvas[Any]], callback: JobSpec[R] | Chain[R] | Chord[R], /
) -> Chord[R]: ...


def chord(header: object, callback: object, /) -> Chord[Any]:
    """Run a group, then `callback` with the list of the group's results as its first
    argument: ``chord(group(count.s(f) for f in files), total.s())`` calls
    ``total([count_1, count_2, ...])``. Its result is the callback's."""
    head = header if isinstance(header, Group) else Group(_members((header,), "chord"))
    _check_item(callback, "chord")
    return Chord(head, callback)  # type: ignore[arg-type]  # checked just above


def batch(
    *,
    on_success: JobSpec[Any] | None = None,
    on_complete: JobSpec[Any] | None = None,
    on_failure: JobSpec[Any] | None = None,
) -> Batch:
    """An open batch to create with ``await corq.batch(...).open()``: jobs are added until
    it is closed; each callback runs once (after the close) with a `BatchSummary`."""
    _check_callbacks(on_success, on_complete, on_failure)
    return Batch(on_success=on_success, on_complete=on_complete, on_failure=on_failure)


def _check_callbacks(*specs: object) -> None:
    for name, spec in zip(("on_success", "on_complete", "on_failure"), specs, strict=True):
        if spec is not None and not isinstance(spec, JobSpec):
            raise ArgumentError(
                f"{name} must be a job spec (task.s(...)), got {reprlib.repr(spec)}"
            )


def _members(items: tuple[object, ...], what: str) -> list[Canvas[Any]]:
    """A group's members from ``group(a, b)`` or ``group(iterable)``."""
    if len(items) == 1 and not _is_item(items[0]):
        single = items[0]
        if isinstance(single, str | bytes | Mapping) or not isinstance(single, Iterable):
            raise ArgumentError(
                f"{what}() takes job specs, chains, groups or chords (or one iterable of "
                f"them), got {reprlib.repr(single)}"
            )
        items = tuple(single)
    for item in items:
        _check_item(item, what)
    return list(items)  # type: ignore[arg-type]  # each item checked just above


def _is_item(value: object) -> bool:
    return isinstance(value, JobSpec | Chain | Group | Chord)


def _check_item(value: object, what: str) -> None:
    if isinstance(value, Workflow):
        raise ArgumentError(
            f"{what}() cannot hold a Workflow: add the canvas to the Workflow instead"
        )
    if not _is_item(value):
        raise ArgumentError(
            f"{what}() takes job specs (task.s(...)), chains, groups or chords, got "
            f"{reprlib.repr(value)}"
        )


def _inputs(value: object) -> Inputs | None:
    if value is None:
        return None
    try:
        inputs = Inputs(value if isinstance(value, str) else "")
    except ValueError:
        raise ArgumentError(
            f"inputs must be 'first', 'list' or None, got {reprlib.repr(value)}"
        ) from None
    if inputs is Inputs.SUMMARY:
        raise ArgumentError("inputs='summary' is for batch callbacks (on_complete=...) only")
    return inputs


def _sender(flow: Flow) -> SpecSender:
    """The app that made one of the workflow's specs: where `enqueue()` sends it."""
    for spec in iter_specs(flow):
        if spec.sender is not None:
            return spec.sender
    raise CorqError(
        "this workflow has no spec made by an app: send it with app.enqueue_workflow(...)"
    )


def iter_specs(flow: Flow | Canvas[Any]) -> Iterable[JobSpec[Any]]:
    """Every spec of a canvas or workflow, callbacks included."""
    if isinstance(flow, JobSpec):
        yield flow
    elif isinstance(flow, Chain):
        for link in flow.links:
            yield from iter_specs(link)
    elif isinstance(flow, Group):
        for member in flow.members:
            yield from iter_specs(member)
        yield from (spec for _, spec in flow.callbacks())
    elif isinstance(flow, Chord):
        yield from iter_specs(flow.header)
        yield from iter_specs(flow.callback)
    else:
        for node in flow.nodes:
            yield from iter_specs(node.item)
        yield from (spec for _, spec in flow.callbacks)


# -- plans ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Link:
    """An edge into a step: from an earlier step of the plan (its index) or an existing job."""

    parent: int | Dependency
    allow_failed: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """One job of a plan."""

    spec: JobSpec[Any]
    #: Its parents in edge order (an ``inputs`` list follows this order).
    parents: tuple[Link, ...] = ()
    inputs: Inputs | None = None
    #: A batch callback (released by the members' counts, no parents).
    callback: Callback | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """A workflow compiled to one flat graph: what one broker call stores."""

    #: What built it (``chain``, ``group``, ``chord``, ``dag``, ``batch``...).
    kind: str
    steps: tuple[Step, ...]
    #: Steps whose results make the workflow's result, in order.
    outputs: tuple[int, ...]
    #: True: the result is the list of the outputs' results; False: the one output's.
    many: bool
    #: An open batch (jobs are added until it is closed).
    open: bool = False
    #: The steps made for each node of a `Workflow` (its jobs, for ``handle.job(node)``).
    node_steps: tuple[tuple[int, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True, slots=True)
class _Fragment:
    """A compiled canvas: its first steps (that wait for what comes before), its last
    steps (what comes after waits for), and whether its result is a list."""

    entries: tuple[int, ...]
    exits: tuple[int, ...]
    many: bool
    #: Every step it made.
    steps: range


@dataclass(slots=True)
class _Draft:
    spec: JobSpec[Any]
    parents: list[Link]
    inputs: Inputs | None = None
    callback: Callback | None = None


class _Compiler:
    """Flattens canvases into steps; refuses shapes that cannot work (ArgumentError)."""

    def __init__(self) -> None:
        self.drafts: list[_Draft] = []

    def steps(self) -> tuple[Step, ...]:
        return tuple(
            Step(spec=d.spec, parents=tuple(d.parents), inputs=d.inputs, callback=d.callback)
            for d in self.drafts
        )

    def item(self, item: Canvas[Any]) -> _Fragment:
        _check_item(item, "a workflow")  # a Group built by hand may hold anything
        if isinstance(item, JobSpec):
            return self.spec(item)
        if isinstance(item, Chain):
            return self.chain(item)
        if isinstance(item, Group):
            if item.callbacks():
                raise ArgumentError(
                    "batch callbacks (on_success, on_complete, on_failure) are allowed on the "
                    "outermost group of a workflow only, not on a group nested in it"
                )
            return self.group(item)
        return self.chord(item)

    def spec(self, spec: JobSpec[Any]) -> _Fragment:
        options = spec.options
        index = len(self.drafts)
        self.drafts.append(
            _Draft(spec, [Link(d, options.allow_failed) for d in options.depends_on])
        )
        return _Fragment((index,), (index,), False, range(index, index + 1))

    def chain(self, chain: Chain[Any]) -> _Fragment:
        if not chain.links:
            raise ArgumentError("chain() is empty: give it at least one job spec")
        start = len(self.drafts)
        fragment = self.item(chain.links[0])
        for link in chain.links[1:]:
            following = self.item(link)
            self.connect(
                fragment.exits, following.entries, Inputs.LIST if fragment.many else Inputs.FIRST
            )
            fragment = _Fragment(
                fragment.entries, following.exits, following.many, range(start, len(self.drafts))
            )
        return fragment

    def group(self, group: Group[Any]) -> _Fragment:
        if not group.members:
            raise ArgumentError("group() is empty: a group needs at least one member")
        start = len(self.drafts)
        entries: list[int] = []
        exits: list[int] = []
        for member in group.members:
            fragment = self.item(member)
            if fragment.many and not isinstance(member, Group):
                raise ArgumentError(
                    f"{member!r} ends in a group, so its result is a list, which a group "
                    "cannot hold as one member (it would be flattened): end it with a job, "
                    "e.g. a chord"
                )
            entries += fragment.entries
            exits += fragment.exits
        return _Fragment(tuple(entries), tuple(exits), True, range(start, len(self.drafts)))

    def chord(self, chord: Chord[Any]) -> _Fragment:
        start = len(self.drafts)
        header = self.item(chord.header)
        callback = self.item(chord.callback)
        self.connect(header.exits, callback.entries, Inputs.LIST)
        return _Fragment(
            header.entries, callback.exits, callback.many, range(start, len(self.drafts))
        )

    def connect(
        self,
        parents: Sequence[int],
        children: Sequence[int],
        inputs: Inputs | None,
        allow_failed: bool = False,
    ) -> None:
        """Each child waits for every parent; these edges come before the child's own
        ``depends_on`` ones, so ``first`` and ``list`` read the canvas's parents first."""
        for child in children:
            draft = self.drafts[child]
            draft.parents[:0] = [Link(p, allow_failed) for p in parents]
            draft.inputs = inputs

    def callbacks(self, callbacks: Iterable[tuple[Callback, JobSpec[Any]]]) -> None:
        for when, spec in callbacks:
            if spec.options.depends_on:
                raise ArgumentError(
                    f"the {when} callback {spec!r} cannot have depends_on: it runs when the "
                    "batch's jobs have ended"
                )
            self.drafts.append(_Draft(spec, [], Inputs.SUMMARY, when))


def plan(flow: Flow) -> Plan:
    """Compile a canvas or workflow into one flat plan (ArgumentError or WorkflowError for
    a shape that cannot work; nothing is sent)."""
    compiler = _Compiler()
    if isinstance(flow, Workflow):
        return _plan_workflow(flow, compiler)
    if isinstance(flow, Group):
        fragment = compiler.group(flow)
        compiler.callbacks(flow.callbacks())
        kind = "group"
    elif isinstance(flow, Chain | Chord):
        fragment = compiler.item(flow)
        kind = "chain" if isinstance(flow, Chain) else "chord"
    else:
        raise ArgumentError(
            f"a workflow is a chain, group, chord or Workflow, got {reprlib.repr(flow)} "
            "(send a single spec with enqueue())"
        )
    steps = compiler.steps()
    _check_no_duplicate_parents(steps)
    return Plan(kind=kind, steps=steps, outputs=fragment.exits, many=fragment.many)


def plan_batch(batch: Batch) -> Plan:
    """The plan that opens a batch: its callbacks only (members come with `plan_addition`)."""
    compiler = _Compiler()
    compiler.callbacks(batch.callbacks())
    return Plan(kind="batch", steps=compiler.steps(), outputs=(), many=True, open=True)


def plan_addition(items: Sequence[Canvas[Any]]) -> Plan:
    """The steps that adding `items` to an open batch writes (no callbacks among them)."""
    if not items:
        raise ArgumentError("batch.add() needs at least one job spec or canvas")
    compiler = _Compiler()
    exits: list[int] = []
    for item in items:
        _check_item(item, "batch.add")
        exits += compiler.item(item).exits
    steps = compiler.steps()
    _check_no_duplicate_parents(steps)
    return Plan(kind="batch", steps=steps, outputs=tuple(exits), many=True)


def _plan_workflow(workflow: Workflow, compiler: _Compiler) -> Plan:
    if not workflow.nodes:
        raise ArgumentError("this Workflow is empty: add() at least one job spec")
    fragments = [compiler.item(node.item) for node in workflow.nodes]
    depended: set[int] = set()
    for node, fragment in zip(workflow.nodes, fragments, strict=True):
        edges = workflow.edges(node)
        links: list[Link] = []
        for parent, allow_failed in edges.parents:
            if isinstance(parent, Node):
                depended.add(parent.index)
                links += [Link(p, allow_failed) for p in fragments[parent.index].exits]
            else:
                links.append(Link(parent, allow_failed))
        if edges.inputs is Inputs.FIRST and len(links) != 1:
            raise ArgumentError(
                f"{node!r} has inputs='first', which takes exactly one parent job, but it "
                f"depends on {len(links)}: use inputs='list'"
            )
        for entry in fragment.entries:
            draft = compiler.drafts[entry]
            draft.parents[:0] = links
            if edges.inputs is not None:
                draft.inputs = edges.inputs
    compiler.callbacks(workflow.callbacks)
    steps = compiler.steps()
    _check_no_duplicate_parents(steps)
    _check_acyclic(steps)
    outputs: list[int] = []
    for node, fragment in zip(workflow.nodes, fragments, strict=True):
        if node.index not in depended:
            outputs += fragment.exits
    return Plan(
        kind="dag",
        steps=steps,
        outputs=tuple(outputs),
        many=True,
        node_steps=tuple(tuple(f.steps) for f in fragments),
    )


def _check_no_duplicate_parents(steps: Sequence[Step]) -> None:
    for index, step in enumerate(steps):
        seen: set[int | Dependency] = set()
        for link in step.parents:
            if link.parent in seen:
                raise WorkflowError(
                    f"step {index} ({step.spec.task}) depends on "
                    f"{_describe_parent(steps, link.parent)} twice"
                )
            seen.add(link.parent)


def _describe_parent(steps: Sequence[Step], parent: int | Dependency) -> str:
    if isinstance(parent, Dependency):
        return f"job {parent.job_id}"
    return f"step {parent} ({steps[parent].spec.task})"


def _check_acyclic(steps: Sequence[Step]) -> None:
    """Refuse a cycle, naming its steps (Kahn's sort; what is left over holds a cycle)."""
    children: list[list[int]] = [[] for _ in steps]
    pending = [0] * len(steps)
    for index, step in enumerate(steps):
        for link in step.parents:
            if isinstance(link.parent, int):
                children[link.parent].append(index)
                pending[index] += 1
    ready = [i for i, count in enumerate(pending) if count == 0]
    while ready:
        for child in children[ready.pop()]:
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    left = {i for i, count in enumerate(pending) if count}
    if left:
        cycle = _a_cycle(steps, left)
        shown = " -> ".join(f"step {i} ({steps[i].spec.task})" for i in cycle)
        raise WorkflowError(f"this workflow has a cycle: {shown}")


def _a_cycle(steps: Sequence[Step], left: set[int]) -> list[int]:
    """One cycle among the steps `left` over by the sort (walking parents until one
    repeats: each of them has a parent among them)."""
    path: list[int] = []
    seen: dict[int, int] = {}
    current = min(left)
    while current not in seen:
        seen[current] = len(path)
        path.append(current)
        current = next(
            link.parent
            for link in steps[current].parents
            if isinstance(link.parent, int) and link.parent in left
        )
    cycle = path[seen[current] :]
    cycle.reverse()  # parents first: read as "a runs before b"
    first = cycle.index(min(cycle))  # from its lowest step, so the message is stable
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]
