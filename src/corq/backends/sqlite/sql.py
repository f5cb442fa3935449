"""The SQL text of the SQLite broker, read once from the package's .sql files.

Keeping the statements in files (rather than Python strings) lets them be read, diffed and
EXPLAINed as SQL; the loader only splits ``queries.sql`` on its ``-- name: <name>`` headers.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = 1

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _read(name: str) -> str:
    return resources.files("corq.backends.sqlite").joinpath(name).read_text(encoding="utf-8")


@cache
def schema() -> str:
    """The whole schema script (idempotent: every statement is IF NOT EXISTS / OR IGNORE)."""
    return _read("schema.sql")


@cache
def queries() -> dict[str, str]:
    """Every named statement, without its comment lines or trailing semicolon."""
    text = _read("queries.sql")
    parts = _HEADER.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("--")]
        statement = "\n".join(lines).strip().rstrip(";")
        if name in named or not statement:
            raise RuntimeError(f"queries.sql: statement {name!r} is duplicated or empty")
        named[name] = statement
    return named


#: name -> statement; a misspelt name fails with KeyError on the first call that uses it.
Q: dict[str, str] = queries()
