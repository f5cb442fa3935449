"""How arguments and results become bytes: JSON by default, msgpack on request, never pickle.

Both refuse what they cannot carry faithfully, so a value never changes on its way to a
worker: JSON has no NaN or infinity (msgspec would write ``null``, and a ``float``-hinted
task would then fail on a corrupted payload), so the JSON serializer refuses them;
MessagePack represents them and keeps them. Values nested deeper than Python's recursion
limit allows are refused by both.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import msgspec

from corq.errors import ConfigError, SerializationError

T = TypeVar("T")

#: A float64 whose exponent bits are all ones (NaN or ±infinity), as msgpack writes it.
_NON_FINITE_FLOAT64 = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]")
#: The only JSON text a non-finite float turns into (a compiled search: measured twice as
#: fast as ``b"null" in data`` on short payloads).
_JSON_NULL = re.compile(rb"null")
#: What msgspec raises for a value it cannot encode (RecursionError: nested too deep).
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError)


class Serializer(Protocol):
    """Encodes job payloads and results."""

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes, type: Any = Any) -> Any: ...


class _MsgspecSerializer:
    """One of msgspec's codecs; values it cannot encode raise SerializationError."""

    def __init__(self, name: str, codec: Any) -> None:
        self.name = name
        self._codec = codec
        self._encoder = codec.Encoder()
        self._decoder = codec.Decoder()

    def dumps(self, value: Any) -> bytes:
        try:
            data: bytes = self._encoder.encode(value)
        except _ENCODE_ERRORS as exc:
            raise _encode_error(self.name, value, exc) from exc
        return data

    def loads(self, data: bytes, type: Any = Any) -> Any:
        try:
            return self._decode(data, type)
        except RecursionError:
            # Deep values a producer could encode fail to decode only for want of stack
            # here (a worker's stack is deeper than a producer's): a new thread has room.
            return _in_fresh_thread(lambda: self._decode(data, type))

    def _decode(self, data: bytes, type: Any) -> Any:
        if type is Any:
            return self._decoder.decode(data)
        return self._codec.decode(data, type=type, strict=False)


class JsonSerializer(_MsgspecSerializer):
    """JSON through msgspec: readable in redis-cli and sqlite3, safe to decode."""

    def __init__(self) -> None:
        super().__init__("json", msgspec.json)
        self._float_probe = msgspec.msgpack.Encoder()

    def dumps(self, value: Any) -> bytes:
        if value is None:  # the result of most tasks: skip the NaN probe its `null` triggers
            return b"null"
        try:  # not super().dumps(): this is every enqueue's hot path
            data: bytes = self._encoder.encode(value)
        except _ENCODE_ERRORS as exc:
            raise _encode_error(self.name, value, exc) from exc
        # The hot path stays one byte search: only a value whose JSON holds `null` can hide
        # a NaN or an infinity, and msgpack (which keeps floats) tells quickly whether it does.
        if _JSON_NULL.search(data) is not None and self._may_hold_non_finite(value):
            where = _non_finite_path(value)
            if where is not None:
                raise SerializationError(
                    f"cannot encode {where}: JSON has no NaN or infinity (send None or a "
                    "string instead, or use the msgpack serializer, which keeps them)"
                )
        return data

    def _may_hold_non_finite(self, value: Any) -> bool:
        try:
            return _NON_FINITE_FLOAT64.search(self._float_probe.encode(value)) is not None
        except _ENCODE_ERRORS:
            return True  # cannot tell quickly: look at every value


class MsgpackSerializer(_MsgspecSerializer):
    """MessagePack through msgspec: smaller and faster, keeps bytes as bytes (and NaN)."""

    def __init__(self) -> None:
        super().__init__("msgpack", msgspec.msgpack)


def _encode_error(name: str, value: Any, exc: BaseException) -> SerializationError:
    if isinstance(exc, RecursionError):
        return SerializationError(
            f"cannot encode {type(value).__name__} value: nested deeper than the {name} "
            "serializer allows (Python's recursion limit)"
        )
    return SerializationError(f"cannot encode {type(value).__name__} value: {exc}")


def get_serializer(name: str) -> Serializer:
    """The serializer for a settings name."""
    if name == "json":
        return JsonSerializer()
    if name == "msgpack":
        return MsgpackSerializer()
    raise ConfigError(f"unknown serializer {name!r}: choose 'json' or 'msgpack'")


def _non_finite_path(value: Any) -> str | None:
    """Where in `value` a NaN or an infinity sits (``value['args'][0]``), or None."""
    try:
        builtin = msgspec.to_builtins(value)
    except RecursionError:
        return "value (nested too deep to say where)"
    stack: list[tuple[Any, str]] = [(builtin, "value")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{path} = {item!r}"
        if isinstance(item, dict):
            stack.extend((child, f"{path}[{key!r}]") for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def _in_fresh_thread(call: Callable[[], T]) -> T:
    """Run `call` on a new thread (a whole stack of its own) and return or raise its outcome."""
    values: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            values.append(call())
        except BaseException as exc:  # handed back to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="corq-deep-decode")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return values[0]
