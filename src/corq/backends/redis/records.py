"""Turn a job record HASH (as HGETALL returns it, bytes to bytes) into a :class:`Job`.

Reading never fails, whatever another program (or a bug) wrote: fields the record lacks take
the Job defaults, so records written by an older corq still read (an empty string counts as
absent); a field that cannot be read takes its default too, an unknown status reads as dead,
and the error says what was unreadable (``damaged job record: ...``, as the scripts word it).
Text that is not UTF-8 is decoded with replacement characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from corq.backends.base import damaged_error
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

    def opt_integer(self, name: str) -> int | None:
        number = self.number(name)
        if number is None:
            return None
        if number != int(number) or abs(number) >= 2**53:
            self.problems.append(f"{name} is not an integer: {quote(self.record[name.encode()])}")
            return None
        return int(number)

    def integer(self, name: str) -> int:
        return self.opt_integer(name) or 0

    def count(self, name: str) -> int:
        """An integer that is never negative (attempt, failures, deaths)."""
        number = self.integer(name)
        if number < 0:
            self.problems.append(f"{name} is negative: {quote(self.record[name.encode()])}")
            return 0
        return number

    def status(self) -> JobStatus:
        value = self.text("status")
        if value is None:
            return JobStatus.QUEUED
        try:
            return JobStatus(value)
        except ValueError:
            self.problems.append(f"status is unknown: {quote(self.record[b'status'])}")
            return JobStatus.DEAD


def job_from_record(record: Record, job_id: JobId, queue: QueueName) -> Job | None:
    """The Job a record describes, or None for an empty reply (no such key).

    Its id and queue are those of the key it was read from (the record's own copies may
    have been rewritten by another program).
    """
    if not record:
        return None
    r = _Reader(record)
    job = Job(
        id=job_id,
        task=r.text("task") or "",
        queue=queue,
        status=r.status(),
        payload=record.get(b"payload", b""),
        priority=r.integer("priority"),
        attempt=r.count("attempt"),
        failures=r.count("failures"),
        deaths=r.count("deaths"),
        enqueued_at_ms=r.integer("enqueued_at_ms"),
        run_at_ms=r.integer("run_at_ms"),
        started_at_ms=r.opt_integer("started_at_ms"),
        finished_at_ms=r.opt_integer("finished_at_ms"),
        worker_id=r.text("worker_id"),
        result=record.get(b"result"),
        error=r.text("error"),
        traceback=r.text("traceback"),
        progress=r.number("progress"),
        death_log=tuple((r.text("death_log") or "").split()),
    )
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
