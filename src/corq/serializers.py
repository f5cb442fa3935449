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
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise SerializationError(f"cannot encode {type(value).__name__} value: {exc}") from exc
        return data

    def loads(self, data: bytes, type: Any = Any) -> Any:
        if type is Any:
            return self._decoder.decode(data)
        return self._codec.decode(data, type=type, strict=False)


class JsonSerializer(_MsgspecSerializer):
    """JSON through msgspec: readable in redis-cli and sqlite3, safe to decode."""

    def __init__(self) -> None:
        super().__init__("json", msgspec.json)


class MsgpackSerializer(_MsgspecSerializer):
    """MessagePack through msgspec: smaller and faster, keeps bytes as bytes."""

    def __init__(self) -> None:
        super().__init__("msgpack", msgspec.msgpack)


def get_serializer(name: str) -> Serializer:
    """The serializer for a settings name."""
    if name == "json":
        return JsonSerializer()
    if name == "msgpack":
        return MsgpackSerializer()
    raise ConfigError(f"unknown serializer {name!r}: choose 'json' or 'msgpack'")
