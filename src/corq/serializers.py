"""How arguments and results become bytes: JSON by default, msgpack on request, never pickle."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from corq.errors import ConfigError, SerializationError


class Serializer(Protocol):
    """Encodes job payloads and results."""

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes, type: Any = Any) -> Any: ...


def _encode_error(value: Any, exc: Exception) -> SerializationError:
    return SerializationError(f"cannot encode {type(value).__name__} value: {exc}")


class JsonSerializer:
    """JSON through msgspec: readable in redis-cli, safe to decode."""

    name = "json"

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder()

    def dumps(self, value: Any) -> bytes:
        try:
            return self._encoder.encode(value)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise _encode_error(value, exc) from exc

    def loads(self, data: bytes, type: Any = Any) -> Any:
        if type is Any:
            return self._decoder.decode(data)
        return msgspec.json.decode(data, type=type, strict=False)


class MsgpackSerializer:
    """MessagePack through msgspec: smaller and faster, keeps bytes as bytes."""

    name = "msgpack"

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder()

    def dumps(self, value: Any) -> bytes:
        try:
            return self._encoder.encode(value)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise _encode_error(value, exc) from exc

    def loads(self, data: bytes, type: Any = Any) -> Any:
        if type is Any:
            return self._decoder.decode(data)
        return msgspec.msgpack.decode(data, type=type, strict=False)


def get_serializer(name: str) -> Serializer:
    """The serializer for a settings name."""
    if name == "json":
        return JsonSerializer()
    if name == "msgpack":
        return MsgpackSerializer()
    raise ConfigError(f"unknown serializer {name!r}: choose 'json' or 'msgpack'")
