"""Small asyncio helpers shared by the runtime."""

from __future__ import annotations

import asyncio


def reraise_if_cancelling() -> None:
    """Raise CancelledError if the current task is being cancelled.

    Some event loops (uvloop) surface a cancelled socket read as a connection error, which
    the broker reports as BrokerError; a loop that retries on BrokerError must not swallow
    its own cancellation.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
