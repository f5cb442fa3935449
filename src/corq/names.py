"""The names corq accepts for queues and tasks, checked in one place for every layer."""

from __future__ import annotations

import re
import reprlib

from corq.errors import ArgumentError, CorqError, TaskDefinitionError
from corq.types import QueueName, TaskName

# Checked with fullmatch: a `$` anchor would let a final newline through ("default\n"),
# making a queue no worker started from the command line can serve.
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,199}")
_QUEUE_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def check_queue_name(queue: object) -> QueueName:
    """Queue names are short and plain so they can sit inside a Redis hash tag."""
    if not isinstance(queue, str) or not _QUEUE_RE.fullmatch(queue):
        raise ArgumentError(
            f"invalid queue name {reprlib.repr(queue)}: use 1-100 letters, digits, '_', '-' or '.'"
        )
    return queue


def check_task_name(name: object, error: type[CorqError] = TaskDefinitionError) -> TaskName:
    """Task names are plain, so a worker's registry lookup is all a message can trigger;
    `error` is the class to raise (ArgumentError when a caller names a task to enqueue)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise error(
            f"invalid task name {reprlib.repr(name)}: start with a letter or '_', then "
            "letters, digits, '_', '.', ':' or '-' (at most 200)"
        )
    return name
