"""How both brokers store a worker's facts: msgspec JSON of :class:`WorkerInfo`.

Unknown fields are ignored and missing ones take their defaults, so workers of two corq
versions can share a broker. A stored value that does not decode (another program wrote
it) reads as absent: one bad entry never hides the other workers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import msgspec

from corq.worker_info import MAX_RUNNING_LISTED, WorkerInfo, WorkerState

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(WorkerInfo)


def encode_worker_info(info: WorkerInfo) -> bytes:
    """The facts as stored (a list of running jobs cut at MAX_RUNNING_LISTED)."""
    if len(info.running) > MAX_RUNNING_LISTED:
        info = dataclasses.replace(info, running=tuple(info.running[:MAX_RUNNING_LISTED]))
    return _encoder.encode(info)


def decode_worker_info(data: bytes | str) -> WorkerInfo | None:
    """The facts, or None when `data` is not a WorkerInfo."""
    try:
        info = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.debug("skipping worker facts that do not decode: %s", exc)
        return None
    return dataclasses.replace(info, running=tuple(info.running))


def judge(infos: Iterable[WorkerInfo], now_ms: int, lost_after_ms: int) -> list[WorkerInfo]:
    """The facts by worker id, those not heard from for `lost_after_ms` marked LOST."""
    out = []
    for info in sorted(infos, key=lambda i: i.worker_id):
        if now_ms - info.heartbeat_at_ms > lost_after_ms:
            info = dataclasses.replace(info, state=WorkerState.LOST)
        out.append(info)
    return out
