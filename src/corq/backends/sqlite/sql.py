"""The SQL text of the SQLite broker, read once from the package's .sql files.

Keeping the statements in files (rather than Python strings) lets them be read, diffed and
EXPLAINed as SQL; the loader splits ``queries.sql`` on its ``-- name: <name>`` headers, and
replaces each line ``-- @include <part>`` of a statement by the text of the ``-- part:
<part>`` of that name (a condition several statements share, written once).
"""

from __future__ import annotations

import re
import sqlite3
from functools import cache
from importlib import resources

#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = 3

_HEADER = re.compile(r"^-- (name|part): (\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^\s*-- @include (\w+)\s*$", re.MULTILINE)


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
    """Every named statement, its parts included, without its comment lines or trailing
    semicolon."""
    pieces = _HEADER.split(_read("queries.sql"))
    named: dict[str, str] = {}
    included: dict[str, str] = {}
    for kind, name, body in zip(pieces[1::3], pieces[2::3], pieces[3::3], strict=True):
        target = named if kind == "name" else included
        text = _code(_INCLUDE.sub(lambda m: _part(included, m[1]), body)).strip().rstrip(";")
        if name in target or not text:
            raise RuntimeError(f"queries.sql: {kind} {name!r} is duplicated or empty")
        target[name] = text
    return named


def _part(parts: dict[str, str], name: str) -> str:
    """The text an include line stands for (a part must come before its first use)."""
    if name not in parts:
        raise RuntimeError(f"queries.sql: @include {name}: no such part above it")
    return f"({parts[name]})"


#: name -> statement; a misspelt name fails with KeyError on the first call that uses it.
Q: dict[str, str] = queries()
