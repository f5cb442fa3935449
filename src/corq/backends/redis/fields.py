"""The job record as the scripts see it: the ``fields`` include, generated from record.py.

``--- @include "fields"`` expands to :func:`fields_include`: the field names by role and
each field's kind and default, as Lua tables. Scripts take their field lists from it (and
Python packs and parses the same lists, see ``scripts.py`` and ``replies.py``), so adding a
field to :data:`~corq.backends.record.JOB_FIELDS` needs no edit here or in a script unless
the field brings new behaviour.
"""

from __future__ import annotations

from corq.backends.record import (
    CHECKED_FIELDS,
    CLAIMED_FIELDS,
    JOB_FIELDS,
    NEW_FIELDS,
    SHOWN_FIELDS,
    Kind,
    Role,
)

_HEADER = """\
--[[
fields: the job record's fields, generated from corq/backends/record.py when scripts load.

NEW_FIELDS, CLAIMED_FIELDS, SHOWN_FIELDS, CHECKED_FIELDS: the names of the fields playing
each role, in record order (enqueue_jobs takes a job's NEW values in that order, claim_jobs
replies with a job's CLAIMED values in it).
FIELD_KIND[name]: what the field holds: 'text', 'bytes', 'int', 'count' (never negative),
'number', 'flag' (0/1), 'status' or 'words' (see Kind in record.py).
FIELD_DEFAULT[name]: what the field reads as when the record lacks it (fields that have a
default only).
NEW_COUNTERS: {name, value, ...}: what a new record holds besides its NEW fields: the
counters (fields of kind count) the producer does not set, at their defaults.
put_claimed(out, job): append the job's CLAIMED values to `out`, in CLAIMED_FIELDS order,
a missing one at its default (or ''); written out field by field (a claim runs it for every
job it hands out, and an unrolled list of stores is about twice as fast as a loop).
]]
"""


def lua_literal(value: object) -> str:
    """`value` (str, bytes, int or a tuple of words) as a Lua literal."""
    if isinstance(value, tuple):
        value = " ".join(value)
    if isinstance(value, bool | int):
        return str(int(value))
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise TypeError(f"no Lua literal for {value!r}")
    return "'" + "".join(_lua_char(byte) for byte in value) + "'"


def _lua_char(byte: int) -> str:
    if 32 <= byte < 127 and chr(byte) not in "'\\":
        return chr(byte)
    return f"\\{byte:03d}"


def _names(names: tuple[str, ...]) -> str:
    return "{" + ", ".join(lua_literal(name) for name in names) + "}"


def _table(pairs: list[tuple[str, str]]) -> str:
    return "{\n" + "".join(f"  [{lua_literal(k)}] = {v},\n" for k, v in pairs) + "}"


def fields_include() -> str:
    """The Lua text of the ``fields`` include."""
    kinds = [(f.name, lua_literal(f.kind.value)) for f in JOB_FIELDS]
    defaults = [(f.name, lua_literal(f.default)) for f in JOB_FIELDS if f.default is not None]
    counters = [
        lua_literal(part)
        for f in JOB_FIELDS
        if f.kind is Kind.COUNT and not f.has(Role.NEW)
        for part in (f.name, str(f.default))
    ]
    return (
        _HEADER
        + f"local NEW_FIELDS = {_names(NEW_FIELDS)}\n"
        + f"local CLAIMED_FIELDS = {_names(CLAIMED_FIELDS)}\n"
        + f"local SHOWN_FIELDS = {_names(SHOWN_FIELDS)}\n"
        + f"local CHECKED_FIELDS = {_names(CHECKED_FIELDS)}\n"
        + f"local FIELD_KIND = {_table(kinds)}\n"
        + f"local FIELD_DEFAULT = {_table(defaults)}\n"
        + "local NEW_COUNTERS = {"
        + ", ".join(counters)
        + "}\n"
        + _put_claimed()
    )


def _put_claimed() -> str:
    by_name = {f.name: f for f in JOB_FIELDS}
    stores = "".join(
        f"  out[n + {k}] = job[{lua_literal(name)}] or {_default_literal(by_name[name].default)}\n"
        for k, name in enumerate(CLAIMED_FIELDS, start=1)
    )
    return "local function put_claimed(out, job)\n  local n = #out\n" + stores + "end\n"


def _default_literal(default: object) -> str:
    return "''" if default is None else lua_literal(default)
