"""The SQL text of the SQLite broker, read once from the package's .sql files.

Keeping the statements in files (rather than Python strings) lets them be read, diffed and
EXPLAINed as SQL; the loader splits ``queries.sql`` on its ``-- name: <name>`` headers and
expands each ``{placeholder}`` (the job record's column lists and checks, see columns.py).
"""

from __future__ import annotations

import re
import sqlite3
from functools import cache
from importlib import resources

from corq.backends.sqlite.columns import expand

#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = 7

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _read(name: str) -> str:
    return resources.files("corq.backends.sqlite").joinpath(name).read_text(encoding="utf-8")


@cache
def schema() -> str:
    """The whole schema script (idempotent: every statement is IF NOT EXISTS / OR IGNORE)."""
    return _read("schema.sql")


@cache
def schema_statements() -> tuple[str, ...]:
    """The schema script cut into single statements, to run inside a transaction the caller
    holds (``executescript`` would commit it first)."""
    statements: list[str] = []
    pending = ""
    for line in schema().splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if _code(pending):
        raise RuntimeError("schema.sql: the last statement has no closing semicolon")
    return tuple(statements)


_MIGRATION = re.compile(r"migrate_(\d+)_\w+")


def migration_steps(version: int) -> list[str]:
    """The ``migrate_<n>_*`` statements of queries.sql that take a file from schema
    `version` up to SCHEMA_VERSION, version by version in file order; schema_statements()
    run after them."""
    steps: list[str] = []
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for name, statement in Q.items():
            match = _MIGRATION.fullmatch(name)
            if match is not None and int(match[1]) == target:
                steps.append(statement)
    return steps


def _code(text: str) -> str:
    """`text` without its blank and comment lines."""
    return "\n".join(
        ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("--")
    )


@cache
def queries() -> dict[str, str]:
    """Every named statement, its placeholders expanded, without its comment lines or
    trailing semicolon."""
    pieces = _HEADER.split(_read("queries.sql"))
    named: dict[str, str] = {}
    for name, body in zip(pieces[1::2], pieces[2::2], strict=True):
        text = expand(_code(body).strip().rstrip(";"))
        if name in named or not text:
            raise RuntimeError(f"queries.sql: statement {name!r} is duplicated or empty")
        named[name] = text
    return named


#: name -> statement; a misspelt name fails with KeyError on the first call that uses it.
Q: dict[str, str] = queries()
