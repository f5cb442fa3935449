"""The shape of a workflow's graph, for `corq workflow` to draw it as a tree.

A workflow built from chains, groups and chords (and any graph where each job has at most
one parent, a forest) is *series-parallel*: it can be written as steps one after another
(a `Series`) whose steps are jobs or branches side by side (a `Parallel`), nested. That
nesting is a tree a person reads at once, and a 1,000-step chain stays one flat list
rather than 1,000 levels of indentation. `decompose` finds it, or says there is none
(None: the graph has a crossing such as ``a → c, b → c, b → d``, which the CLI lists job
by job with its parents instead).

How: each job becomes an edge ``in → out`` between two vertices of its own, each
dependency a bare edge (a *wire*) from the parent's ``out`` to the child's ``in``, and a
source and a sink frame the roots and the leaves. Two reductions are applied until neither
applies: two edges between the same two vertices become one (side by side); a vertex
with one edge in and one edge out is removed, its two edges becoming one (one after the
other). The graph is series-parallel exactly when one edge, source to sink, is left; what
it holds is the nesting. Each reduction is found from a work list, so 10,000 jobs take
milliseconds, and lists are merged smaller into larger, so a long chain is not copied
again at each step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

_SOURCE = 0
_SINK = 1


@dataclass(slots=True)
class Job:
    """One job: its index in the list given to `decompose`."""

    index: int

    @property
    def low(self) -> int:
        return self.index


@dataclass(slots=True)
class Series:
    """Steps one after another: each waits for the one before."""

    items: deque[Shape]
    #: The lowest job index inside (branches side by side are shown in job order).
    low: int


@dataclass(slots=True)
class Parallel:
    """Branches side by side, each waiting for what comes before the whole."""

    items: list[Shape]
    low: int

    def ordered(self) -> list[Shape]:
        """Its branches in the order their first jobs were added."""
        return sorted(self.items, key=lambda item: item.low)


Shape = Job | Series | Parallel


def decompose(parents: Sequence[Sequence[int]]) -> Shape | None:
    """The nesting of a graph given as each job's parents (indices into the same list;
    parents outside the graph left out), or None when it is not series-parallel.

    A cycle gives None (a broker never stores one); a parent listed twice counts once."""
    if not parents:
        return None
    graph = _Graph(2 + 2 * len(parents))
    has_child = [False] * len(parents)
    for child, its_parents in enumerate(parents):
        graph.add(_in(child), _out(child), Job(child))
        for parent in its_parents:
            if not 0 <= parent < len(parents) or parent == child:
                return None
            has_child[parent] = True
            graph.add(_out(parent), _in(child), None)
        if not its_parents:
            graph.add(_SOURCE, _in(child), None)
    for job, child in enumerate(has_child):
        if not child:
            graph.add(_out(job), _SINK, None)
    return graph.reduce()


def _in(job: int) -> int:
    return 2 + 2 * job


def _out(job: int) -> int:
    return 3 + 2 * job


class _Graph:
    """A multigraph under series and parallel reduction (edges as parallel lists: this
    runs once per edge, 50,000 times for a chord of 10,000)."""

    def __init__(self, vertices: int) -> None:
        self.tails: list[int] = []
        self.heads: list[int] = []
        #: What each edge stands for; None for a bare dependency (a wire).
        self.items: list[Shape | None] = []
        self.outs: list[set[int]] = [set() for _ in range(vertices)]
        self.ins: list[set[int]] = [set() for _ in range(vertices)]
        #: Live edges by (tail, head): two or more are reduced side by side.
        self.between: dict[tuple[int, int], set[int]] = {}
        self.pairs: deque[tuple[int, int]] = deque()
        self.candidates: deque[int] = deque(range(2, vertices))

    def add(self, tail: int, head: int, item: Shape | None) -> None:
        number = len(self.items)
        self.tails.append(tail)
        self.heads.append(head)
        self.items.append(item)
        self.outs[tail].add(number)
        self.ins[head].add(number)
        pair = (tail, head)
        same = self.between.get(pair)
        if same is None:
            self.between[pair] = {number}
        else:
            same.add(number)
            if len(same) == 2:
                self.pairs.append(pair)
        self.candidates.append(tail)
        self.candidates.append(head)

    def remove(self, number: int) -> Shape | None:
        """Take an edge out; what it stood for."""
        tail, head = self.tails[number], self.heads[number]
        self.outs[tail].discard(number)
        self.ins[head].discard(number)
        same = self.between[(tail, head)]
        same.discard(number)
        if not same:
            del self.between[(tail, head)]
        return self.items[number]

    def reduce(self) -> Shape | None:
        while self.pairs or self.candidates:
            while self.pairs:
                self._side_by_side(self.pairs.popleft())
            while self.candidates:
                self._one_after_other(self.candidates.popleft())
        if len(self.between) != 1 or (_SOURCE, _SINK) not in self.between:
            return None
        (last,) = self.between[(_SOURCE, _SINK)]
        return self.items[last]

    def _side_by_side(self, pair: tuple[int, int]) -> None:
        same = self.between.get(pair)
        if same is None or len(same) < 2:
            return
        items = [self.remove(number) for number in sorted(same)]
        self.add(pair[0], pair[1], parallel(items))

    def _one_after_other(self, vertex: int) -> None:
        if vertex <= _SINK:
            return
        ins, outs = self.ins[vertex], self.outs[vertex]
        if len(ins) != 1 or len(outs) != 1:
            return
        (into,), (out,) = ins, outs
        if into == out:  # a loop left by a cycle: nothing to reduce
            return
        tail, head = self.tails[into], self.heads[out]
        first, then = self.remove(into), self.remove(out)
        self.add(tail, head, series(first, then))


def series(first: Shape | None, then: Shape | None) -> Shape | None:
    """`first`, then `then` (a wire on either side adds nothing)."""
    if first is None:
        return then
    if then is None:
        return first
    low = min(first.low, then.low)
    if isinstance(first, Series) and isinstance(then, Series):
        if len(first.items) >= len(then.items):
            first.items.extend(then.items)
            first.low = low
            return first
        then.items.extendleft(reversed(first.items))
        then.low = low
        return then
    if isinstance(first, Series):
        first.items.append(then)
        first.low = low
        return first
    if isinstance(then, Series):
        then.items.appendleft(first)
        then.low = low
        return then
    return Series(deque((first, then)), low)


def parallel(items: Sequence[Shape | None]) -> Shape | None:
    """Branches side by side. A wire beside real branches is dropped: it says the head
    waits for the tail, which the other branches already make it do."""
    real = [item for item in items if item is not None]
    if not real:
        return None
    if len(real) == 1:
        return real[0]
    groups = sorted((i for i in real if isinstance(i, Parallel)), key=lambda p: -len(p.items))
    merged = groups[0] if groups else Parallel([], min(i.low for i in real))
    for item in real:
        if item is merged:
            continue
        if isinstance(item, Parallel):
            merged.items.extend(item.items)
        else:
            merged.items.append(item)
        merged.low = min(merged.low, item.low)
    return merged


def jobs_in(shape: Shape) -> Iterator[int]:
    """Every job index inside `shape` (without recursion: shapes may nest deeply)."""
    stack: list[Shape] = [shape]
    while stack:
        item = stack.pop()
        if isinstance(item, Job):
            yield item.index
        else:
            stack.extend(item.items)


def depth(shape: Shape) -> int:
    """How many chains and groups nest at the deepest point (a job alone: 0)."""
    deepest = 0
    stack: list[tuple[Shape, int]] = [(shape, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Job):
            deepest = max(deepest, level)
        else:
            stack.extend((child, level + 1) for child in item.items)
    return deepest
