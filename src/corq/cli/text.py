"""Text from the broker made safe to print: any writer may have put anything there."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from rich.text import Text

from corq import JobStatus

#: Characters escaped in what is printed (terminal escapes, bells, carriage returns);
#: tabs and newlines are kept where a text may span lines (a traceback).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str, *, one_line: bool = False) -> str:
    """`text` safe to print: valid UTF-8, control characters escaped."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if one_line:
        safe = safe.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", safe)


def plain(text: str, *, one_line: bool = False, style: str = "") -> Text:
    """Text printed as is (no console markup), made safe by `clean`."""
    return Text(clean(text, one_line=one_line), style=style)


#: Each job state's colour: green ended well, red ended badly, yellow will retry, cyan runs,
#: blue is ready, dim waits.
STATE_COLOURS = {
    JobStatus.SCHEDULED: "dim",
    JobStatus.WAITING: "dim",
    JobStatus.QUEUED: "blue",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "yellow",
    JobStatus.DEAD: "red",
    JobStatus.CANCELLED: "magenta",
    JobStatus.UPSTREAM_FAILED: "red",
}


def state_text(state: JobStatus | None) -> Text:
    """A job state, in its colour and as a word (so it reads without colour too)."""
    if state is None:
        return Text("record expired", style="dim")
    return Text(str(state), style=STATE_COLOURS.get(state, ""))


def when(ms: int | None) -> str:
    """A time in ms as UTC with milliseconds ('-' for none)."""
    if not ms:
        return "-"
    try:
        moment = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):  # a damaged record
        return f"{ms} (not a valid time)"
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
