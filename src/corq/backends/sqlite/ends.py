"""A job's end applied to every workflow that waits for it, inside the transaction that
ended it (see corq/backends/base.py, Workflows).

Whatever ends a job (a completion, a failure or reclaim to the dead letters, a damaged
record buried, a cancel, an upstream failure decided here) hands the end to
:func:`apply_ends` in the same transaction. The end is taken in once by the job's own
workflow (``workflow_nodes.ended``: counted, the first failure noted, batch callbacks and
the finish decided from the counts) and once per edge that names the job as parent, in
any workflow (``workflow_edges.applied``, found through the ``workflow_dependents``
index): a satisfied edge lowers the child's pending count and releases it at 0; an
unsatisfied one ends the child ``upstream_failed``, which is an end in its turn. So two
parents ending "at once" are two transactions one after the other, and a child is
released exactly once; there is nothing to settle later.

Ends are applied in waves: the ends of one call first (all of a batch of completions),
then the upstream failures and callback ends they caused, and so on. Within a wave each
end costs two statements (its own workflow's take-in, its edges), and what the wave adds
up is written once per workflow and per child (counts, pending counts), so a fan-in's
parents completed 100 at a time cost the callback's row one write per batch. Every lookup
is by key (an end costs a few index probes whatever the size of its workflows), and every
statement touches at most BATCH rows. Rows of the workflow tables
are checked before anything is decided from them: a row that cannot be read (another
program wrote it) leaves its own job where it is, never the call or another workflow.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from corq.backends.base import BATCH, WORKFLOW_KEEP_MS, BatchEvent
from corq.backends.sqlite.sql import Q
from corq.backends.sqlite.store import Conn, read_clock, take_numbers
from corq.job import JobStatus

_INT64_MAX = 2**63 - 1
#: Ends that count as a workflow's failure (a batch summary's failed members).
FAILED_STATES = (
    JobStatus.DEAD,
    JobStatus.CANCELLED,
    JobStatus.UPSTREAM_FAILED,
    JobStatus.EXPIRED,
)
#: Bytes of a parent's error kept in its child's upstream_failed error.
CAUSE_BYTES = 1000
#: Errors of batch callbacks whose condition can no longer hold.
NOT_NEEDED: dict[BatchEvent, str] = {
    BatchEvent.SUCCESS: "not needed: not every member of the batch succeeded",
    BatchEvent.FAILURE: "not needed: no member of the batch ended dead",
}


@dataclass(frozen=True, slots=True)
class End:
    """A job that reached a terminal state, as its record says (values as stored: another
    program may have written a workflow that is not text)."""

    job_id: object
    queue: object
    state: JobStatus
    error: object
    #: The record's ``workflow`` and ``notify`` columns.
    workflow: object
    notify: object = 0

    def concerns_workflows(self) -> bool:
        """Whether a workflow may wait for this end: the job has one, or one watches it
        (a plain job costs no lookup)."""
        return self.workflow is not None or self.notify != 0


def end_of(job_id: object, queue: object, state: JobStatus, row: tuple[object, ...]) -> End:
    """The end of a job from the ``workflow, notify[, error]`` its ending statement
    returned."""
    error = row[2] if len(row) > 2 else None
    return End(job_id, queue, state, error, workflow=row[0], notify=row[1])


def upstream_error(parent: object, state: JobStatus, error: object) -> str:
    """``upstream_failed: <parent id> ended <state>: <parent error>`` (without the last
    part when the parent has no error, as a cancelled job usually has not). The parent's
    error is cut to CAUSE_BYTES, so the errors down a failed chain of 1,000 links stay
    small (the same text as the Redis broker's)."""
    cause = f"upstream_failed: {parent} ended {state.value}"
    if not isinstance(error, str) or not error:
        return cause
    return f"{cause}: {cut_text(error, CAUSE_BYTES)}"


def cut_text(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8 (then ``...``), never inside a
    character."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore") + "..."


def expiry(conn: Conn, now_ms: int) -> int:
    """When the record of a workflow job ended now goes (its children may start later), or
    a finished workflow's rows: WORKFLOW_KEEP_MS after the broker's time (the latest any
    call brought, which reads judge expiry by), as results expire."""
    return min(max(now_ms, read_clock(conn)) + WORKFLOW_KEEP_MS, _INT64_MAX)


def apply_ends(conn: Conn, ends: Iterable[End], now_ms: int) -> None:
    """Apply each end, and the upstream failures and callback ends it causes, to every
    workflow that waits for them, wave after wave (see the module docstring)."""
    wave = [end for end in ends if end.concerns_workflows()]
    while wave:
        wave = _apply_wave(conn, wave, now_ms)


@dataclass(slots=True)
class _Tally:
    """What one wave's ends add up to in one workflow."""

    ended: int = 0
    members_ended: int = 0
    #: (member 0/1, state) -> ends.
    states: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: The first end of the wave that was a failure: (job, error).
    first_failure: tuple[str, str | None] | None = None
    #: Members that failed, in the order they ended.
    failed_members: list[str] = field(default_factory=list)
    #: Whether a member ended dead (a failure callback may run).
    dead_member: bool = False


def _apply_wave(conn: Conn, wave: list[End], now_ms: int) -> list[End]:
    """Take the wave's ends in (own workflows), apply them to their edges, then write what
    they add up to; returns the next wave (the ends this one decided)."""
    tallies = _take_in(conn, wave)
    satisfied: Counter[tuple[object, object]] = Counter()
    failing: list[tuple[object, object, str]] = []
    named = [end for end in wave if isinstance(end.job_id, str) and isinstance(end.queue, str)]
    for start in range(0, len(named), BATCH):
        _apply_edges(conn, named[start : start + BATCH], satisfied, failing)
    following: list[End] = []
    for (workflow, child), n in satisfied.items():
        _satisfy(conn, workflow, child, n, now_ms)
    for workflow, child, error in failing:
        failed = fail_waiting(conn, workflow, child, JobStatus.UPSTREAM_FAILED, error, now_ms)
        if failed is not None:
            following.append(failed)
    for workflow, tally in tallies.items():
        following += _count(conn, workflow, tally, now_ms)
    return following


# -- the job's own workflow ----------------------------------------------------------------


def _take_in(conn: Conn, wave: list[End]) -> dict[str, _Tally]:
    """Take the wave's ends in by the jobs' own workflows (each end once, BATCH ends of a
    workflow, queue and state a statement) and add them up per workflow, in the order they
    came."""
    groups: dict[tuple[str, str, JobStatus], list[End]] = {}
    for end in wave:
        workflow, queue = end.workflow, end.queue
        if isinstance(workflow, str) and isinstance(queue, str) and isinstance(end.job_id, str):
            groups.setdefault((workflow, queue, end.state), []).append(end)
    taken: dict[tuple[str, str], bool] = {}  # (workflow, job) -> a member
    for (workflow, queue, state), ends in groups.items():
        for start in range(0, len(ends), BATCH):
            jobs = json.dumps([end.job_id for end in ends[start : start + BATCH]])
            params = {"workflow": workflow, "queue": queue, "state": state, "jobs": jobs}
            for job, callback in conn.execute(Q["wf_nodes_end"], params):
                taken[(workflow, job)] = callback is None
    tallies: dict[str, _Tally] = {}
    for end in wave:
        member = taken.get((str(end.workflow), str(end.job_id)))
        if member is not None and isinstance(end.workflow, str):
            _add(tallies.setdefault(end.workflow, _Tally()), end, member)
    return tallies


def _add(tally: _Tally, end: End, member: bool) -> None:
    """Add one end taken in to its workflow's tally."""
    job_id = str(end.job_id)
    tally.ended += 1
    tally.members_ended += int(member)
    tally.states[(int(member), end.state.value)] += 1
    if end.state in FAILED_STATES:
        if tally.first_failure is None:
            tally.first_failure = (job_id, _text_or_none(end.error))
        if member:
            tally.failed_members.append(job_id)
    tally.dead_member |= member and end.state == JobStatus.DEAD


def _count(conn: Conn, workflow: str, tally: _Tally, now_ms: int) -> list[End]:
    """Write a wave's tally of one workflow, then decide its callbacks and its finish when
    the counts say so; returns the callbacks' ends (not needed)."""
    failed_before = 0
    if tally.failed_members:
        failed_before = sum(member_count(conn, workflow, state) for state in FAILED_STATES)
    job, error = tally.first_failure or (None, None)
    params = {
        "workflow": workflow,
        "ended": tally.ended,
        "members_ended": tally.members_ended,
        "failed": int(job is not None),
        "job": job,
        "error": error,
    }
    counts = conn.execute(Q["wf_count_end"], params).fetchone()
    for (member, state), n in tally.states.items():
        params = {"workflow": workflow, "member": member, "state": state, "n": n}
        conn.execute(Q["wf_count_state"], params)
    room = max(0, BATCH - failed_before)
    if tally.failed_members and room:
        conn.executemany(
            Q["wf_failed_add"],
            [
                {"workflow": workflow, "position": failed_before + n, "job": job_id}
                for n, job_id in enumerate(tally.failed_members[:room])
            ],
        )
    if counts is None:
        return []  # the workflow's row is gone or cannot be read: nothing to decide from
    state, total, ended, members, members_ended, finished_at = counts
    if state != "closed" or not _all_int(total, ended, members, members_ended):
        return []
    ends: list[End] = []
    if tally.members_ended and (members_ended >= members or tally.dead_member):
        ends = decide_callbacks(conn, workflow, now_ms)
    if ended >= total and finished_at is None:
        finish(conn, workflow, now_ms)
    return ends


def finish(conn: Conn, workflow: str, now_ms: int) -> None:
    """Every job of the workflow ended and it is closed: it is kept WORKFLOW_KEEP_MS."""
    conn.execute(
        Q["wf_finish"],
        {"workflow": workflow, "now": now_ms, "expires_at_ms": expiry(conn, now_ms)},
    )


def member_count(conn: Conn, workflow: str, state: JobStatus) -> int:
    """How many members ended in `state` (0 when the count cannot be read)."""
    row = conn.execute(
        Q["wf_count_get"], {"workflow": workflow, "member": 1, "state": state}
    ).fetchone()
    return row[0] if row is not None and type(row[0]) is int and row[0] >= 0 else 0


def decide_callbacks(conn: Conn, workflow: str, now_ms: int) -> list[End]:
    """Release the batch callbacks of a closed workflow whose condition holds, and end
    those whose condition can no longer hold ``cancelled`` (not needed); returns the ends
    of the latter, for apply_ends."""
    callbacks = conn.execute(Q["wf_callbacks"], {"workflow": workflow}).fetchall()
    if not callbacks:
        return []
    row = conn.execute(Q["wf_get"], {"workflow": workflow}).fetchone()
    if row is None or row[2] != "closed" or not _all_int(row[5], row[7]):
        return []
    members, members_ended = row[5], row[7]
    all_ended = members_ended >= members
    succeeded = member_count(conn, workflow, JobStatus.SUCCEEDED)
    dead = member_count(conn, workflow, JobStatus.DEAD)
    ends = []
    for job_id, event in callbacks:
        if event == BatchEvent.SUCCESS:
            run, over = succeeded >= members, all_ended
        elif event == BatchEvent.COMPLETE:
            run, over = all_ended, all_ended
        elif event == BatchEvent.FAILURE:
            run, over = dead > 0, all_ended
        else:
            continue  # an event this corq does not know: left waiting
        if run:
            release(conn, workflow, job_id, now_ms)
        elif over:
            error = NOT_NEEDED[BatchEvent(event)]
            end = fail_waiting(conn, workflow, job_id, JobStatus.CANCELLED, error, now_ms)
            if end is not None:
                ends.append(end)
    return ends


# -- the workflows watching the job ----------------------------------------------------------


def _apply_edges(
    conn: Conn,
    ends: list[End],
    satisfied: Counter[tuple[object, object]],
    failing: list[tuple[object, object, str]],
) -> None:
    """Apply at most BATCH ends to every edge that names their jobs as parent, BATCH edges
    a statement: each satisfied edge counts for its child, each other fails it."""
    parents = json.dumps([[end.job_id, end.queue] for end in ends])
    params = {"parents": parents, "limit": BATCH}
    while True:
        edges = conn.execute(Q["wf_edges_unapplied"], params).fetchall()
        if not edges:
            return
        conn.executemany(
            Q["wf_edge_applied"],
            [{"workflow": w, "child": c, "position": p} for _, w, c, p, _ in edges],
        )
        for at, workflow, child, _, allow_failed in edges:
            end = ends[at]
            if end.state == JobStatus.SUCCEEDED or allow_failed == 1:
                satisfied[(workflow, child)] += 1
            else:
                failing.append((workflow, child, upstream_error(end.job_id, end.state, end.error)))
        if len(edges) < BATCH:
            return


def _satisfy(conn: Conn, workflow: object, child: object, n: int, now_ms: int) -> None:
    """`n` more edges of `child` satisfied: released when they were the last. A node that
    cannot be read stays as it is (waiting, until cancelled)."""
    row = conn.execute(
        Q["wf_node_satisfy"], {"workflow": workflow, "job": child, "n": n}
    ).fetchone()
    if row is not None and row[0] == 0 and row[1] == 0 and row[2] is None:
        release(conn, workflow, child, now_ms)


def release(conn: Conn, workflow: object, job_id: object, now_ms: int) -> None:
    """Decide a waiting job released (once): queued at the tail of its lane, or scheduled
    when its run time is still ahead. Committing wakes the queue's workers; the queue's
    name is noted as used (a queue holding only waiting jobs may have been pruned)."""
    row = conn.execute(Q["wf_node_decide"], {"workflow": workflow, "job": job_id}).fetchone()
    if row is None:
        return
    seq = take_numbers(conn, 1) + 1
    params = {"queue": row[0], "id": job_id, "now": now_ms, "seq": seq}
    if conn.execute(Q["wf_job_release"], params).rowcount == 1:
        conn.execute(Q["queue_touch"], {"queue": row[0], "now": now_ms})


def fail_waiting(
    conn: Conn, workflow: object, job_id: object, state: JobStatus, error: str, now_ms: int
) -> End | None:
    """Decide a waiting job ended without running (once): upstream_failed, or a callback
    cancelled as not needed; returns its end (for its own workflow and those watching it),
    None when it was decided already or ended meanwhile. A job whose record is gone counts
    as ended so, so its workflow can finish."""
    row = conn.execute(Q["wf_node_decide"], {"workflow": workflow, "job": job_id}).fetchone()
    if row is None:
        return None
    queue = row[0]
    params = {
        "queue": queue,
        "id": job_id,
        "status": state,
        "error": error,
        "now": now_ms,
        "expires_at_ms": expiry(conn, now_ms),
    }
    ended = conn.execute(Q["wf_job_end"], params).fetchone()
    if ended is not None:
        return End(job_id, queue, state, error, workflow=ended[0], notify=ended[1])
    if conn.execute(Q["wf_job_status"], {"queue": queue, "id": job_id}).fetchone() is None:
        return End(job_id, queue, state, error, workflow=workflow)
    return None


def _all_int(*values: object) -> bool:
    return all(type(v) is int and v >= 0 for v in values)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
