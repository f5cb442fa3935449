"""How `corq workflow ID` prints a workflow: a tree for people, JSON for scripts.

The header line names the workflow, its kind and state, and counts its jobs by state.
Below it, a workflow of chains, groups and chords (or any forest) is drawn as the tree of
its steps (see `corq.cli.workflow_shape`); any other graph is listed job by job, each
with the jobs it waits for. Each job shows its task, id, queue and state (in colour and as
a word), and a job that did not succeed its error (an upstream_failed job's names the
parent that failed it). Batch callbacks come last, each with when it runs.

Tasks, errors and ids come from the broker, where any writer may have put anything: they
are printed as plain text (no console markup), control characters escaped. Lines are
built as plain pieces and written a few hundred at a time: a workflow of 10,000 jobs is
drawn in well under a second (reading it takes longer).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style
from rich.text import Text

from corq import JobStatus, WorkflowJobInfo, WorkflowState, WorkflowStatus
from corq.cli.text import STATE_COLOURS, clean, plain, state_text
from corq.cli.workflow_shape import Job, Parallel, Series, Shape, decompose, depth

#: States in the order the header counts them (how far along, then how it ended).
STATE_ORDER = (
    JobStatus.WAITING,
    JobStatus.SCHEDULED,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.FAILED,
    JobStatus.SUCCEEDED,
    JobStatus.DEAD,
    JobStatus.CANCELLED,
    JobStatus.UPSTREAM_FAILED,
)
#: The workflow's own state colours.
_WORKFLOW_COLOURS = {
    WorkflowState.RUNNING: "cyan",
    WorkflowState.SUCCEEDED: "green",
    WorkflowState.FAILED: "red",
    WorkflowState.CANCELLED: "magenta",
}
#: Longest error shown under a job (the whole text is in `corq job ID`).
ERROR_CHARS = 160
#: Parents named on a line of the DAG listing; the rest are counted.
PARENTS_SHOWN = 8
#: Deepest nesting of chains and groups drawn as a tree (deeper: the listing, whose lines
#: do not grow with the depth).
MAX_DEPTH = 24
#: Lines written at once (fewer writes: faster; bounded: memory stays small).
_CHUNK = 500
#: What a record that has gone is counted as.
GONE = "record expired"

_BRANCH, _LAST, _PIPE, _SPACE = "├── ", "└── ", "│   ", "    "


# -- counts --------------------------------------------------------------------------
def state_counts(jobs: Sequence[WorkflowJobInfo]) -> dict[str, int]:
    """Jobs by their record's state now, in STATE_ORDER (only states seen)."""
    seen = Counter(GONE if job.state is None else str(job.state) for job in jobs)
    order = [str(s) for s in STATE_ORDER] + [GONE]
    return {state: seen[state] for state in order if seen[state]}


def header(status: WorkflowStatus) -> Text:
    """``workflow wf_… · chord · running · 12 jobs: 7 succeeded, 2 running, 3 waiting``."""
    text = Text("workflow ", style="bold")
    text.append_text(plain(status.id, one_line=True, style="bold"))
    text.append(" · ")
    text.append_text(plain(status.kind, one_line=True))
    text.append(" · ")
    text.append(str(status.state), style=_WORKFLOW_COLOURS.get(status.state, ""))
    if status.open:
        text.append(" (open batch: not closed yet)", style="yellow")
    text.append(f" · {status.total:,} job{'s' if status.total != 1 else ''}")
    counts = state_counts(status.jobs) if status.jobs else _ended_counts(status)
    if counts:
        text.append(": ")
        for position, (state, count) in enumerate(counts.items()):
            if position:
                text.append(", ")
            text.append(f"{count:,} ")
            text.append_text(_state_word(state))
    return text


def _state_word(state: str) -> Text:
    if state in _STATES:
        return state_text(JobStatus(state))
    return Text(state, style="dim")  # a count that is not a state: "record expired"...


_STATES = frozenset(str(s) for s in JobStatus)


def _ended_counts(status: WorkflowStatus) -> dict[str, int]:
    """Without the jobs (``--counts``): the ends the workflow counted, and the rest."""
    counts = {str(s): status.counts[s] for s in STATE_ORDER if status.counts.get(s)}
    if status.total > status.ended:
        return {"not ended": status.total - status.ended, **counts}
    return counts


def times(status: WorkflowStatus) -> Text:
    """``created …, finished … (… s)`` (or ``created …, not finished``)."""
    created = _moment(status.created_at_ms)
    if status.finished_at_ms is None:
        return Text(f"created {created}, not finished", style="dim")
    took = (status.finished_at_ms - status.created_at_ms) / 1000
    return Text(
        f"created {created}, finished {_moment(status.finished_at_ms)} ({took:.3f} s)",
        style="dim",
    )


def _moment(ms: int) -> str:
    try:
        moment = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):  # a damaged record
        return f"{ms} (not a valid time)"
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


# -- lines ---------------------------------------------------------------------------
#: A line of the tree as (text, style) pieces: cheap to build and to write, where a rich
#: Text per line costs about 0.3 ms to render (seconds for 10,000 jobs).
Line = list[tuple[str, str]]


def job_pieces(job: WorkflowJobInfo, *, external: Sequence[str] = ()) -> Line:
    """``count  <id>  [default]  succeeded``, and the parents outside the workflow."""
    state = GONE if job.state is None else str(job.state)
    line: Line = [
        (clean(job.task, one_line=True), "bold"),
        (f"  {clean(job.id, one_line=True)}  [{clean(job.queue, one_line=True)}]  ", ""),
        (state, "dim" if job.state is None else STATE_COLOURS.get(job.state, "")),
    ]
    if external:
        line.append((f"  after {_ids(external)} (outside this workflow)", "dim"))
    return line


def error_pieces(job: WorkflowJobInfo, guide: str) -> Line | None:
    """The error of a job that did not succeed, cut to one short line; None otherwise."""
    if job.error is None or job.state is JobStatus.SUCCEEDED:
        return None
    return [(guide, "dim"), (clean(f"error: {_cut(job.error)}", one_line=True), "red")]


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(clean(i, one_line=True) for i in ids[:PARENTS_SHOWN])
    if len(ids) > PARENTS_SHOWN:
        shown += f" and {len(ids) - PARENTS_SHOWN:,} more"
    return shown


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + "…"


class _Jobs:
    """The jobs of one status, with where each one's parents are."""

    def __init__(self, status: WorkflowStatus) -> None:
        self.members = [job for job in status.jobs if job.callback is None]
        self.callbacks = [job for job in status.jobs if job.callback is not None]
        position = {job.id: index for index, job in enumerate(self.members)}
        self.inside: list[list[int]] = []
        self.outside: list[list[str]] = []
        for job in self.members:
            self.inside.append([position[p] for p in job.parents if p in position])
            self.outside.append([p for p in job.parents if p not in position])

    def lines(self, index: int, prefix: str, last: bool) -> Iterator[Line]:
        """One member's line (with its error under it)."""
        job = self.members[index]
        yield [
            (prefix + (_LAST if last else _BRANCH), "dim"),
            *job_pieces(job, external=self.outside[index]),
        ]
        error = error_pieces(job, prefix + (_SPACE if last else _PIPE) + "  ")
        if error is not None:
            yield error


def tree_lines(status: WorkflowStatus) -> Iterator[Line] | str:
    """The workflow drawn as a tree, or why it is not (no tree shape, or too deep)."""
    jobs = _Jobs(status)
    shape = decompose(jobs.inside) if jobs.members else None
    if jobs.members and shape is None:
        return "its graph has no tree shape"
    if shape is not None and depth(shape) > MAX_DEPTH:
        return f"its tree nests {depth(shape):,} levels deep, too deep to draw"
    return _draw(jobs, shape)


def _draw(jobs: _Jobs, shape: Shape | None) -> Iterator[Line]:
    """Top level: a chain's steps one under the other; nested chains and groups indented
    under a label. Walked with a stack, since shapes may nest deeply."""
    top: list[Shape] = []
    if isinstance(shape, Series):
        top = list(shape.items)
    elif shape is not None:
        top = [shape]
    last_top = len(top) - 1 if not jobs.callbacks else -1
    stack: list[tuple[Shape, str, bool]] = [
        (item, "", i == last_top) for i, item in reversed(list(enumerate(top)))
    ]
    while stack:
        item, prefix, last = stack.pop()
        if isinstance(item, Job):
            yield from jobs.lines(item.index, prefix, last)
            continue
        children = list(item.items) if isinstance(item, Series) else item.ordered()
        yield [
            (prefix + (_LAST if last else _BRANCH), "dim"),
            (_label(item, len(children)), "italic"),
        ]
        inner = prefix + (_SPACE if last else _PIPE)
        stack.extend(
            (child, inner, i == len(children) - 1)
            for i, child in reversed(list(enumerate(children)))
        )
    yield from _callback_lines(jobs.callbacks)


def _label(item: Series | Parallel, count: int) -> str:
    if isinstance(item, Series):
        return f"chain of {count:,} steps"
    return f"group of {count:,} side by side"


def _callback_lines(callbacks: Sequence[WorkflowJobInfo]) -> Iterator[Line]:
    for position, job in enumerate(callbacks):
        last = position == len(callbacks) - 1
        yield [
            (_LAST if last else _BRANCH, "dim"),
            (f"on {job.callback}: ", "italic"),
            *job_pieces(job),
        ]
        error = error_pieces(job, (_SPACE if last else _PIPE) + "  ")
        if error is not None:
            yield error


def dag_lines(status: WorkflowStatus, why: str) -> Iterator[Line]:
    """Each job in the order it was added, with the jobs it waits for."""
    yield [(f"({why}: each job is listed with the jobs it waits for)", "dim")]
    for job in status.jobs:
        line: Line = [("• ", "dim")]
        if job.callback is not None:
            line.append((f"on {job.callback}: ", "italic"))
        yield line + job_pieces(job)
        if job.parents:
            yield [(f"    after {_ids(job.parents)}", "dim")]
        error = error_pieces(job, "    ")
        if error is not None:
            yield error


def print_workflow(console: Console, status: WorkflowStatus) -> None:
    """The header, then the tree (or the DAG listing) when the status has its jobs."""
    console.print(header(status), soft_wrap=True, highlight=False)
    if status.first_failure is not None:
        job_id, error = status.first_failure
        line = plain(f"first failure: {job_id}: {_cut(error)}", one_line=True, style="red")
        console.print(line, soft_wrap=True, highlight=False)
    console.print(times(status), soft_wrap=True, highlight=False)
    if not status.jobs:
        return
    lines = tree_lines(status)
    write_lines(console, dag_lines(status, lines) if isinstance(lines, str) else lines)


def write_lines(console: Console, lines: Iterable[Line]) -> None:
    """Write lines to the console's file, a few hundred per write, in colour when the
    console has colours (its text is safe already: every broker value went through
    `clean`, and nothing is read as markup)."""
    colours = console.color_system is not None and not console.no_color
    out = console.file
    chunk: list[str] = []
    for line in lines:
        if colours:
            chunk.append(
                "".join(
                    _style(style).render(text, color_system=ColorSystem.STANDARD) if style else text
                    for text, style in line
                )
            )
        else:
            chunk.append("".join(text for text, _ in line))
        if len(chunk) == _CHUNK:
            out.write("\n".join(chunk) + "\n")
            chunk.clear()
    if chunk:
        out.write("\n".join(chunk) + "\n")
    out.flush()


@functools.cache
def _style(name: str) -> Style:
    return Style.parse(name)


# -- JSON ----------------------------------------------------------------------------
def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def workflow_json(status: WorkflowStatus) -> dict[str, Any]:
    """The status as JSON: the workflow, its counts and every job with its parents."""
    first = status.first_failure
    return {
        "id": status.id,
        "kind": status.kind,
        "state": status.state.value,
        "open": status.open,
        "total": status.total,
        "ended": status.ended,
        "ends": dict(status.counts),
        "states": state_counts(status.jobs),
        "created_at": _iso(status.created_at_ms),
        "finished_at": _iso(status.finished_at_ms),
        "first_failure": None if first is None else {"job_id": first[0], "error": first[1]},
        "jobs": [
            {
                "id": job.id,
                "task": job.task,
                "queue": job.queue,
                "state": None if job.state is None else job.state.value,
                "parents": list(job.parents),
                "error": job.error,
                "callback": None if job.callback is None else job.callback.value,
            }
            for job in status.jobs
        ],
    }
