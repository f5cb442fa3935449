"""SQLite events on a file an earlier build of the same schema version wrote."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from corq.backends import open_backend
from corq.events import EventKind
from tests.contract.jobs import Q, new_job


async def test_a_file_of_this_version_without_the_events_tables_gets_them_at_open(
    tmp_path: Path,
) -> None:
    # Given a file of this schema version from before the events tables joined it
    path = tmp_path / "corq.db"
    backend = open_backend(f"sqlite:///{path}")
    await backend.list_queues()
    await backend.close()
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE events; DROP TABLE events_queues; DROP TABLE job_attempts;")
    conn.close()

    # When a backend opens it and jobs move
    backend = open_backend(f"sqlite:///{path}")
    try:
        assert await backend.enqueue_jobs([new_job("a")]) == [True]

        # Then their events and attempts are kept as on a new file
        assert [e.kind for e in (await backend.read_events(None)).events] == [EventKind.ENQUEUED]
        assert await backend.job_attempts("a", Q) == []
    finally:
        await backend.close()
