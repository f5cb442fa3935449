"""Turn a job record HASH (as HGETALL returns it, bytes to bytes) into a :class:`Job`.

Fields the record lacks take the Job defaults, so records written by an older corq (or
half-written by hand) still read; an empty string counts as absent.
"""

from __future__ import annotations

from corq.job import Job, JobStatus

Record = dict[bytes, bytes]


def _text(record: Record, field: bytes) -> str | None:
    value = record.get(field)
    return value.decode("utf-8") if value else None


def _int(record: Record, field: bytes, default: int = 0) -> int:
    value = record.get(field)
    return int(value) if value else default


def _opt_int(record: Record, field: bytes) -> int | None:
    value = record.get(field)
    return int(value) if value else None


def job_from_record(record: Record) -> Job | None:
    """The Job a record describes, or None for an empty reply (no such key)."""
    if not record:
        return None
    return Job(
        id=_text(record, b"id") or "",
        task=_text(record, b"task") or "",
        queue=_text(record, b"queue") or "",
        status=JobStatus(_text(record, b"status") or JobStatus.QUEUED),
        payload=record.get(b"payload", b""),
        priority=_int(record, b"priority"),
        attempt=_int(record, b"attempt"),
        failures=_int(record, b"failures"),
        deaths=_int(record, b"deaths"),
        enqueued_at_ms=_int(record, b"enqueued_at_ms"),
        run_at_ms=_int(record, b"run_at_ms"),
        started_at_ms=_opt_int(record, b"started_at_ms"),
        finished_at_ms=_opt_int(record, b"finished_at_ms"),
        worker_id=_text(record, b"worker_id"),
        result=record.get(b"result"),
        error=_text(record, b"error"),
        traceback=_text(record, b"traceback"),
        progress=float(record[b"progress"]) if record.get(b"progress") else None,
        death_log=tuple((_text(record, b"death_log") or "").split()),
    )
