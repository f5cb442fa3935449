"""The worker's control listener: operators' messages, acted on as they come.

``CANCEL``: the broker has cancelled the job already; the worker stops it (its coroutine
cancelled, its thread flagged and abandoned after ``cancel_grace_s``, its child process
killed) and writes nothing. ``INSPECT``: the worker answers with its stacks. Other kinds
are handed to the handlers other parts register (``on``), or ignored.

The channel is not the only path: a listener that lost its connection may have missed
messages, so when it subscribes again (or the broker comes back) it asks the reconciler
for a round at once, which finds cancelled jobs gone from the broker's held set.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from corq.aio import Backoff
from corq.backends.base import ControlChannel, ControlMessage
from corq.control import ControlKind
from corq.errors import BrokerDataError, BrokerError
from corq.worker.inspect import worker_stacks
from corq.worker.registry import Registry

log = logging.getLogger(__name__)

#: How long one wait for a message lasts (the loop checks nothing else meanwhile).
_WAIT_S = 30.0
#: How long an answer waits for its asker.
REPLY_TTL_MS = 60_000

Handler = Callable[[ControlMessage], Awaitable[None] | None]


class ControlPart:
    """Listens on the control channel for one worker id until cancelled."""

    def __init__(
        self,
        backend: ControlChannel,
        worker_id: str,
        registry: Registry,
        *,
        cancel: Callable[[str, str | None], bool],
        reconcile_now: Callable[[], None],
    ) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.registry = registry
        self._cancel = cancel
        self._reconcile_now = reconcile_now
        self._listener = backend.control_listener(worker_id)
        self._handlers: dict[ControlKind, Handler] = {}
        self._reconnects = 0
        self._outage = False

    def on(self, kind: ControlKind, handler: Handler) -> None:
        """Let another part act on messages of `kind` (CONFIG, say)."""
        self._handlers[kind] = handler

    async def subscribe(self) -> None:
        """Subscribe before the worker serves (an outage now is retried by `run`)."""
        with contextlib.suppress(BrokerError):
            await self._listener.subscribe()

    async def run(self) -> None:
        backoff = Backoff("control channel")
        try:
            while True:
                try:
                    message = await self._listener.next_message(_WAIT_S)
                except BrokerError as exc:
                    await backoff.wait(exc)
                    self._outage = True
                    continue
                backoff.reset()
                if self._outage or self._listener.reconnects != self._reconnects:
                    self._reconcile_now()  # messages may have been missed meanwhile
                    self._outage, self._reconnects = False, self._listener.reconnects
                if message is not None:
                    await self._handle(message)
        finally:
            await self._listener.close()

    async def _handle(self, message: ControlMessage) -> None:
        try:
            if message.kind is ControlKind.CANCEL and message.job_id:
                if not self._cancel(message.job_id, message.queue):
                    log.debug("cancel of job %s: not running here", message.job_id)
            elif message.kind is ControlKind.INSPECT and message.request_id:
                body = worker_stacks(self.worker_id, self.registry).to_json()
                await self.backend.put_reply(message.request_id, body, REPLY_TTL_MS)
            elif (handler := self._handlers.get(message.kind)) is not None:
                result = handler(message)
                if result is not None:
                    await result
        except (BrokerError, BrokerDataError) as exc:
            log.warning("control message %s not answered: %s", message.kind, exc)
        except Exception:  # a message must never stop the listener
            log.exception("control message %s failed", message.kind)
