"""How `corq workflow` finds the tree in a workflow's graph (no broker needed)."""

from __future__ import annotations

from typing import Any

import pytest

from corq.cli.workflow_shape import Job, Parallel, Series, Shape, decompose, jobs_in


def form(shape: Shape | None) -> Any:
    """A shape as plain values: a job's index, ("chain", [...]) or ("group", [...])."""
    if shape is None or isinstance(shape, Job):
        return None if shape is None else shape.index
    if isinstance(shape, Series):
        return ("chain", [form(item) for item in shape.items])
    return ("group", [form(item) for item in shape.ordered()])


def test_a_chain_is_one_flat_list_of_steps() -> None:
    parents: list[list[int]] = [[]] + [[i] for i in range(999)]
    assert form(decompose(parents)) == ("chain", list(range(1000)))


def test_a_chord_is_its_group_then_its_callback() -> None:
    assert form(decompose([[], [], [], [0, 1, 2]])) == ("chain", [("group", [0, 1, 2]), 3])


def test_a_diamond_is_a_job_a_group_and_a_job() -> None:
    assert form(decompose([[], [0], [0], [1, 2]])) == ("chain", [0, ("group", [1, 2]), 3])


def test_nested_canvases_come_back_as_they_were_built() -> None:
    # chain(chord(group(chain(0, 1), 2), 3), group(4, 5), 6)
    parents = [[], [0], [], [1, 2], [3], [3], [4, 5]]
    assert form(decompose(parents)) == (
        "chain",
        [("group", [("chain", [0, 1]), 2]), 3, ("group", [4, 5]), 6],
    )


def test_a_forest_is_a_tree_whatever_order_its_jobs_came_in() -> None:
    # 0 → (1 → 3, 2); 4 alone; 5 → 6 (children listed before a parent: 6 is job 5's child)
    parents = [[], [0], [0], [1], [], [6], []]
    assert form(decompose(parents)) == (
        "group",
        [("chain", [0, ("group", [("chain", [1, 3]), 2])]), 4, ("chain", [6, 5])],
    )


def test_an_edge_that_another_path_implies_adds_nothing() -> None:
    # 2 waits for 0 directly and through 1
    assert form(decompose([[], [0], [0, 1]])) == ("chain", [0, 1, 2])


def test_a_graph_with_a_crossing_has_no_tree() -> None:
    # 0 → 2, 1 → 2, 1 → 3: the "N", the smallest graph that is not series-parallel
    assert decompose([[], [], [0, 1], [1]]) is None


@pytest.mark.parametrize(
    "parents",
    [[], [[0]], [[1], [0]], [[], [1], [1]], [[], [5]]],
    ids=["empty", "self", "cycle", "cycle-below-a-root", "unknown"],
)
def test_graphs_no_broker_stores_have_no_tree(parents: list[list[int]]) -> None:
    assert decompose(parents) is None


def test_a_parent_listed_twice_counts_once() -> None:
    assert form(decompose([[], [0, 0]])) == ("chain", [0, 1])


def test_a_fan_in_of_10000_decomposes_into_a_group_then_its_callback() -> None:
    # How fast is measured by bench/, not here (a timed assert fails on a busy machine).
    n = 10_000
    parents: list[list[int]] = [[] for _ in range(n)] + [list(range(n))]
    assert form(decompose(parents)) == ("chain", [("group", list(range(n))), n])


def test_a_deep_tree_is_walked_without_recursion() -> None:
    # A caterpillar 5,000 levels deep: job 2k+1 hangs off 2k, which hangs off 2k-2.
    parents: list[list[int]] = [[]]
    for level in range(1, 5000):
        parents.append([2 * (level - 1)])  # the spine
        parents.append([2 * (level - 1)])  # a leaf beside it
    shape = decompose(parents)
    assert shape is not None
    assert sorted(jobs_in(shape)) == list(range(len(parents)))
    assert isinstance(shape, Series)
    assert isinstance(shape.items[1], Parallel)
