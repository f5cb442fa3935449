"""The replies of the workflow scripts, and the msgpack values the workflow keys hold.

A node is stored as msgpack ``[queue, task, callback event or ""]`` and an edge (an entry
of a job's parents list) as ``[parent, queue, allow_failed 1/0]``, both packed by the
scripts (Redis's msgpack reads and writes text, never binary); outputs as ``[[job id,
queue], ...]``, packed here. A value that does not decode (another program's) reads as absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from corq.backends.base import BatchEvent, Edge
from corq.backends.redis.replies import text
from corq.types import JobId, QueueName, TaskName

_NODE = msgspec.msgpack.Decoder(tuple[str, str, str])
_EDGE = msgspec.msgpack.Decoder(tuple[str, str, int | float])
_OUTPUTS = msgspec.msgpack.Decoder(list[tuple[str, str]])
_encode = msgspec.msgpack.encode


def _raw(value: bytes | str) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Node:
    """A workflow job as its workflow's slot knows it."""

    queue: QueueName
    task: TaskName
    callback: BatchEvent | None


def unpack_node(raw: bytes | str | None) -> Node | None:
    if raw is None:
        return None
    try:
        queue, task, callback = _NODE.decode(_raw(raw))
        return Node(queue=queue, task=task, callback=BatchEvent(callback) if callback else None)
    except (msgspec.DecodeError, ValueError):
        return None


def unpack_edge(raw: bytes | str) -> Edge | None:
    try:
        parent, queue, allow = _EDGE.decode(_raw(raw))
    except msgspec.DecodeError:
        return None
    return Edge(parent=parent, queue=queue, allow_failed=bool(allow))


def pack_outputs(outputs: Sequence[tuple[JobId, QueueName]]) -> bytes:
    return _encode([list(pair) for pair in outputs])


def unpack_outputs(raw: bytes | str | None) -> tuple[tuple[JobId, QueueName], ...]:
    if raw is None:
        return ()
    try:
        return tuple(_OUTPUTS.decode(_raw(raw)))
    except msgspec.DecodeError:
        return ()


def pack_job(
    job_id: JobId,
    node: tuple[QueueName, TaskName, BatchEvent | None],
    parents: Sequence[tuple[JobId, QueueName, int, int]],
) -> bytes:
    """One job as add_workflow_nodes takes it: [id, queue, task, callback, [[parent, queue,
    allow_failed, external], ...]] (text only: the scripts' msgpack reads no binary)."""
    queue, task, callback = node
    callback_value = callback.value if callback is not None else ""
    return _encode([job_id, queue, task, callback_value, [list(p) for p in parents]])


@dataclass(frozen=True, slots=True)
class Decision:
    """What a workflow decided for one of its jobs and has not seen released yet."""

    #: As stored (bytes: passed back to the scripts as they are, whatever they hold).
    job_id: bytes
    queue: QueueName
    #: ``r`` (release), ``u<error>`` (upstream_failed) or ``c<error>`` (cancelled), as stored.
    value: bytes


@dataclass(frozen=True, slots=True)
class WorkflowStep:
    """What a script of the workflow's slot answered: its state and its todo."""

    #: ``gone``, ``creating`` or ``live``.
    state: str
    finished: bool
    todo: list[Decision]


def _todo(values: Sequence[Any]) -> list[Decision]:
    return [
        Decision(job_id=values[at], queue=text(values[at + 1]), value=values[at + 2])
        for at in range(0, len(values), 3)
    ]


def workflow_step(reply: list[Any]) -> WorkflowStep:
    """apply_workflow_ends, open_workflow: {state, finished, todo...}."""
    return WorkflowStep(state=text(reply[0]), finished=reply[1] == 1, todo=_todo(reply[2:]))


def flagged_step(reply: list[Any]) -> tuple[bool, WorkflowStep]:
    """close_workflow: {changed, state, finished, todo...}."""
    return reply[0] == 1, workflow_step(reply[1:])


def committed_step(reply: list[Any]) -> tuple[bool, WorkflowStep]:
    """commit_workflow_addition: {committed, todo...} (its workflow is live)."""
    return reply[0] == 1, WorkflowStep(state="live", finished=False, todo=_todo(reply[1:]))


@dataclass(frozen=True, slots=True)
class Released:
    """What one release_workflow_jobs call did."""

    #: Ends it noted in its queue's outbox (that queue needs a settle too).
    noted: int
    #: Jobs whose record could not be read (gone, or not a hash), ids as stored.
    unreadable: list[bytes]


def released(reply: list[Any]) -> Released:
    return Released(noted=int(reply[0]), unreadable=list(reply[1:]))


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One end waiting in a queue's outbox, as take_outbox read it."""

    #: The entry as stored (msgpack [id, workflow]) and its score as Redis printed it
    #: (clear_outbox removes it only if both are unchanged).
    member: bytes
    score: bytes
    #: As stored (passed back to the scripts as it is).
    job_id: bytes
    #: The record's state now ("" when the record is gone).
    state: str
    error: str
    #: The job's own workflow ("" for none) and the workflows watching it.
    workflow: str
    watchers: tuple[str, ...]


def outbox_entries(reply: list[Any]) -> list[OutboxEntry]:
    entries: list[OutboxEntry] = []
    at = 0
    while at < len(reply):
        count = int(reply[at + 6])
        entries.append(
            OutboxEntry(
                member=reply[at],
                score=reply[at + 1],
                job_id=reply[at + 2],
                state=text(reply[at + 3]),
                error=text(reply[at + 4]),
                workflow=text(reply[at + 5]),
                watchers=tuple(text(w) for w in reply[at + 7 : at + 7 + count]),
            )
        )
        at += 7 + count
    return entries


def watch_states(reply: list[bytes]) -> list[tuple[str, str]]:
    """watch_jobs: (state, error) per job."""
    return [(text(reply[at]), text(reply[at + 1])) for at in range(0, len(reply), 2)]
