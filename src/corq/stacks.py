"""A live worker's stacks, as ``corq inspect WORKER --stacks`` shows them.

The worker answers an INSPECT control message with this document (JSON); the admin API
reads it back into these values. Nothing here is pickled: a reply is data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from corq.errors import CorqError

#: Most frames kept per stack (the innermost ones), and most tasks and threads a reply
#: lists: a worker with 100,000 coroutines answers with the first ones, and says so.
MAX_FRAMES = 50
MAX_TASKS = 10_000


@dataclass(frozen=True, kw_only=True, slots=True)
class Frame:
    """One frame of a stack, outermost first."""

    file: str
    line: int
    function: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskStack:
    """One asyncio task of the worker: its coroutine chain, and the job it runs."""

    name: str
    frames: tuple[Frame, ...]
    job_id: str | None = None
    queue: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ThreadStack:
    """One thread of the worker process."""

    name: str
    ident: int
    frames: tuple[Frame, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerStacks:
    """Every asyncio task and every thread of one worker, at one moment."""

    worker_id: str
    at_ms: int
    tasks: tuple[TaskStack, ...]
    threads: tuple[ThreadStack, ...]
    #: Tasks left out past MAX_TASKS.
    tasks_omitted: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> WorkerStacks:
        """Read a worker's reply; CorqError when it is not one."""
        try:
            data = json.loads(raw)
            return cls(
                worker_id=str(data["worker_id"]),
                at_ms=int(data["at_ms"]),
                tasks=tuple(
                    TaskStack(
                        name=str(t["name"]),
                        frames=_frames(t["frames"]),
                        job_id=t.get("job_id"),
                        queue=t.get("queue"),
                    )
                    for t in data["tasks"]
                ),
                threads=tuple(
                    ThreadStack(
                        name=str(t["name"]), ident=int(t["ident"]), frames=_frames(t["frames"])
                    )
                    for t in data["threads"]
                ),
                tasks_omitted=int(data.get("tasks_omitted", 0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorqError(f"the worker's stacks cannot be read: {exc}") from exc


def _frames(items: Any) -> tuple[Frame, ...]:
    return tuple(
        Frame(file=str(f["file"]), line=int(f["line"]), function=str(f["function"])) for f in items
    )
