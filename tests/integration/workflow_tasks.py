"""Plain functions that workflow tests register as ``process=True`` tasks: a child process
finds them by this module path."""

from __future__ import annotations

from typing import Any

import corq


def shout(word: str) -> str:
    """A chain link run in a child: its input comes from its parent."""
    return word.upper()


def describe_parents() -> list[Any]:
    """Reads its parents in a child, where the worker handed them over."""
    return [[p.job_id, p.status, p.result] for p in corq.current_job().parents_sync()]
