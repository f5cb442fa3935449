"""How a control message travels (the same bytes on every broker): msgpack of a tuple.

A message that does not decode (another program's, a newer corq's kind) is dropped by the
listener instead of stopping it: control messages are hints, every one that matters has a
durable path too (see ControlChannel).
"""

from __future__ import annotations

import msgspec

from corq.backends.base import ControlMessage
from corq.control import ControlKind

#: kind, worker id, job id, queue, request id, body
_Wire = tuple[str, str, str | None, str | None, str | None, bytes]
_DECODER = msgspec.msgpack.Decoder(_Wire)
_ENCODER = msgspec.msgpack.Encoder()
#: How long the SQLite broker keeps a message row (a listener reads it within ms).
CONTROL_KEEP_MS = 60_000


def encode_message(message: ControlMessage) -> bytes:
    """The message's bytes."""
    wire: _Wire = (
        str(message.kind),
        message.worker_id,
        message.job_id,
        message.queue,
        message.request_id,
        bytes(message.body),
    )
    return _ENCODER.encode(wire)


def decode_message(raw: bytes) -> ControlMessage | None:
    """The message, or None when `raw` is not one this corq understands."""
    try:
        kind, worker_id, job_id, queue, request_id, body = _DECODER.decode(raw)
        return ControlMessage(
            kind=ControlKind(kind),
            worker_id=worker_id,
            job_id=job_id,
            queue=queue,
            request_id=request_id,
            body=body,
        )
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None
