"""The embedded SQLite broker (``sqlite:///path/to/corq.db``)."""

from __future__ import annotations

from corq.backends.sqlite.backend import SqliteBackend

__all__ = ["SqliteBackend"]
