"""The msgpack serializer end to end, on both brokers: what JSON cannot carry (bytes, NaN
and infinities, integer keys) goes through a job's arguments and result unchanged."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

import corq
from corq.testing import drain


@pytest.fixture
async def mp_app(broker_url: str, prefix: str) -> AsyncIterator[corq.App]:
    application = corq.App(broker_url, prefix=prefix, serializer="msgpack")
    yield application
    await application.aclose()


async def test_bytes_and_non_finite_floats_round_trip(mp_app: corq.App) -> None:
    @mp_app.task(name="mp.echo")
    async def echo(blob: bytes, numbers: list[float], table: dict[int, str]) -> dict[str, Any]:
        return {"blob": blob[::-1], "numbers": numbers, "table": table}

    handle = await echo.enqueue(b"\x00\xffcorq", [math.nan, math.inf, -0.5], {7: "seven"})
    await drain(mp_app)
    result = await handle.result(timeout=10)
    assert result["blob"] == b"qroc\xff\x00"
    nan, inf, half = result["numbers"]
    assert math.isnan(nan)
    assert (inf, half) == (math.inf, -0.5)
    assert result["table"] == {7: "seven"}


async def test_a_plain_function_and_a_retry_keep_their_arguments(mp_app: corq.App) -> None:
    seen: list[bytes] = []

    @mp_app.task(name="mp.flaky", retries=2, backoff=0.01)
    def flaky(blob: bytes) -> int:
        seen.append(blob)
        if len(seen) == 1:
            raise ValueError("first time")
        return len(blob)

    handle = await flaky.enqueue(b"\x01\x02\x03")
    for _ in range(100):  # a burst ends while the retry waits out its backoff: go again
        await drain(mp_app)
        if await handle.status() == corq.JobStatus.SUCCEEDED:
            break
    assert await handle.result(timeout=10) == 3
    assert seen == [b"\x01\x02\x03"] * 2
    job = await handle.info()
    assert (job.status, job.failures) == (corq.JobStatus.SUCCEEDED, 1)


async def test_an_argument_of_the_wrong_type_is_refused_at_enqueue(mp_app: corq.App) -> None:
    @mp_app.task(name="mp.typed")
    async def typed(count: int) -> int:
        return count

    with pytest.raises(corq.ArgumentError):
        await typed.enqueue(b"not a number")  # type: ignore[arg-type]
