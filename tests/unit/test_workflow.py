"""Canvases compiled to plans: which step waits for which, what each is given, what the
workflow's result is made of, and the shapes refused before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

import corq
from corq.spec import Dependency
from corq.workflow import Inputs
from corq.workflow_plan import Link, Plan, Step, plan, plan_addition, plan_batch


def s(task: str, *args: Any) -> corq.JobSpec[Any]:
    return corq.JobSpec(task=task, args=args)


def tasks(planned: Plan) -> list[str]:
    return [step.spec.task for step in planned.steps]


def parents(step: Step) -> list[int | Dependency]:
    return [link.parent for link in step.parents]


def test_a_chain_feeds_each_result_to_the_next_link() -> None:
    planned = plan(corq.chain(s("fetch", "u"), s("parse"), s("store")))
    assert tasks(planned) == ["fetch", "parse", "store"]
    assert [parents(step) for step in planned.steps] == [[], [0], [1]]
    assert [step.inputs for step in planned.steps] == [None, Inputs.FIRST, Inputs.FIRST]
    # Its result is its last link's, alone.
    assert (planned.kind, planned.outputs, planned.many) == ("chain", (2,), False)


def test_the_link_after_a_group_gets_the_list_of_its_results_in_member_order() -> None:
    planned = plan(corq.chain(corq.group(s("a"), s("b"), s("c")), s("total")))
    total = planned.steps[3]
    assert parents(total) == [0, 1, 2]
    assert total.inputs is Inputs.LIST
    assert planned.outputs == (3,)


def test_a_group_after_a_job_gives_each_member_the_result() -> None:
    planned = plan(corq.chain(s("split"), corq.group(s("left"), s("right"))))
    assert [parents(step) for step in planned.steps] == [[], [0], [0]]
    assert [step.inputs for step in planned.steps[1:]] == [Inputs.FIRST, Inputs.FIRST]
    # A chain ending in a group results in the group's list.
    assert (planned.outputs, planned.many) == ((1, 2), True)


def test_a_group_of_chains_results_in_each_chains_last_link() -> None:
    planned = plan(corq.group(corq.chain(s("a1"), s("a2")), corq.chain(s("b1"), s("b2"))))
    assert tasks(planned) == ["a1", "a2", "b1", "b2"]
    assert [parents(step) for step in planned.steps] == [[], [0], [], [2]]
    assert (planned.kind, planned.outputs, planned.many) == ("group", (1, 3), True)


def test_a_group_takes_one_iterable_too() -> None:
    planned = plan(corq.group(s("resize", path) for path in ["a", "b"]))
    assert [step.spec.args for step in planned.steps] == [("a",), ("b",)]


def test_a_group_in_a_group_adds_its_results_in_place() -> None:
    planned = plan(corq.group(corq.group(s("a"), s("b")), s("c")))
    assert planned.outputs == (0, 1, 2)


def test_a_chain_ending_in_a_group_cannot_be_a_group_member() -> None:
    ends_in_group = corq.chain(s("a"), corq.group(s("b"), s("c")))
    with pytest.raises(corq.ArgumentError, match="its result is a list"):
        plan(corq.group(ends_in_group, s("d")))


def test_a_chord_calls_back_with_the_headers_results_in_order() -> None:
    header = corq.group(corq.chain(s("fetch", 1), s("count")), s("count", 2))
    planned = plan(corq.chord(header, s("total")))
    assert tasks(planned) == ["fetch", "count", "count", "total"]
    total = planned.steps[3]
    assert parents(total) == [1, 2]
    assert total.inputs is Inputs.LIST
    assert (planned.kind, planned.outputs, planned.many) == ("chord", (3,), False)


def test_a_chord_header_may_be_a_plain_iterable() -> None:
    planned = plan(corq.chord([s("count", f) for f in "xyz"], s("total")))
    assert parents(planned.steps[3]) == [0, 1, 2]


def test_nesting_composes_a_chain_of_chords() -> None:
    first = corq.chord(corq.group(s("a"), s("b")), s("merge"))
    planned = plan(corq.chain(first, corq.group(s("x"), s("y")), s("final")))
    by_task = dict(zip(tasks(planned), planned.steps, strict=True))
    assert parents(by_task["x"]) == [2] == parents(by_task["y"])  # merge's result, each
    assert by_task["x"].inputs is Inputs.FIRST
    assert parents(by_task["final"]) == [3, 4]
    assert by_task["final"].inputs is Inputs.LIST


def test_batch_callbacks_of_the_outermost_group_wait_for_no_parent_and_get_a_summary() -> None:
    planned = plan(
        corq.group(s("a"), s("b"), on_success=s("ok"), on_complete=s("done"), on_failure=s("ko"))
    )
    callbacks = planned.steps[2:]
    assert [(step.spec.task, step.callback) for step in callbacks] == [
        ("ok", corq.Callback.SUCCESS),
        ("done", corq.Callback.COMPLETE),
        ("ko", corq.Callback.FAILURE),
    ]
    assert all(step.parents == () and step.inputs is Inputs.SUMMARY for step in callbacks)
    assert planned.outputs == (0, 1)  # the callbacks are not the group's result


@pytest.mark.parametrize(
    "flow",
    [
        corq.chain(s("a"), corq.group(s("b"), on_complete=s("cb"))),
        corq.group(corq.group(s("b"), on_success=s("cb"))),
        corq.chord(corq.group(s("b"), on_failure=s("cb")), s("total")),
    ],
    ids=["in a chain", "in a group", "a chord header"],
)
def test_callbacks_on_a_nested_group_are_refused(flow: corq.Chain[Any]) -> None:
    with pytest.raises(corq.ArgumentError, match="outermost group of a workflow only"):
        plan(flow)


def test_a_callback_with_dependencies_is_refused() -> None:
    callback = s("cb").with_options(depends_on=["x"])
    with pytest.raises(corq.ArgumentError, match="cannot have depends_on"):
        plan(corq.group(s("a"), on_complete=callback))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: plan(corq.group()), "group\\(\\) is empty"),
        (lambda: plan(corq.chain()), "chain\\(\\) is empty"),
        (lambda: plan(corq.chord([], s("t"))), "group\\(\\) is empty"),
        (lambda: corq.group("ab"), "takes job specs"),  # type: ignore[arg-type]
        (lambda: corq.chain(s("a"), "b"), "takes job specs"),  # type: ignore[call-overload]
        (lambda: corq.group(s("a"), on_success="cb"), "on_success must be a job spec"),  # type: ignore[call-overload]
        (lambda: plan(s("a")), "send a single spec with enqueue"),  # type: ignore[arg-type]
        (lambda: corq.chain(corq.Workflow()), "cannot hold a Workflow"),  # type: ignore[call-arg, arg-type]
    ],
    ids=[
        "empty group",
        "empty chain",
        "empty chord",
        "a str",
        "an item",
        "a callback",
        "one spec",
        "a Workflow inside",
    ],
)
def test_shapes_that_cannot_work_are_refused(build: Any, message: str) -> None:
    with pytest.raises(corq.ArgumentError, match=message):
        build()


def test_a_specs_own_dependencies_come_after_the_canvas_edges() -> None:
    outside = Dependency("job-x", "other")
    planned = plan(corq.chain(s("a"), s("b").with_options(depends_on=[outside, "job-y"])))
    assert parents(planned.steps[1]) == [0, outside, Dependency("job-y")]
    assert planned.steps[1].inputs is Inputs.FIRST  # the chain's parent is the first one


def test_a_workflow_builds_any_graph_and_results_in_its_sinks() -> None:
    # Given a diamond: a → (b, c) → d, and e alone,
    wf = corq.Workflow()
    a = wf.add(s("a"))
    b = wf.add(s("b"), depends_on=[a], inputs="first")
    c = wf.add(s("c"), depends_on=[a], allow_failed=True)
    d = wf.add(s("d"), depends_on=[b, c], inputs="list")
    wf.add(s("e"))
    planned = plan(wf)
    # Then each step waits for what it was given, in the order given,
    assert [parents(step) for step in planned.steps] == [[], [0], [0], [1, 2], []]
    assert planned.steps[2].parents == (Link(0, allow_failed=True),)
    assert [step.inputs for step in planned.steps] == [None, Inputs.FIRST, None, Inputs.LIST, None]
    # and its result is the list of its sinks' results, in the order they were added.
    assert (planned.kind, planned.outputs, planned.many) == ("dag", (3, 4), True)
    assert planned.node_steps[d.index] == (3,)


def test_a_workflow_node_may_be_a_canvas() -> None:
    wf = corq.Workflow()
    start = wf.add(s("start"))
    fan = wf.add(corq.group(s("x"), s("y")), depends_on=[start], inputs="first")
    wf.add(s("end"), depends_on=[fan], inputs="list")
    planned = plan(wf)
    assert [parents(step) for step in planned.steps] == [[], [0], [0], [1, 2]]
    assert planned.node_steps[fan.index] == (1, 2)


def test_a_workflow_cycle_is_refused_naming_it() -> None:
    wf = corq.Workflow()
    a = wf.add(s("a"))
    b = wf.add(s("b"), depends_on=[a])
    c = wf.add(s("c"), depends_on=[b])
    wf.connect([c], a)
    with pytest.raises(
        corq.WorkflowError,
        match=r"cycle: step 0 \(a\) -> step 1 \(b\) -> "
        r"step 2 \(c\) -> step 0 \(a\)",
    ):
        plan(wf)


def test_a_job_depending_on_itself_is_a_cycle() -> None:
    wf = corq.Workflow()
    a = wf.add(s("a"))
    wf.connect([a], a)
    with pytest.raises(corq.WorkflowError, match="cycle"):
        plan(wf)


def test_a_parent_named_twice_is_refused() -> None:
    wf = corq.Workflow()
    a = wf.add(s("a"))
    wf.add(s("b"), depends_on=[a, a])
    with pytest.raises(corq.WorkflowError, match=r"step 1 \(b\) depends on step 0 \(a\) twice"):
        plan(wf)


def test_inputs_first_takes_exactly_one_parent() -> None:
    wf = corq.Workflow()
    a, b = wf.add(s("a")), wf.add(s("b"))
    wf.add(s("c"), depends_on=[a, b], inputs="first")
    with pytest.raises(corq.ArgumentError, match="takes exactly one parent job"):
        plan(wf)


def test_workflow_arguments_are_checked_when_given() -> None:
    wf = corq.Workflow()
    other = corq.Workflow().add(s("x"))
    with pytest.raises(corq.ArgumentError, match="is not a node of this workflow"):
        wf.add(s("a"), depends_on=[other])
    with pytest.raises(corq.ArgumentError, match="inputs must be 'first', 'list' or None"):
        wf.add(s("a"), inputs="all")
    with pytest.raises(corq.ArgumentError, match="for batch callbacks"):
        wf.add(s("a"), inputs="summary")
    with pytest.raises(corq.ArgumentError, match="depends_on takes a list"):
        wf.add(s("a"), depends_on="job-1")  # a str is iterable: refused at run time
    with pytest.raises(corq.ArgumentError, match="this Workflow is empty"):
        plan(corq.Workflow())


def test_an_open_batch_starts_with_its_callbacks_and_additions_bring_the_jobs() -> None:
    opened = plan_batch(corq.batch(on_complete=s("report")))
    assert (opened.kind, opened.open, tasks(opened)) == ("batch", True, ["report"])
    assert opened.steps[0].inputs is Inputs.SUMMARY
    added = plan_addition([s("a"), corq.chain(s("b"), s("c"))])
    assert [parents(step) for step in added.steps] == [[], [], [1]]
    assert all(step.callback is None for step in added.steps)
    with pytest.raises(corq.ArgumentError, match="at least one"):
        plan_addition([])


@pytest.mark.parametrize(
    ("finished", "counts", "state"),
    [
        (False, {"dead": 1}, corq.WorkflowState.RUNNING),
        (True, {"succeeded": 3}, corq.WorkflowState.SUCCEEDED),
        (True, {"succeeded": 1, "dead": 1, "upstream_failed": 2}, corq.WorkflowState.FAILED),
        (True, {"cancelled": 2, "upstream_failed": 1}, corq.WorkflowState.CANCELLED),
        (True, {"cancelled": 1, "dead": 1}, corq.WorkflowState.FAILED),
        (True, {"succeeded": 1, "upstream_failed": 1}, corq.WorkflowState.FAILED),
    ],
)
def test_a_workflows_state_follows_its_ends(
    finished: bool, counts: dict[str, int], state: corq.WorkflowState
) -> None:
    from corq.workflow import workflow_state

    assert workflow_state(finished=finished, counts=counts) is state


def test_a_failed_parent_is_a_value_that_says_how_it_ended() -> None:
    dead = corq.ParentOutcome(
        job_id="p1", queue="q", status=corq.JobStatus.DEAD, error="ValueError: boom"
    )
    error = dead.value()
    assert isinstance(error, corq.UpstreamError)
    assert (error.job_id, error.queue, error.status, error.error) == (
        "p1",
        "q",
        corq.JobStatus.DEAD,
        "ValueError: boom",
    )
    assert str(error) == "parent job p1 (q) ended dead: ValueError: boom"
    gone = corq.ParentOutcome(job_id="p2", queue="q", status=None).value()
    assert "has no record any more" in str(gone)
    ok = corq.ParentOutcome(job_id="p3", queue="q", status=corq.JobStatus.SUCCEEDED, result=[1])
    assert ok.value() == [1]


def test_a_workflow_may_carry_batch_callbacks_over_all_its_jobs() -> None:
    wf = corq.Workflow(on_failure=s("alert"))
    a = wf.add(s("a"))
    wf.add(s("b"), depends_on=[a])
    planned = plan(wf)
    assert [(step.spec.task, step.callback) for step in planned.steps] == [
        ("a", None),
        ("b", None),
        ("alert", corq.Callback.FAILURE),
    ]
    assert planned.outputs == (1,)
