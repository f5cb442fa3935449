from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_msgpack_values = st.recursive(
    _leaves | st.binary() | st.floats(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text() | st.integers(min_value=-(2**63), max_value=2**63), inner)
    ),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (msgpack keeps it)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(_json_values)
def test_json_round_trips_what_it_accepts(value: Any) -> None:
    serializer = JsonSerializer()
    assert _same(serializer.loads(serializer.dumps(value)), value)


@given(_msgpack_values)
def test_msgpack_round_trips_bytes_nan_and_integer_keys(value: Any) -> None:
    serializer = MsgpackSerializer()
    assert _same(serializer.loads(serializer.dumps(value)), value)


def test_msgpack_decodes_to_the_hinted_type() -> None:
    serializer = MsgpackSerializer()
    data = serializer.dumps({"values": [0.5, math.inf]})
    assert serializer.loads(data, Reading) == Reading([0.5, math.inf])
    with pytest.raises(msgspec.ValidationError):  # the task layer words it for the user
        serializer.loads(serializer.dumps({"values": "nope"}), Reading)


def test_msgpack_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(SerializationError):
        MsgpackSerializer().dumps(object())
