"""Text another party chose (a provider's profile, its agent's version string, the error
details its agent answers with), made safe to store and to show to someone else.

Such text reaches developers' terminals (the CLI), browsers (the consoles) and logs. Safe
here means one line of printable characters: no control characters (so no terminal escape
sequences: screen rewrites, window titles, OSC 52 clipboard writes), no line breaks (no
forged log lines or extra lines in a paste), no invisible formatting characters (bidi
overrides that make text read differently from what it is, zero-width characters), and a
bounded length. HTML is the consoles' business: Jinja2 autoescapes every value.

Two ways to apply it: `check_printable_line` refuses unsafe text (a value a provider declares
is a 422 at the edge), `printable_line` cleans text that is only relayed (an agent's error
detail becomes a VM's failure reason), since refusing an error would hide it."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator

# Terminal escape sequences, removed whole so that no fragment ("[2J") is left behind:
# CSI (ESC [ or 8-bit 0x9b) with parameters and a final byte; OSC, DCS, SOS, PM and APC
# strings up to their terminator (BEL or ST) or the end of the text; any other ESC + byte.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# Characters that are not text: controls (Cc), invisible formatting such as bidi overrides
# and zero-width characters (Cf), surrogates (Cs), private use (Co), unassigned (Cn), and
# the Unicode line and paragraph separators (Zl, Zp).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SPACES = re.compile(r"\s+")
ELLIPSIS = "…"


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def printable_line(value: str, limit: int) -> str:
    """`value` as one line of at most `limit` printable characters: escape sequences
    removed whole, line breaks and tabs as single spaces, every other control or invisible
    formatting character dropped, cut with '…' when longer. Never raises."""
    text = _ESCAPES.sub("", value)
    text = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or not _unsafe(ch))
    text = _SPACES.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + ELLIPSIS
    return text


def check_printable_line(value: str) -> str:
    """Return `value` unchanged if it is one line of printable text (spaces allowed, no
    tabs); raise ValueError saying which character is not, for a 422 at the edge."""
    for ch in value:
        if (ch.isspace() and ch != " ") or _unsafe(ch):
            raise ValueError(
                f"must be printable text on one line: U+{ord(ch):04X} is a control, line "
                "break or invisible formatting character"
            )
    return value


# A pydantic field of such text; give its maximum length with Field(max_length=...).
PrintableLine = Annotated[str, AfterValidator(check_printable_line)]
