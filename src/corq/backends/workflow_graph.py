"""The checks every broker makes on a workflow before it writes anything.

``enqueue_workflow`` and ``add_to_workflow`` refuse a bad graph whole (see
:class:`~corq.backends.base.Workflows`): no jobs, a job of another workflow, a job listed
twice, a parent listed twice for one job, an edge naming a job of the graph under another
queue, a cycle, a callback with parents, outputs outside the graph, too many jobs. Those
need no broker, so they are made here, once, by pure code both brokers call; what only the
store knows (an external parent exists, a job id is free) each broker checks itself, from
the :class:`CheckedGraph` this returns. Each message names the workflow and the offending
job id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from corq.backends.base import WORKFLOW_MAX_JOBS, NewWorkflow, WorkflowJob
from corq.errors import WorkflowError
from corq.types import JobId, QueueName


@dataclass(frozen=True, slots=True)
class CheckedGraph:
    """What the broker still has to look at once the graph itself is sound."""

    #: Parents that are not jobs of this call, each once, in the order first met:
    #: (parent id, queue). For a new workflow they are external (they must exist); for an
    #: addition they may be earlier jobs of the batch (the broker tells which).
    outside: tuple[tuple[JobId, QueueName], ...]
    #: Children of each job of the call that has any, in the order the edges are listed.
    children: Mapping[JobId, tuple[JobId, ...]]


def check_workflow(workflow: NewWorkflow) -> CheckedGraph:
    """Check a whole new workflow (see the module docstring); raises WorkflowError."""
    graph = check_jobs(workflow.id, workflow.jobs, existing=0)
    ids = {wf_job.job.id for wf_job in workflow.jobs}
    for output in workflow.outputs:
        if output not in ids:
            raise WorkflowError(
                f"workflow {workflow.id}: output {output!r} is not a job of the workflow"
            )
    return graph


def check_jobs(workflow_id: str, jobs: Sequence[WorkflowJob], *, existing: int) -> CheckedGraph:
    """Check `jobs` joining workflow `workflow_id`, which holds `existing` jobs already;
    raises WorkflowError. Parents outside `jobs` are returned, not judged."""
    if not jobs:
        raise WorkflowError(f"workflow {workflow_id}: no jobs")
    if existing + len(jobs) > WORKFLOW_MAX_JOBS:
        raise WorkflowError(
            f"workflow {workflow_id}: {existing + len(jobs)} jobs; "
            f"at most {WORKFLOW_MAX_JOBS} are allowed"
        )
    queues = _queues(workflow_id, jobs)
    _check_callbacks_are_leaves(workflow_id, jobs)
    outside: dict[JobId, QueueName] = {}
    children: dict[JobId, list[JobId]] = {}
    for wf_job in jobs:
        child = wf_job.job.id
        if wf_job.callback is not None and wf_job.parents:
            raise WorkflowError(
                f"workflow {workflow_id}: job {child!r} is a {wf_job.callback.value} "
                "callback and cannot have parents"
            )
        seen: set[JobId] = set()
        for edge in wf_job.parents:
            if edge.parent in seen:
                raise WorkflowError(
                    f"workflow {workflow_id}: job {child!r} lists parent {edge.parent!r} twice"
                )
            seen.add(edge.parent)
            queue = queues.get(edge.parent)
            if queue is None:
                outside.setdefault(edge.parent, edge.queue)
            elif queue != edge.queue:
                raise WorkflowError(
                    f"workflow {workflow_id}: job {child!r} names parent {edge.parent!r} "
                    f"in queue {edge.queue!r}, but it is in queue {queue!r}"
                )
            else:
                children.setdefault(edge.parent, []).append(child)
    _check_acyclic(workflow_id, jobs, children)
    return CheckedGraph(
        outside=tuple(outside.items()),
        children={parent: tuple(kids) for parent, kids in children.items()},
    )


def _check_callbacks_are_leaves(workflow_id: str, jobs: Sequence[WorkflowJob]) -> None:
    """A batch callback waits for every member, and a job depending on a callback would
    be a member the callback waits for: both would wait for ever, so it is refused."""
    callbacks = {j.job.id: j.callback for j in jobs if j.callback is not None}
    if not callbacks:
        return
    for wf_job in jobs:
        for edge in wf_job.parents:
            event = callbacks.get(edge.parent)
            if event is not None:
                raise WorkflowError(
                    f"workflow {workflow_id}: job {wf_job.job.id!r} depends on "
                    f"{edge.parent!r}, a {event.value} callback of the same batch (the callback "
                    "waits for every member, so the two would wait for each other for ever)"
                )


def _queues(workflow_id: str, jobs: Sequence[WorkflowJob]) -> dict[JobId, QueueName]:
    """Each job's queue; refuses a job of another workflow and a job listed twice."""
    queues: dict[JobId, QueueName] = {}
    for wf_job in jobs:
        job = wf_job.job
        if job.workflow != workflow_id:
            raise WorkflowError(
                f"workflow {workflow_id}: job {job.id!r} names workflow {job.workflow!r}"
            )
        if job.id in queues:
            raise WorkflowError(f"workflow {workflow_id}: job {job.id!r} is listed twice")
        queues[job.id] = job.queue
    return queues


def _check_acyclic(
    workflow_id: str, jobs: Sequence[WorkflowJob], children: Mapping[JobId, list[JobId]]
) -> None:
    """Kahn's topological sort over the edges inside `jobs`: what it cannot order lies on
    a cycle or below one; the message names a job on the cycle itself."""
    indegree = {wf_job.job.id: 0 for wf_job in jobs}
    for kids in children.values():
        for kid in kids:
            indegree[kid] += 1
    ready = [job_id for job_id, n in indegree.items() if n == 0]
    ordered = 0
    while ready:
        job_id = ready.pop()
        ordered += 1
        for kid in children.get(job_id, ()):
            indegree[kid] -= 1
            if indegree[kid] == 0:
                ready.append(kid)
    if ordered < len(indegree):
        stuck = {job_id for job_id, n in indegree.items() if n > 0}
        raise WorkflowError(
            f"workflow {workflow_id}: a cycle through job {_on_cycle(stuck, jobs)!r}"
        )


def _on_cycle(stuck: set[JobId], jobs: Sequence[WorkflowJob]) -> JobId:
    """A job on a cycle among the `stuck` ones (each has a stuck parent): walk up parents
    until a job comes round again."""
    parents = {
        wf_job.job.id: [e.parent for e in wf_job.parents if e.parent in stuck] for wf_job in jobs
    }
    job_id = next(wf_job.job.id for wf_job in jobs if wf_job.job.id in stuck)
    visited: set[JobId] = set()
    while job_id not in visited:
        visited.add(job_id)
        job_id = parents[job_id][0]
    return job_id
