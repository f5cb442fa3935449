"""SQLite files as another program may leave them, for the damaged-data tests."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corq.backends.sqlite.sql import SCHEMA_VERSION, schema


def write_loose_schema(path: Path) -> Path:
    """Create corq's schema at `path` without its NOT NULL constraints (another writer's, or
    an edited one), so any value can sit in any column."""
    conn = sqlite3.connect(path)
    conn.executescript(re.sub(r"(?<!IS) NOT NULL", "", schema()))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()
    return path


@contextmanager
def writer(db: Path) -> Iterator[sqlite3.Connection]:
    """Another program's connection (autocommit: each statement commits)."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        yield conn
    finally:
        conn.close()
