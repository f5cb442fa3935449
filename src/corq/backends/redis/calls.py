"""How the Lua scripts are loaded and run: the plumbing under the wrappers of ``scripts.py``.

A wrapper does not talk to Redis: it packs its named parameters into KEYS/ARGV and returns
a :class:`ScriptCall` that knows how to parse the reply. :meth:`ScriptRunner.run` runs one
call (EVALSHA, loading the script again if Redis answers NOSCRIPT, e.g. after a restart or
a ``SCRIPT FLUSH``); :meth:`ScriptRunner.run_all` sends many in one pipeline round trip,
which is how operations spanning queues or big batches stay a single round trip.

Scripts share code through includes: a line ``--- @include "name"`` is replaced, when the
script is loaded, by ``lua/include/name.lua`` (itself expanded; each include at most once
per script, where it is first named), so the promote step, record checks, the enqueue and
dead-letter bounds are written once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from operator import attrgetter
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from corq.backends.base import BATCH, EVENTS_MAX, NewJob
from corq.backends.record import FIELDS_BY_NAME, NEW_FIELDS
from corq.backends.redis.fields import fields_include
from corq.types import QueueName

T = TypeVar("T")
Item = TypeVar("Item")
Arg = str | bytes | int

#: Longest a queue's wake list may grow: enough to wake every idle worker of a big pool,
#: small enough that a burst of enqueues does not leave thousands of stale tokens.
WAKE_CAP = 64
#: Payload (or result) bytes per script call, so big payloads make smaller calls.
BATCH_BYTES = 4 * 1024 * 1024
_INCLUDE = re.compile(r'^--- @include "(\w+)"$', re.MULTILINE)


def chunks(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batches(indices: list[int], size_of: Callable[[int], int]) -> Iterator[list[int]]:
    """Cut `indices` into runs of at most BATCH items and (roughly) BATCH_BYTES bytes."""
    batch: list[int] = []
    total = 0
    for index in indices:
        size = size_of(index)
        if batch and (len(batch) == BATCH or total + size > BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(index)
        total += size
    if batch:
        yield batch


def by_queue(
    items: Sequence[Item], queue_of: Callable[[Item], QueueName]
) -> dict[QueueName, list[int]]:
    """Indices of `items` per queue, in order (one script call serves one queue)."""
    groups: dict[QueueName, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(queue_of(item), []).append(index)
    return groups


def lua_file(path: str) -> str:
    """The text of a file under ``lua/``."""
    return resources.files("corq.backends.redis").joinpath(f"lua/{path}").read_text("utf-8")


def events_bound_include(events_max: int = EVENTS_MAX) -> str:
    """The events include's bound: each backend's scripts are loaded with its own."""
    return (
        "--[[\nevents_bound: EVENTS_MAX, the most events a queue's stream keeps (the "
        "backend's events_max, written in when the scripts are loaded; 0: none).\n]]\n"
        f"local EVENTS_MAX = {max(0, int(events_max))}\n"
    )


#: Includes made from Python definitions rather than read from ``lua/include/``.
GENERATED_INCLUDES: dict[str, Callable[[], str]] = {
    "fields": fields_include,
    "events_bound": events_bound_include,
}


def include_source(name: str, generated: dict[str, str] | None = None) -> str:
    """The text of the include `name` (given in `generated`, generated, or
    ``lua/include/<name>.lua``)."""
    if generated is not None and name in generated:
        return generated[name]
    make = GENERATED_INCLUDES.get(name)
    if make is not None:
        return make()
    try:
        return lua_file(f"include/{name}.lua")
    except FileNotFoundError:
        raise ValueError(f"no Lua include named {name!r} (lua/include/{name}.lua)") from None


def expand_includes(text: str, origin: str, generated: dict[str, str] | None = None) -> str:
    """`text` (the script `origin`) with each ``--- @include "name"`` line replaced by that
    include, itself expanded; an include already expanded above becomes a comment.
    `generated` overrides includes by name (a backend's own settings)."""
    seen: set[str] = set()

    def expand(text: str, where: str) -> str:
        def include(match: re.Match[str]) -> str:
            included = match.group(1)
            if included in seen:
                return f"-- ({included} is included above)"
            seen.add(included)
            try:
                return expand(include_source(included, generated), included)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None

        return _INCLUDE.sub(include, text)

    return expand(text, origin)


def load_source(name: str, generated: dict[str, str] | None = None) -> str:
    """The script ``lua/<name>.lua`` with its includes expanded."""
    return expand_includes(lua_file(f"{name}.lua"), name, generated)


@dataclass(frozen=True, slots=True)
class ScriptCall(Generic[T]):
    """One script invocation, ready to run alone or in a pipeline."""

    script: AsyncScript
    keys: list[str]
    args: list[Arg]
    parse: Callable[[Any], T]


@dataclass(frozen=True, slots=True)
class DeadBounds:
    """How many dead letters a queue keeps, and how long (0: no bound)."""

    max_count: int = 0
    ttl_ms: int = 0


def _packer() -> Callable[[NewJob], tuple[Arg, ...]]:
    """How a new job's values are packed, in NEW_FIELDS order, as enqueue_jobs.lua takes
    them: '' for an optional one left unset (None); as they are when no NEW field is
    optional (enqueue packs thousands)."""
    attributes: Callable[[NewJob], tuple[Any, ...]] = attrgetter(*NEW_FIELDS)
    if all(FIELDS_BY_NAME[name].default is not None for name in NEW_FIELDS):
        return attributes

    def pack(job: NewJob) -> tuple[Arg, ...]:
        return tuple("" if value is None else value for value in attributes(job))

    return pack


new_values = _packer()


def now_arg(now_ms: int | None) -> Arg:
    """'' asks the script for the broker's own clock (Redis TIME)."""
    return "" if now_ms is None else now_ms


class ScriptRunner:
    """Scripts registered on one client (their SHA1s computed once), and how calls run."""

    def __init__(
        self, client: Redis, dead: DeadBounds | None = None, events_max: int = EVENTS_MAX
    ) -> None:
        self._client = client
        self._loaded: dict[str, AsyncScript] = {}
        self._dead = dead or DeadBounds()
        self._generated = {"events_bound": events_bound_include(events_max)}

    def _call(
        self, name: str, keys: list[str], args: list[Arg], parse: Callable[[Any], T]
    ) -> ScriptCall[T]:
        script = self._loaded.get(name)
        if script is None:
            source = load_source(name, self._generated)
            script = self._loaded[name] = self._client.register_script(source)
        return ScriptCall(script, keys, args, parse)

    @property
    def _dead_bounds(self) -> list[Arg]:
        return [self._dead.max_count, self._dead.ttl_ms]

    async def run(self, call: ScriptCall[T]) -> T:
        """EVALSHA one call (redis-py loads the script on NOSCRIPT and retries once)."""
        return call.parse(await call.script(keys=call.keys, args=call.args))

    async def run_all(
        self, calls: Sequence[ScriptCall[T]], *, first: Callable[[Any], object] | None = None
    ) -> list[T]:
        """Run the calls in one pipeline round trip (no MULTI: each script is atomic).

        `first` adds plain commands to the pipeline ahead of the calls (their replies are
        dropped; an error among them is raised). The scripts go as plain EVALSHA: redis-py's
        own pipelined scripts cost a SCRIPT EXISTS round trip every time. A call Redis
        answers NOSCRIPT (a restart, a SCRIPT FLUSH) did not run: its script is loaded and
        that call alone is sent again.
        """
        if first is None and len(calls) <= 1:
            return [await self.run(call) for call in calls]
        async with self._client.pipeline(transaction=False) as pipe:
            if first is not None:
                first(pipe)
            ahead = len(pipe.command_stack)
            for call in calls:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies[:ahead]:
            if isinstance(reply, Exception):
                raise reply
        out: list[T] = []
        for call, reply in zip(calls, replies[ahead:], strict=True):
            if isinstance(reply, NoScriptError):
                out.append(await self.run(call))  # loads the script, then runs it
            elif isinstance(reply, Exception):
                raise reply
            else:
                out.append(call.parse(reply))
        return out
