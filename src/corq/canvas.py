"""Workflows as values: chain, group, chord, batches and any graph of job specs.

Nothing here sends anything: a canvas is a description built from `JobSpec`s, which
`corq.workflow_plan` compiles into one flat graph of steps that the client sends in a
single broker call, so a workflow is stored whole or not at all.

How results flow (the ``inputs`` of a step, see `corq.workflow.Inputs`):

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
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple, overload

from corq.errors import ArgumentError, CorqError
from corq.spec import Dependency, DependencyLike, JobSpec, SpecSender
from corq.workflow import Callback, Inputs

if TYPE_CHECKING:  # for annotations only: handles belong to the runtime layer
    from corq.workflows import BatchHandle, WorkflowHandle

R = TypeVar("R")
#: A canvas's type parameter: covariant like a spec's (a group of several tasks' specs is
#: a ``Group[object]``).
R_co = TypeVar("R_co", covariant=True)
Ts = TypeVarTuple("Ts")


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
class NodeEdges:
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
        self._edges: list[NodeEdges] = []
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
        check_item(item, "Workflow.add")
        node: Node[Any] = Node(self, len(self.nodes), item)
        self.nodes.append(node)
        self._edges.append(NodeEdges(inputs=_inputs(inputs)))
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

    def edges(self, node: Node[Any]) -> NodeEdges:
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
        check_item(link, "chain")
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
    check_item(callback, "chord")
    return Chord(head, callback)  # type: ignore[arg-type]  # checked just above


def batch(
    *,
    on_success: JobSpec[Any] | None = None,
    on_complete: JobSpec[Any] | None = None,
    on_failure: JobSpec[Any] | None = None,
) -> Batch:
    """An open batch to create with ``await corq.batch(...).open()``: jobs are added until
    it is closed; each callback runs once (after the close) with a `BatchSummary`.

    At least one callback is needed: it is what a batch is for (without one, a group does
    the same), and the broker stores no workflow without a job.
    """
    _check_callbacks(on_success, on_complete, on_failure)
    if on_success is None and on_complete is None and on_failure is None:
        raise ArgumentError(
            "batch() needs a callback (on_success, on_complete or on_failure); without "
            "one, send a group"
        )
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
        check_item(item, what)
    return list(items)  # type: ignore[arg-type]  # each item checked just above


def _is_item(value: object) -> bool:
    return isinstance(value, JobSpec | Chain | Group | Chord)


def check_item(value: object, what: str) -> None:
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
