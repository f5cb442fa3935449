"""The replies of the Lua scripts, parsed into typed values.

Every parser takes what one script returns (see its header's ``Returns:``) and never fails
on what a script checked: ids a script validated as UTF-8 decode, numbers it checked are
integers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from corq.backends.base import Admitted, ClaimBatch, ClaimedJob, HeldJob
from corq.backends.record import CLAIMED_FIELDS, FIELDS_BY_NAME, Kind
from corq.flow import Outcome
from corq.job import JobStatus
from corq.types import JobId, WorkerId


@dataclass(frozen=True, slots=True)
class StalledJob:
    """One job a ``reclaim_stalled_jobs`` call took back."""

    holder: WorkerId
    job_id: JobId
    #: Sent to the dead letters (backstop reached, or a damaged record).
    dead: bool
    #: Given back without a death (its holder had departed).
    released: bool


@dataclass(frozen=True, slots=True)
class StalledBatch:
    """What one ``reclaim_stalled_jobs`` call did."""

    done: bool
    jobs: list[StalledJob]


@dataclass(frozen=True, slots=True)
class HeldStep:
    """One SSCAN step of ``list_held_jobs``: the jobs seen, and where to go on ("0": done)."""

    cursor: str
    jobs: list[HeldJob]


@dataclass(frozen=True, slots=True)
class Promoted:
    """What one ``promote_due_jobs`` call did."""

    count: int
    next_due_ms: int | None
    more: bool


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """What ``count_queue_jobs`` read (see QueueStats)."""

    ready: int
    delayed: int
    dead: int
    workers: int
    in_flight: int
    waiting: int
    retrying: int
    #: -1 when nothing is ready.
    oldest_ready_ms: int


def text(value: bytes | str) -> str:
    """Text as stored; bytes that are not UTF-8 (written by another program) are replaced."""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def decode_id(value: bytes | str) -> JobId:
    """A job id a script checked is UTF-8; surrogates keep any other byte, never crash."""
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


def score(value: bytes | int | None) -> int | None:
    """Scores come back as Redis prints doubles (maybe ``1.7e+12``), so go through float."""
    return None if value is None else int(float(value))


def flags(reply: list[int]) -> list[bool]:
    return [bool(flag) for flag in reply]


def admitted(ids: Sequence[JobId]) -> Callable[[list[Any]], list[Admitted]]:
    """The parser of an enqueue_jobs reply for the jobs `ids`: 1 created, 0 an existing id,
    [outcome, the id of the job it names], or [created, id, the running job cancelled]."""

    def parse(reply: list[Any]) -> list[Admitted]:
        out: list[Admitted] = []
        for job_id, item in zip(ids, reply, strict=True):
            if isinstance(item, list):
                stopped = decode_id(item[2]) if len(item) > 2 else None
                named = decode_id(item[1])
                outcome = Outcome(text(item[0]))
                out.append(Admitted(job_id=named, outcome=outcome, cancelled=stopped))
            else:
                out.append(Admitted(job_id=job_id, outcome=_PLAIN[bool(item)]))
        return out

    return parse


_PLAIN = {True: Outcome.CREATED, False: Outcome.EXISTS}


def pair(reply: list[int]) -> tuple[int, int]:
    return int(reply[0]), int(reply[1])


def _same(value: Any) -> Any:
    return value


def _flag(value: Any) -> bool:
    return value in (1, b"1")


def _status(value: Any) -> JobStatus:
    return JobStatus(text(value))


def _words(value: Any) -> tuple[str, ...]:
    return tuple(text(value).split())


#: How a value of each kind that a script replies with is decoded.
DECODE: dict[Kind, Callable[[Any], Any]] = {
    Kind.TEXT: text,
    Kind.BYTES: _same,
    Kind.INT: int,
    Kind.COUNT: int,
    Kind.NUMBER: float,
    Kind.FLAG: _flag,
    Kind.STATUS: _status,
    Kind.WORDS: _words,
}
#: Kinds a script replies with as they are used: bytes, and numbers it checked (integers).
AS_REPLIED = frozenset({Kind.BYTES, Kind.INT, Kind.COUNT})
CLAIM_WIDTH = len(CLAIMED_FIELDS)


def _claimed_maker() -> Callable[[Sequence[Any]], ClaimedJob]:
    """A function turning one job of a claim reply (the values of CLAIMED_FIELDS, in that
    order) into a ClaimedJob, generated from the field list: a claim parses thousands, and
    unpacking into names with one call per value that needs decoding is several times
    faster than a loop over the fields (as namedtuple and dataclasses do, the code is built
    once, at import). An optional field (no default) that the record lacks comes as ''
    and reads None."""
    args = ", ".join(f"v_{name}" for name in CLAIMED_FIELDS)
    fields = []
    scope: dict[str, Any] = {"ClaimedJob": ClaimedJob}
    for name in CLAIMED_FIELDS:
        kind = FIELDS_BY_NAME[name].kind
        value = f"v_{name}"
        if kind not in AS_REPLIED:
            scope[f"decode_{kind.name}"] = DECODE[kind]
            value = f"decode_{kind.name}({value})"
        if FIELDS_BY_NAME[name].default is None:
            value = f'(None if v_{name} == b"" else {value})'
        fields.append(f"{name}={value}")
    source = f"def claimed(row):\n    {args}, = row\n    return ClaimedJob({', '.join(fields)})\n"
    exec(compile(source, "<claimed>", "exec"), scope)
    made: Callable[[Sequence[Any]], ClaimedJob] = scope["claimed"]
    return made


claimed = _claimed_maker()


def claim_batch(reply: list[Any]) -> ClaimBatch:
    if reply[0] == 1:
        return ClaimBatch(jobs=[], lost=True)
    width = CLAIM_WIDTH
    jobs = [claimed(reply[at : at + width]) for at in range(4, len(reply), width)]
    return ClaimBatch(
        jobs=jobs, next_due_ms=score(reply[1]), suspects=int(reply[2]), idle=reply[3] == 1
    )


#: Positions, among a job's claim values, of the numbers a script replies as integers:
#: an inbox entry carries every value as text (see handed).
_HANDED_INTS = tuple(
    i
    for i, name in enumerate(CLAIMED_FIELDS)
    if FIELDS_BY_NAME[name].kind in (Kind.INT, Kind.COUNT)
)


def handed(entry: bytes) -> list[ClaimedJob]:
    """One inbox entry (the wake include's pack_handed): the job handed over, or none for
    a bare wake marker (b'')."""
    if not entry:
        return []
    header, _, body = entry.partition(b"\n")
    values: list[Any] = []
    at = 0
    for length in header.split():
        end = at + int(length)
        values.append(body[at:end])
        at = end
    for i in _HANDED_INTS:
        if values[i]:
            values[i] = int(values[i])
    return [claimed(values)]


def promoted(reply: list[Any]) -> Promoted:
    return Promoted(count=int(reply[0]), next_due_ms=score(reply[1]), more=reply[2] == 1)


def stalled(reply: list[Any]) -> StalledBatch:
    jobs = [
        StalledJob(holder=text(h), job_id=decode_id(j), dead=d == 1, released=r == 1)
        for h, j, d, r in reply[1:]
    ]
    return StalledBatch(done=reply[0] == 1, jobs=jobs)


def held_step(reply: list[Any]) -> HeldStep:
    jobs = [HeldJob(job_id=decode_id(job_id), fence=int(fence)) for job_id, fence in reply[1:]]
    return HeldStep(cursor=text(reply[0]), jobs=jobs)


def counts(reply: list[int]) -> QueueCounts:
    return QueueCounts(*(int(n) for n in reply))


def names(reply: list[bytes]) -> list[bytes]:
    return list(reply)


@dataclass(frozen=True, slots=True)
class DeadQuery:
    """A dead-letter filter as ``find_dead_jobs`` takes it ('' for a condition not given)."""

    task: str | bytes = ""
    #: Lowered (ASCII letters) text the error must hold.
    needle: str | bytes = ""
    since: str | int = ""
    until: str | int = ""


@dataclass(frozen=True, slots=True)
class DeadWindow:
    """What one ``find_dead_jobs`` call found."""

    #: (id, judged): judged False for a key that is not a hash (its error is compared by
    #: the caller, as it reads).
    found: list[tuple[bytes, bool]]
    #: (score, id) of the last dead letter looked at; None at the end of the walk.
    cursor: tuple[bytes, bytes] | None


def dead_window(reply: list[Any]) -> DeadWindow:
    score, last = bytes(reply[0]), bytes(reply[1])
    found = [(bytes(reply[i]), int(reply[i + 1]) == 1) for i in range(2, len(reply), 2)]
    return DeadWindow(found, None if score == b"" else (score, last))
