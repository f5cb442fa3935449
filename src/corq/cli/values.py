"""Values typed on a command line: durations (``30s``, ``5m``, ``1h30m``) and moments (ISO 8601
with a zone). A value that does not parse is a usage error of one line, naming the option."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import overload

import click

#: One part of a duration: a number and its unit.
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class UsageLine(click.ClickException):
    """A bad value on the command line: one line on stderr and exit code 2 (a usage error),
    without click's usage banner, so scripts and people see only what to change."""

    exit_code = 2


def parse_duration(value: str | None, option: str) -> timedelta | None:
    """``30s``, ``5m``, ``1h30m``, ``1.5s``, ``250ms`` or a plain number of seconds."""
    if value is None:
        return None
    text = value.strip()
    try:
        return timedelta(seconds=float(text))
    except (ValueError, OverflowError):
        pass
    parts = _PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise UsageLine(
            f"{option} {value!r} is not a duration: use a number and a unit, e.g. 30s, 5m, "
            "1h30m, 250ms (or a number of seconds)"
        )
    try:
        return timedelta(seconds=sum(float(n) * _UNIT_S[u] for n, u in parts))
    except OverflowError:
        raise UsageLine(f"{option} {value!r} is too long a duration") from None


@overload
def parse_moment(value: str, option: str) -> datetime: ...


@overload
def parse_moment(value: None, option: str) -> None: ...


@overload
def parse_moment(value: str | None, option: str) -> datetime | None: ...


def parse_moment(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date and time with its zone: ``2027-01-01T09:00:00+01:00`` or ``...Z``."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageLine(
            f"{option} {value!r} is not an ISO 8601 date and time, e.g. 2027-01-01T09:00:00Z "
            "or 2027-01-01T10:00:00+01:00"
        ) from None
    if moment.tzinfo is None:
        raise UsageLine(
            f"{option} {value!r} has no time zone: add one, e.g. {value.strip()}Z (UTC) or "
            f"{value.strip()}+01:00"
        )
    return moment
