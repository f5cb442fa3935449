"""Module-level functions the cancellation tests register as ``process=True`` tasks (a
child process finds a task's function by its module path)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def sleep_in_child(pid_path: str) -> str:
    """Writes its pid, then sleeps far longer than any test waits."""
    Path(pid_path).write_text(str(os.getpid()))
    time.sleep(120)
    return "woke"
