from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from corq.errors import SerializationError
from corq.serializers import JsonSerializer, MsgpackSerializer


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def call_at_depth(frames: int, call: Any) -> Any:
    """Run `call` under `frames` extra Python frames (a deeper stack, like a worker's)."""
    if frames == 0:
        return call()
    return call_at_depth(frames - 1, call)


@dataclass
class Point:
    x: float


class Reading(msgspec.Struct):
    values: list[float]


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (math.nan, "value = nan"),
        ([1.0, math.inf], "value[1] = inf"),
        ({"args": [{"x": -math.inf}]}, "value['args'][0]['x'] = -inf"),
        ({"s": {math.nan}}, "value['s'][0] = nan"),
        (Point(math.nan), "value['x'] = nan"),
        (Reading([0.5, math.nan]), "value['values'][1] = nan"),
    ],
)
def test_json_refuses_nan_and_infinity_naming_where(value: Any, where: str) -> None:
    with pytest.raises(SerializationError) as caught:
        JsonSerializer().dumps(value)
    assert str(caught.value).startswith(f"cannot encode {where}: JSON has no NaN or infinity")


@pytest.mark.parametrize(
    "value",
    [None, [None, 1.5], {"null": "null", "x": None}, "a string saying null", [1e308, -0.0]],
)
def test_json_keeps_none_and_finite_floats(value: Any) -> None:
    serializer = JsonSerializer()
    assert serializer.loads(serializer.dumps(value)) == value


def test_msgpack_keeps_nan_and_infinity() -> None:
    serializer = MsgpackSerializer()
    decoded = serializer.loads(serializer.dumps([math.nan, math.inf, -math.inf]))
    assert math.isnan(decoded[0])
    assert decoded[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize("serializer", [JsonSerializer(), MsgpackSerializer()])
def test_nesting_beyond_the_recursion_limit_is_a_serialization_error(serializer: Any) -> None:
    with pytest.raises(SerializationError, match=r"nested deeper than the .* serializer allows"):
        serializer.dumps(nested(100_000))


@pytest.mark.parametrize("serializer", [JsonSerializer(), MsgpackSerializer()])
def test_what_encodes_here_decodes_on_a_deeper_stack(serializer: Any) -> None:
    # Given the deepest value that still encodes on this (shallow) stack
    depth = 0
    for step in (512, 64, 8, 1):
        while True:
            try:
                serializer.dumps(nested(depth + step))
            except SerializationError:
                break
            depth += step
    data = serializer.dumps(nested(depth))
    # When a consumer 300 frames deeper decodes it, Then it gets the value back
    decoded = call_at_depth(300, lambda: serializer.loads(data))
    assert serializer.dumps(decoded) == data


def test_a_decode_error_on_the_fallback_thread_reaches_the_caller() -> None:
    serializer = JsonSerializer()
    bad = b"[" * 5000 + b"}"
    with pytest.raises((msgspec.DecodeError, RecursionError)):
        call_at_depth(300, lambda: serializer.loads(bad))
    assert not [t for t in threading.enumerate() if t.name == "corq-deep-decode"]
