"""Canvases compiled to one flat graph: the steps one ``enqueue_workflow`` stores.

Each step is a job spec with its parents in edge order (earlier steps by index, or
existing jobs), what its parents give it (``inputs``), and whether it is a batch
callback. Edges a canvas adds come before a spec's own ``depends_on``, so ``first`` reads
the canvas's parent. Shapes that cannot work are refused here, before anything is sent:
empty groups and chains, callbacks on a nested group, a member whose result is a list, a
parent named twice, a cycle (named, step by step).
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from corq.canvas import Batch, Canvas, Chain, Chord, Flow, Group, Node, Workflow, check_item
from corq.errors import ArgumentError, WorkflowError
from corq.spec import Dependency, JobSpec
from corq.workflow import Callback, Inputs


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
        check_item(item, "a workflow")  # a Group built by hand may hold anything
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
        check_item(item, "batch.add")
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
