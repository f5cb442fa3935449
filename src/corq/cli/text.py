"""Text from the broker made safe to print: any writer may have put anything there."""

from __future__ import annotations

import re

from rich.text import Text

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
