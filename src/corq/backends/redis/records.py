"""Turn a job record HASH (as HGETALL returns it, bytes to bytes) into a :class:`Job`.

The fields read are the SHOWN fields of ``record.py``, each by the reader of its kind.
Reading never fails, whatever another program (or a bug) wrote: fields the record lacks take
the Job defaults, so records written by an older corq still read (an empty string counts as
absent); a field that cannot be read takes its default too, an unknown status reads as dead,
and the error says what was unreadable (``damaged job record: ...``, as the scripts word it).
Text that is not UTF-8 is decoded with replacement characters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from corq.backends.base import damaged_error
from corq.backends.record import JOB_FIELDS, JobField, Kind, Role
from corq.job import Job, JobStatus
from corq.types import JobId, QueueName

Record = dict[bytes, bytes]
#: Bytes of a stored value quoted in an error (as record.lua cuts them).
QUOTE_BYTES = 40


def quote(value: bytes) -> str:
    """A stored value fit for an error message (long ones cut)."""
    cut = value[:QUOTE_BYTES].decode("utf-8", "replace")
    return f"'{cut}...'" if len(value) > QUOTE_BYTES else f"'{cut}'"


@dataclass
class _Reader:
    """Reads fields of one record, noting each problem."""

    record: Record
    problems: list[str] = field(default_factory=list)

    def text(self, name: str) -> str | None:
        value = self.record.get(name.encode())
        return value.decode("utf-8", "replace") if value else None

    def number(self, name: str) -> float | None:
        value = self.record.get(name.encode())
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            self.problems.append(f"{name} is not a number: {quote(value)}")
            return None
        return number

    def integer(self, name: str) -> int | None:
        number = self.number(name)
        if number is None:
            return None
        if number != int(number) or abs(number) >= 2**53:
            self.problems.append(f"{name} is not an integer: {quote(self.record[name.encode()])}")
            return None
        return int(number)

    def count(self, name: str) -> int | None:
        """An integer that is never negative (attempt, failures, deaths)."""
        number = self.integer(name)
        if number is not None and number < 0:
            self.problems.append(f"{name} is negative: {quote(self.record[name.encode()])}")
            return None
        return number

    def flag(self, name: str) -> bool | None:
        number = self.integer(name)
        return None if number is None else number != 0

    def status(self, name: str) -> JobStatus | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return JobStatus(value)
        except ValueError:
            self.problems.append(f"{name} is unknown: {quote(self.record[name.encode()])}")
            return JobStatus.DEAD

    def bytes(self, name: str) -> bytes | None:
        """Stored as is (an empty value is a value, unlike for text)."""
        return self.record.get(name.encode())

    def words(self, name: str) -> tuple[str, ...] | None:
        value = self.text(name)
        return None if value is None else tuple(value.split())


#: How each kind of field is read: a value, or None for "take the field's default"
#: (missing, empty text, or unreadable: then the reader notes the problem).
_READ: dict[Kind, Callable[[_Reader, str], object]] = {
    Kind.TEXT: _Reader.text,
    Kind.BYTES: _Reader.bytes,
    Kind.INT: _Reader.integer,
    Kind.COUNT: _Reader.count,
    Kind.NUMBER: _Reader.number,
    Kind.FLAG: _Reader.flag,
    Kind.STATUS: _Reader.status,
    Kind.WORDS: _Reader.words,
}


def _default(f: JobField) -> object:
    """What the field reads as when the record lacks it, typed as a Job holds it."""
    return JobStatus(str(f.default)) if f.kind is Kind.STATUS else f.default


#: The fields a Job shows that its record holds (id and queue are the key's): name, reader
#: and default.
_SHOWN = tuple(
    (f.name, _READ[f.kind], _default(f))
    for f in JOB_FIELDS
    if f.has(Role.SHOWN) and f.name not in ("id", "queue")
)


def job_from_record(record: Record, job_id: JobId, queue: QueueName) -> Job | None:
    """The Job a record describes, or None for an empty reply (no such key).

    Its id and queue are those of the key it was read from (the record's own copies may
    have been rewritten by another program).
    """
    if not record:
        return None
    r = _Reader(record)
    values: dict[str, Any] = {"id": job_id, "queue": queue}
    for name, read, default in _SHOWN:
        value = read(r, name)
        values[name] = default if value is None else value
    job = Job(**values)
    if not r.problems:
        return job
    return replace(job, error=damaged_error("; ".join(r.problems)))


def wrong_type_job(job_id: JobId, queue: QueueName, kind: str) -> Job:
    """What a key of another type where a job record should be reads as: a dead job."""
    return Job(
        id=job_id,
        task="",
        queue=queue,
        status=JobStatus.DEAD,
        payload=b"",
        error=damaged_error(f"the key holds a {kind}, not a job hash"),
    )
