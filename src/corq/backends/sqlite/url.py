"""Turning a ``sqlite:///…`` broker URL into what ``sqlite3.connect`` needs."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from corq.errors import ConfigError

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

#: The name every ``sqlite:///:memory:`` backend of this process opens, so an App's client
#: and its in-process worker (each opened from the URL) see one database. The memdb VFS
#: shares a database between the connections of a process that name it, with ordinary
#: locking and busy_timeout (a shared-cache database would fail lock conflicts at once with
#: SQLITE_LOCKED). It lives while any connection to it is open.
_PROCESS_MEMORY_DB = f"/corq-{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class Target:
    """One SQLite database as every clone of a backend opens it."""

    #: First argument of ``sqlite3.connect``.
    database: str
    #: Whether `database` is a ``file:`` URI.
    uri: bool
    #: True for the process-private in-memory database (no WAL, no file).
    memory: bool
    #: Identity shared by every backend of this database in this process (in-process wakes).
    key: str
    #: ``PRAGMA synchronous`` level: FULL by default, so an accepted job survives a power cut.
    synchronous: str = "FULL"
    #: Events each queue's log keeps (the backend's ``events_max``; 0: no events written).
    events_max: int = 0


def parse_url(url: str) -> Target:
    """Accept ``sqlite:///relative``, ``sqlite:////absolute`` and ``sqlite:///:memory:``
    (one in-memory database per process, shared by every backend of the process).

    Options go in the query string; the only one is ``synchronous`` (``?synchronous=normal``
    trades the last commits on power loss for fewer fsyncs). Relative paths are resolved
    now, so a clone made after a ``chdir`` still opens the same file.
    """
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not sep or not rest.startswith("/"):
        raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///path/to/corq.db")
    path, _, query = rest[1:].partition("?")
    path = unquote(path)
    synchronous = _options(url, query)
    if path == ":memory:":
        name = _PROCESS_MEMORY_DB
        return Target(f"file:{name}?vfs=memdb", True, True, f"memdb:{name}", synchronous)
    if not path:
        raise ConfigError(f"bad SQLite URL {url!r}: no file path")
    absolute = os.path.abspath(path)
    return Target(absolute, False, False, os.path.realpath(absolute), synchronous)


def _options(url: str, query: str) -> str:
    synchronous = "FULL"
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "synchronous" and value.upper() in _SYNCHRONOUS:
            synchronous = value.upper()
        else:
            raise ConfigError(
                f"bad SQLite URL {url!r}: unknown option {name}={value!r} "
                f"(supported: synchronous={'|'.join(_SYNCHRONOUS).lower()})"
            )
    return synchronous
